"""The sandbox frame: runs the simulators (DMP, INSi, MSSanté) and exposes their control routes.

A simulator is a plug-in (``Simulator`` protocol): it starts its own loopback server(s) speaking the real
protocol, keeps its state in its own folder of the state directory, declares its ``/_sandbox/<name>/...``
control routes, and obeys a fault mode. The frame gives each the shared test PKI and the fault middleware.

Two ways to run it, same code:
- in-process under ``relais demo``: the agent mounts the control routes behind its token guard;
- as its own process, ``relais sandbox``: a loopback-only app on its port (no token), so a test can kill an
  agent without losing what the simulated DMP received. ``GET /_sandbox/endpoints`` tells an agent started
  with ``--sandbox URL`` where each simulator listens and which CA to trust.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from agent.api.spec import RouteTable, json_response
from agent.errors import InvalidInput, NotFound
from agent.logs import get_logger
from relais_sandbox.pki import SandboxPki

log = get_logger("sandbox")


class FaultMode(enum.StrEnum):
    OK = "ok"
    DOWN = "down"  # the connection is dropped without an answer
    ERROR500 = "error500"  # HTTP 500 (or the protocol's equivalent)
    TIMEOUT = "timeout"  # the request is processed, but the answer never comes in time
    SLOW = "slow"  # answers after a delay
    MALFORMED = "malformed"  # answers garbage
    REFUSE = "refuse"  # the service refuses in its own protocol, with its own code and text (DMP only)


@dataclass
class FaultState:
    mode: FaultMode = FaultMode.OK
    slow_seconds: float = 2.0
    timeout_seconds: float = 120.0
    only_path: str = ""  # when set, the fault applies to this endpoint only (e.g. the DMP's /repository)
    requests: int = 0  # protocol requests received (whatever the mode): how hard clients hit a failing service
    # "refuse": the code and text the service answers with, and the transaction refused ("" = every one; the DMP's:
    # TD0.2, TD0.3, TD2.1, TD3.1, TD3.2, TD3.3).
    refusal_code: str = ""
    refusal_text: str = ""
    refusal_transaction: str = ""


@dataclass
class SandboxContext:
    state_dir: Path
    pki: SandboxPki
    host: str = "127.0.0.1"


class Simulator(Protocol):
    name: str  # "dmp", "insi", "mss": the path segment under /_sandbox/
    faults: FaultState

    async def start(self, ctx: SandboxContext) -> dict[str, Any]:
        """Start listening; return the endpoint description agents need (URLs, ports)."""
        ...

    async def stop(self) -> None: ...

    def control_routes(self, table: RouteTable) -> None:
        """Declare the simulator's /_sandbox/<name>/... routes (besides /faults, which the frame adds)."""
        ...


