"""The peer API: the aiohttp app the practice's other workstations call, served over mTLS on the LAN port by
``agent.routing.peers``.

TLS admits only certificates chaining to the practice CA (OpenSSL, strict); every route but the join exchange
then requires one, checked again strictly (``pki.verify_workstation``: practice, usages, the revocation list),
and the handler gets the workstation name from it. Errors become problem+json through the local API's one
table (``agent.api.problems``); a refused peer learns nothing about the practice.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.api.problems import problem_from
from agent.errors import AccessRefused, InvalidInput, RelaisError
from agent.logs import get_logger
from agent.routing.inbound import Inbound
from agent.routing.peers import Peers
from agent.routing.practice import JOIN_PATH
from agent.routing.protocol import Cancel, Forward, Presence

log = get_logger("routing")
PEER_NAME: web.AppKey[str] = web.AppKey("peer_name", str)
MAX_BODY = 48 * 1024 * 1024  # a 32 MB document in base64, with its metadata
MAX_JOIN_BODY = 16 * 1024  # name, CSR, nonce, MAC

def peer_certificate(request: web.Request) -> bytes | None:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None


def create_peer_app(peers: Peers, inbound: Inbound) -> web.Application:
    @web.middleware
    async def identify(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            if request.path == JOIN_PATH and (request.content_length is None
                                              or request.content_length > MAX_JOIN_BODY):
                raise InvalidInput("Demande d'adhésion trop volumineuse.")  # unauthenticated: kept small
            if request.path != JOIN_PATH:
                der = peer_certificate(request)
                if der is None:
                    raise AccessRefused("Certificat de poste requis.", code="peer_refused")
                request["peer"] = peers.identify(der)
                request["peer_der"] = der
            return await handler(request)
        except RelaisError as error:
            if isinstance(error, AccessRefused):
                log.warning("pair refusé depuis %s : %s", request.remote, error.code)
            return problem_from(error)

    app = web.Application(middlewares=[identify], client_max_size=MAX_BODY)

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.read())
        except ValueError as exc:
            raise InvalidInput("JSON invalide.") from exc
        if not isinstance(data, dict):
            raise InvalidInput("Objet JSON attendu.")
        return data

    async def join(request: web.Request) -> web.Response:
        own = peers.own_certificate_der()
        return web.json_response(await peers.accept_join(own, await body(request), request.remote or ""))

    async def presence(request: web.Request) -> web.Response:
        theirs = Presence.from_json(await body(request))
        mine = await peers.on_presence(request["peer"], request.remote or "", theirs, request["peer_der"])
        return web.json_response(mine.to_json())

    async def forward(request: web.Request) -> web.Response:
        message = Forward.from_json(await body(request))
        return web.json_response(await inbound.accept(request["peer"], message))

    async def cancel(request: web.Request) -> web.Response:
        message = Cancel.from_json(await body(request))
        return web.json_response(await inbound.cancel(request["peer"], message))

    async def states(request: web.Request) -> web.Response:
        data = await body(request)
        ids = data.get("order_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 1000:
            raise InvalidInput.field("order_ids", "Liste d'identifiants attendue.")
        return web.json_response({"orders": await inbound.states(request["peer"], ids)})

    app.router.add_post(JOIN_PATH, join)
    app.router.add_post("/peer/v1/presence", presence)
    app.router.add_post("/peer/v1/forward", forward)
    app.router.add_post("/peer/v1/cancel", cancel)
    app.router.add_post("/peer/v1/states", states)
    return app
