"""The aiohttp application factory of the localhost API."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from agent.api import (
    cards,
    cda,
    consent,
    core,
    dmp,
    dmp_params,
    dmp_web,
    homologation,
    ins,
    mss,
    orders,
    patients,
    peers,
    preferences,
    psc,
    ui,
)
from agent.api.context import SERVICES, Services
from agent.api.guard import LIMITS_KEY, FailureTracker, GuardSettings, body_limit, make_guard
from agent.api.spec import Route, RouteTable
from agent.store.tokens import TokenCheck, TokenInfo, verify_token

RouteRegistrar = Callable[[RouteTable], None]


PART_ROUTES: tuple[RouteRegistrar, ...] = (core.register, ui.register, cards.register, ins.register,
                                           consent.register, dmp.register, cda.register, mss.register,
                                           orders.register, peers.register, homologation.register, psc.register,
                                           dmp_web.register, dmp_params.register, patients.register,
                                           preferences.register)


def create_app(services: Services, extra: Iterable[RouteRegistrar] = ()) -> web.Application:
    """Build the app with every part's routes; ``extra`` adds more (the sandbox's control routes, in the demo)."""
    api = services.config.api
    settings = GuardSettings(
        port=api.port,
        allowed_origins=frozenset(api.allowed_origins),
        max_body=api.max_body_bytes,
        max_upload=api.max_upload_bytes,
        failure_limit=api.auth_failure_limit,
        failure_window=float(api.auth_failure_window_seconds),
    )
    failures = FailureTracker(settings.failure_limit, settings.failure_window, services.clock)

    check = TokenCheck(services.db.path)

    async def verify(token: str) -> TokenInfo | None:
        answered, client = check.verify(token)  # on this thread, from memory unless something was committed
        if answered:
            return client
        return await services.db.read(lambda conn: verify_token(conn, token))

    # aiohttp's own cap is the largest route limit; the guard applies each route's own limit first.
    app = web.Application(
        middlewares=[make_guard(settings, verify, failures, services.ui_sessions)], client_max_size=settings.max_upload
    )
    app[SERVICES] = services
    app[patients.OPEN_PATIENTS] = patients.OpenPatients()
    app[GUARD_KEY] = settings
    app[LIMITS_KEY] = lambda route: body_limit(route, settings) if route else settings.max_body

    table = services.routes
    for registrar in (*PART_ROUTES, *extra):
        registrar(table)
    table.install(app)

    app.on_shutdown.append(_close_streams)

    async def close_check(_app: web.Application) -> None:
        check.close()

    app.on_cleanup.append(close_check)
    app[TOKEN_CHECK] = check
    return app


async def _close_streams(app: web.Application) -> None:
    services = app[SERVICES]
    services.stopping.set()
    for task in list(services.streams.values()):
        task.cancel()


GUARD_KEY: web.AppKey[GuardSettings] = web.AppKey("relais_guard", GuardSettings)
TOKEN_CHECK: web.AppKey[TokenCheck] = web.AppKey("relais_token_check", TokenCheck)


def all_routes(app: web.Application) -> list[Route]:
    return list(app[SERVICES].routes.routes)