def fault_middleware(state: FaultState, *, before_answer: bool = True) -> Any:
    """aiohttp middleware applying a simulator's fault mode to its protocol endpoint.

    ``timeout`` runs the handler (the request is processed and stored) and then withholds the answer, which is
    the ambiguous failure the queue must reconcile.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        state.requests += 1
        mode = state.mode if not state.only_path or request.path == state.only_path else FaultMode.OK
        if mode is FaultMode.DOWN:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if mode is FaultMode.ERROR500:
            return web.Response(status=500, text="Internal Server Error (sandbox fault)")
        if mode is FaultMode.MALFORMED:
            return web.Response(status=200, body=b"\x00<<not xml", content_type="application/soap+xml")
        if mode is FaultMode.SLOW:
            await asyncio.sleep(state.slow_seconds)
        response = await handler(request)
        if mode is FaultMode.TIMEOUT:
            await asyncio.sleep(state.timeout_seconds)
        return response

    return middleware


@dataclass
class SandboxHost:
    ctx: SandboxContext
    simulators: list[Simulator] = field(default_factory=list)
    endpoints: dict[str, Any] = field(default_factory=dict)

    async def start(self) -> None:
        for sim in self.simulators:
            self.endpoints[sim.name] = await sim.start(self.ctx)
            log.info("simulateur %s démarré", sim.name)

    async def stop(self) -> None:
        for sim in reversed(self.simulators):
            try:
                await sim.stop()
            except Exception:
                log.exception("arrêt du simulateur %s", sim.name)

    def simulator(self, name: str) -> Simulator:
        for sim in self.simulators:
            if sim.name == name:
                return sim
        raise NotFound(f"Simulateur « {name} » absent de ce bac à sable.")

    def describe(self) -> dict[str, Any]:
        # state_dir: an agent on this machine started with --sandbox URL issues its virtual CPS from the same
        # test CA, so the simulators trust what the demo doctor signs.
        return {"endpoints": self.endpoints, "ca_pem": self.ctx.pki.ca_path.read_text(),
                "state_dir": str(self.ctx.state_dir.resolve())}

    def register_routes(self, table: RouteTable) -> None:
        async def set_fault(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            body = await read_json(request)
            sim = self.simulator(request.match_info["name"])
            try:
                mode = FaultMode(str(body.get("mode")))
            except ValueError as exc:
                choices = ", ".join(m.value for m in FaultMode)
                raise InvalidInput.field("mode", f"Mode inconnu ; valeurs possibles : {choices}.") from exc
            sim.faults.mode = mode
            for key in ("slow_seconds", "timeout_seconds"):
                if isinstance(body.get(key), int | float):
                    setattr(sim.faults, key, float(body[key]))
            if mode is FaultMode.REFUSE and not str(body.get("code", "")):
                raise InvalidInput.field("code", "Le code d'erreur que le service renvoie est requis en mode refuse.")
            sim.faults.refusal_code = str(body.get("code", ""))
            sim.faults.refusal_text = str(body.get("text", ""))
            sim.faults.refusal_transaction = str(body.get("transaction", ""))
            log.info("simulateur %s : mode de panne %s", sim.name, mode.value)
            return web.json_response({"simulator": sim.name, "mode": mode.value, "requests": sim.faults.requests})

        async def endpoints(request: web.Request) -> web.Response:
            return web.json_response(self.describe())

        table.post("/_sandbox/{name}/faults", set_fault, summary="Injecter une panne dans un simulateur",
                   tag="sandbox",
                   request_schema={"type": "object", "required": ["mode"],
                                   "properties": {"mode": {"enum": [m.value for m in FaultMode]},
                                                  "slow_seconds": {"type": "number"},
                                                  "timeout_seconds": {"type": "number"},
                                                  "code": {"type": "string", "description": "refuse: the service's "
                                                           "error code (DMP: registry errorCode or HL7v3 "
                                                           "acknowledgement code)"},
                                                  "text": {"type": "string", "description": "refuse: its text"},
                                                  "transaction": {"type": "string", "description": "refuse: only "
                                                                  "this transaction (DMP: TD0.2, TD0.3, TD2.1, "
                                                                  "TD3.1, TD3.2, TD3.3); empty: all"}}},
                   responses={200: json_response("Mode appliqué")})
        table.get("/_sandbox/endpoints", endpoints, summary="Adresses des simulateurs et CA de test", tag="sandbox",
                  responses={200: json_response("Adresses")})
        for sim in self.simulators:
            sim.control_routes(table)


def create_sandbox_app(host: SandboxHost, port: int) -> web.Application:
    """The standalone `relais sandbox` app: the same guard (Host, Origin, sizes), without tokens."""
    from agent.api.guard import LIMITS_KEY, FailureTracker, GuardSettings, make_guard
    from agent.clock import SystemClock

    settings = GuardSettings(port=port, allowed_origins=frozenset(), max_body=1 << 20, max_upload=64 << 20,
                             failure_limit=10, failure_window=60.0, require_token=False)

    async def no_tokens(_: str) -> None:
        return None

    app = web.Application(middlewares=[make_guard(settings, no_tokens, FailureTracker(10, 60.0, SystemClock()))],
                          client_max_size=settings.max_upload)
    app[SANDBOX_GUARD_KEY] = settings
    app[LIMITS_KEY] = lambda route: settings.max_upload if route and route.body == "upload" else settings.max_body
    table = RouteTable()
    host.register_routes(table)
    table.install(app)
    return app


SANDBOX_GUARD_KEY: web.AppKey[Any] = web.AppKey("relais_sandbox_guard", object)
