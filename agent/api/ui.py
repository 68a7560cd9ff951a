"""The dashboard: static files under /ui/ (no build step, nothing loaded from outside) and its login.

The page holds no data of its own: it calls the same API as an LGC, authenticated by the session cookie that
a one-time login link (asked for by the tray with its token) gives it. See ``sessions.py`` for the flow.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.guard import CLIENT_KEY, read_json
from agent.api.sessions import COOKIE, SESSION_TTL
from agent.api.spec import RouteTable, json_response, problem_response
from agent.errors import AuthenticationRequired, InvalidInput

_ASSETS = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
    "icon.svg": "image/svg+xml",
}
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _asset(name: str) -> bytes:
    return resources.files("agent.api").joinpath("static").joinpath(name).read_bytes()


async def index(request: web.Request) -> web.Response:
    return _serve("index.html")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in _ASSETS:
        raise web.HTTPNotFound()
    return _serve(name)


def _serve(name: str) -> web.Response:
    response = web.Response(body=_asset(name), content_type=_ASSETS[name], charset="utf-8")
    response.headers["Content-Security-Policy"] = UI_CSP
    response.headers["X-Frame-Options"] = "DENY"
    return response


async def login_link(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    client = request[CLIENT_KEY].name
    code = services.ui_sessions.issue_code(client)
    host = request.headers.get("Host", f"127.0.0.1:{services.config.api.port}")
    # The code travels in the fragment: browsers never send it, so it reaches no request line and no log.
    return web.json_response({"url": f"http://{host}/ui/#login={code}", "expires_in": 60})


def _session_body(csrf: str, client: str) -> dict[str, Any]:
    return {"csrf": csrf, "client": client}


async def open_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    code = body.get("code")
    if not isinstance(code, str) or not code:
        raise InvalidInput.field("code", "Code de connexion manquant.")
    redeemed = services.ui_sessions.redeem(code)
    if redeemed is None:
        raise AuthenticationRequired("Lien de connexion expiré ou déjà utilisé : rouvrez le tableau de bord "
                                     "depuis l'icône Relais.", code="login_code_invalid")
    session_id, session = redeemed
    response = web.json_response(_session_body(session.csrf, session.client))
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", path="/", max_age=int(SESSION_TTL))
    return response


async def current_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    session = services.ui_sessions.lookup(request.cookies.get(COOKIE, ""))
    if session is None:
        raise AuthenticationRequired("Aucune session du tableau de bord.", code="session_expired")
    return web.json_response(_session_body(session.csrf, session.client))


async def close_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    services.ui_sessions.end(request.cookies.get(COOKIE, ""))
    response = web.json_response({"closed": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def settings_summary(request: web.Request) -> web.Response:
    """The configuration as the doctor may read it: no secrets, no key material."""
    config = request.app[SERVICES].config
    return web.json_response({
        "source": config.source,
        "workstation_id": config.workstation_id,
        "data_dir": str(config.data_dir),
        "api": {"host": config.api.host, "port": config.api.port, "allowed_origins": list(config.api.allowed_origins)},
        "store": {"master_key": config.store.master_key, "retention_days": config.store.retention_days},
        "sandbox": config.sandbox.enabled,
        "log_level": config.agent.log_level,
        "sections": _sections(config),
    })


def _sections(config: Any) -> dict[str, Any]:
    """Every other section's plain values (paths, URLs, delays), leaving out anything that looks secret."""
    from dataclasses import asdict, fields, is_dataclass

    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in ("agent", "api", "store", "sandbox") or not is_dataclass(value) or isinstance(value, type):
            continue
        out[f.name] = {k: v for k, v in asdict(value).items()
                       if not any(word in k for word in ("password", "secret", "pin", "key_pass"))}
    return out


SESSION_SCHEMA = {"type": "object", "required": ["csrf", "client"],
                  "properties": {"csrf": {"type": "string"}, "client": {"type": "string"}}}


def register(table: RouteTable) -> None:
    table.get("/ui/", index, summary="Tableau de bord (page)", tag="dashboard", public=True,
              responses={200: {"description": "Page HTML", "content": {"text/html": {"schema": {"type": "string"}}}}})
    table.get("/ui/{asset}", asset, summary="Fichiers statiques du tableau de bord", tag="dashboard", public=True,
              responses={200: {"description": "Fichier"}, 404: problem_response("Fichier inconnu")})
    table.post("/v1/ui/login-link", login_link, summary="Lien de connexion à usage unique au tableau de bord",
               tag="dashboard", body="none",
               description="For the tray: a URL whose fragment carries a one-time code (60 s).",
               responses={200: json_response("Lien", {"type": "object", "properties": {
                   "url": {"type": "string"}, "expires_in": {"type": "integer"}}})})
    table.post("/ui/session", open_session, summary="Ouvrir une session du tableau de bord", tag="dashboard",
               public=True,
               request_schema={"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}},
               responses={200: json_response("Session ouverte (cookie HttpOnly SameSite=Strict)", SESSION_SCHEMA),
                          401: problem_response("Code expiré ou déjà utilisé")})
    table.get("/ui/session", current_session, summary="Session courante du tableau de bord", tag="dashboard",
              responses={200: json_response("Session", SESSION_SCHEMA)})
    table.delete("/ui/session", close_session, summary="Fermer la session du tableau de bord", tag="dashboard",
                 responses={200: json_response("Session fermée")})
    table.get("/v1/config", settings_summary, summary="Résumé de la configuration (lecture seule, sans secret)",
              tag="agent", responses={200: json_response("Configuration")})
