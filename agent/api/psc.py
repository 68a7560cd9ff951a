"""Routes of Pro Santé Connect (e-CPS) and of the professional's context (CPS in a reader, or PSC).

``POST /v1/psc/login`` returns the URL the LGC, the tray or the dashboard opens in the system browser; PSC sends
the browser back to the agent's loopback redirect (``agent/psc/service.py``), which completes the login. No route
ever returns a token.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.context import SERVICES, Services
from agent.api.guard import read_json
from agent.api.spec import RouteTable, json_response
from agent.errors import InvalidInput, Unavailable
from agent.psc.service import PscPart

PROFESSIONAL = {"type": "object", "properties": {
    "rpps": {"type": "string"}, "national_id": {"type": "string"}, "family_name": {"type": "string"},
    "given_name": {"type": "string"}, "profession": {"type": "string"}, "specialty": {"type": "string"}}}
SESSION = {"type": "object", "required": ["active"], "properties": {
    "active": {"type": "boolean"}, "professional": PROFESSIONAL, "started_at": {"type": "string"},
    "access_expires_at": {"type": "string"}, "session_expires_at": {"type": ["string", "null"]},
    "pending_logins": {"type": "integer"}, "last_error": {"type": ["string", "null"]}}}
CONTEXT = {"type": "object", "required": ["context"], "properties": {
    "context": {"type": ["string", "null"], "enum": ["cps", "psc", None],
                "description": "cps: a CPS in a reader (PIN entered or not); psc: a Pro Santé Connect session"},
    "professional": {"oneOf": [PROFESSIONAL, {"type": "null"}]},
    "logged_in": {"type": "boolean"}, "psc_available": {"type": "boolean"}}}


def _psc(services: Services) -> PscPart:
    if services.psc is None:
        raise Unavailable("Pro Santé Connect n'est pas configuré (section [psc]).", code="psc_disabled")
    return services.psc


def professional_context(services: Services) -> dict[str, Any]:
    """Who the professional of this workstation is, and how: the CPS in a reader first, else the PSC session."""
    holder = services.cards.cps_holder()
    available = services.psc is not None
    if holder is not None and holder.rpps:
        return {"context": "cps", "logged_in": holder.logged_in, "psc_available": available,
                "professional": {**holder.as_dict(), "national_id": holder.national_id}}
    identity = services.psc.identity() if services.psc is not None else None
    if identity is not None:
        return {"context": "psc", "logged_in": True, "psc_available": available, "professional": identity.as_dict()}
    return {"context": None, "logged_in": False, "psc_available": available, "professional": None}


async def login(request: web.Request) -> web.Response:
    return web.json_response(await _psc(request.app[SERVICES]).begin_login())


async def push(request: web.Request) -> web.Response:
    body = await read_json(request)
    rpps = body.get("rpps")
    if not isinstance(rpps, str) or not rpps.isdigit() or len(rpps) not in (11, 12):
        raise InvalidInput.field("rpps", "RPPS attendu (11 chiffres, ou 12 avec le 8 initial).")
    national_id = rpps if len(rpps) == 12 else f"8{rpps}"
    return web.json_response(await _psc(request.app[SERVICES]).begin_push(national_id), status=202)


async def session(request: web.Request) -> web.Response:
    return web.json_response(_psc(request.app[SERVICES]).state())


async def logout(request: web.Request) -> web.Response:
    return web.json_response(await _psc(request.app[SERVICES]).logout())


async def professional(request: web.Request) -> web.Response:
    return web.json_response(professional_context(request.app[SERVICES]))


def register(table: RouteTable) -> None:
    table.post("/v1/psc/login", login, tag="psc", summary="Se connecter avec e-CPS (Pro Santé Connect)",
               description="Renvoie l'adresse de la page Pro Santé Connect à ouvrir dans le navigateur du poste "
                           "(carte CPS ou application e-CPS) ; le retour sur l'agent termine la connexion.",
               responses={200: json_response("Connexion commencée", {
                   "type": "object", "required": ["authorization_url"],
                   "properties": {"authorization_url": {"type": "string"}, "redirect_uri": {"type": "string"},
                                  "expires_in": {"type": "integer"}}})})
    table.post("/v1/psc/push", push, tag="psc", summary="Se connecter avec e-CPS par notification sur le téléphone",
               description="Pro Santé Connect envoie la demande à l'application e-CPS du professionnel (CIBA) ; "
                           "le code affiché doit être le même sur le téléphone. La session apparaît dans "
                           "GET /v1/psc/session une fois la demande acceptée.",
               request_schema={"type": "object", "required": ["rpps"], "properties": {"rpps": {"type": "string"}}},
               responses={202: json_response("Notification envoyée", {
                   "type": "object", "properties": {"binding_message": {"type": "string"},
                                                    "expires_in": {"type": "integer"}}})})
    table.get("/v1/psc/session", session, tag="psc", summary="Session Pro Santé Connect du professionnel",
              responses={200: json_response("Session (jamais de jeton)", SESSION)})
    table.post("/v1/psc/logout", logout, tag="psc", summary="Se déconnecter de Pro Santé Connect",
               responses={200: json_response("Déconnecté", {
                   "type": "object", "properties": {"logged_out": {"type": "boolean"},
                                                    "end_session_url": {"type": ["string", "null"]}}})})
    table.get("/v1/professional", professional, tag="psc",
              summary="Le professionnel du poste et son contexte : carte CPS ou Pro Santé Connect",
              responses={200: json_response("Contexte du professionnel", CONTEXT)})
