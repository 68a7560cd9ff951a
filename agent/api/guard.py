"""The API guard: every rule of the security model, in one middleware, in this order.

1. Host must name the loopback with our port (defeats DNS rebinding: a page on evil.example resolved to
   127.0.0.1 still sends ``Host: evil.example``).
2. Origin, when present, must be in the configured allowlist (empty by default); ``null`` is never allowed,
   and CORS headers are only ever echoed for an allowed origin, never ``*``.
3. ``Sec-Fetch-Site: cross-site`` is refused: a browser tells us the request comes from another site.
4. Unknown routes are 404/405 before anything else is looked at.
5. A body larger than the route allows is refused from its Content-Length, before a byte of it is read;
   a chunked body is cut at the same limit while reading.
6. After repeated authentication failures, failed attempts answer 429 for a while. The lockout is the
   guesser's, never global: a valid token or session is checked first (in constant time) and always passes,
   so a local process sending bad tokens cannot keep the LGC out (tokens are 256-bit: the lockout is an alarm
   and a brake, not what makes guessing hopeless).
7. A bearer token issued to a named client, compared in constant time, is required except on public routes.

GET routes never change state by construction (the route table refuses a GET with a body, and handlers of GET
only read). Errors raised by handlers become problem+json here and only here.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict

from agent import errors as e
from agent.api.problems import SECURITY_HEADERS, problem, problem_from
from agent.api.schema import check_body
from agent.api.sessions import COOKIE, CSRF_HEADER, UiSessions
from agent.api.spec import Route, resolve, route_of
from agent.clock import Clock
from agent.config import is_loopback_host
from agent.logs import get_logger
from agent.store.tokens import TokenInfo

log = get_logger("api.guard")

CLIENT_KEY: web.RequestKey[TokenInfo] = web.RequestKey("relais_client", TokenInfo)
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


@dataclass
class GuardSettings:
    port: int  # updated once the socket is bound when the config asked for port 0
    allowed_origins: frozenset[str]
    max_body: int
    max_upload: int
    failure_limit: int
    failure_window: float
    # False only for the standalone sandbox process (loopback-only, test data, no token by contract).
    require_token: bool = True


@dataclass
class FailureTracker:
    """Failed authentication attempts in a sliding window. All clients are local (one address), so failures
    cannot be told apart by client: they lock out failed attempts only, never a client that authenticates."""

    limit: int
    window: float
    clock: Clock
    _failures: collections.deque[float] = field(default_factory=collections.deque)

    def _trim(self) -> None:
        horizon = self.clock.monotonic() - self.window
        while self._failures and self._failures[0] < horizon:
            self._failures.popleft()

    def locked_for(self) -> int:
        """Seconds until attempts are accepted again; 0 when not locked."""
        self._trim()
        if len(self._failures) < self.limit:
            return 0
        return max(1, int(self._failures[0] + self.window - self.clock.monotonic()) + 1)

    def record(self) -> None:
        self._failures.append(self.clock.monotonic())
        self._trim()


TokenVerifier = Callable[[str], Awaitable[TokenInfo | None]]


def host_allowed(host_header: str | None, port: int) -> bool:
    if not host_header:
        return False
    host = host_header.strip().lower()
    for name in _LOOPBACK_NAMES:
        if host == f"{name}:{port}":
            return True
    # Any 127.0.0.0/8 literal with our port.
    name, _, port_text = host.rpartition(":")
    return bool(name) and port_text == str(port) and name.startswith("127.") and is_loopback_host(name)


def cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Vary": "Origin",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
        "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
        "Access-Control-Max-Age": "600",
    }


def own_origins(port: int) -> frozenset[str]:
    """The dashboard's own origins: same-origin calls from /ui/ are not cross-origin."""
    return frozenset(f"http://{name}:{port}" for name in _LOOPBACK_NAMES)


def make_guard(
    settings: GuardSettings, verify: TokenVerifier, failures: FailureTracker, sessions: UiSessions | None = None
) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if not host_allowed(request.headers.get("Host"), settings.port):
            log.warning("requête refusée : en-tête Host non local")
            return problem(403, "host_refused", "Accès refusé",
                           "L'agent Relais n'accepte que les requêtes adressées à 127.0.0.1 ou localhost.")
        origin = request.headers.get("Origin")
        same_origin = origin is not None and origin in own_origins(settings.port)
        if origin is not None and not same_origin and origin not in settings.allowed_origins:
            log.warning("requête refusée : origine non autorisée")
            return problem(403, "origin_refused", "Accès refusé",
                           "Cette page web n'est pas autorisée à utiliser l'agent Relais.")
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return problem(403, "cross_site_refused", "Accès refusé",
                           "Requête venant d'un autre site refusée par l'agent Relais.")
        extra_headers = cors_headers(origin) if origin is not None and not same_origin else {}

        if request.method == "OPTIONS" and extra_headers:
            return web.Response(status=204, headers=CIMultiDict({**extra_headers, **SECURITY_HEADERS}))

        route = route_of(request)
        try:
            if route is None:
                # Unknown path or method: let aiohttp raise its 404/405, turned into a problem below.
                return _finish(await handler(request), extra_headers)
            _check_body_size(request, route, settings)
            if settings.require_token and not route.public:
                request[CLIENT_KEY] = await _authenticate(request, verify, failures, sessions)
            response = await handler(request)
        except e.RelaisError as error:
            response = problem_from(error)
        except web.HTTPException as exc:
            if exc.status == 404:
                response = problem(404, "not_found", "Introuvable", "Cette adresse n'existe pas dans l'API Relais.")
            elif exc.status == 405:
                response = problem(405, "method_not_allowed", "Méthode non autorisée",
                                   f"La méthode {request.method} n'est pas acceptée à cette adresse.")
            elif exc.status == 413:
                response = problem(413, "payload_too_large", "Requête trop volumineuse",
                                   "Le corps de la requête dépasse la taille autorisée.")
            else:
                raise
        except Exception:
            log.exception("erreur interne sur %s %s", request.method, request.path)
            response = problem(500, "internal_error", "Erreur interne de l'agent Relais",
                               "Une erreur inattendue est survenue ; elle est consignée dans le journal de l'agent.")
        return _finish(response, extra_headers)

    return guard


def _finish(response: web.StreamResponse, extra: dict[str, str]) -> web.StreamResponse:
    if not response.prepared:
        for name, value in {**SECURITY_HEADERS, **extra}.items():
            response.headers.setdefault(name, value)
    return response


def _check_body_size(request: web.Request, route: Route, settings: GuardSettings) -> None:
    limit = body_limit(route, settings)
    length = request.content_length
    if route.body == "none":
        if length:
            raise e.InvalidInput.field("body", "Cette adresse n'accepte pas de corps de requête.")
        return
    if length is not None and length > limit:
        raise e.PayloadTooLarge(f"Le corps de la requête dépasse {limit} octets.", limit=limit)


def body_limit(route: Route, settings: GuardSettings) -> int:
    return settings.max_upload if route.body == "upload" else settings.max_body


async def _authenticate(
    request: web.Request, verify: TokenVerifier, failures: FailureTracker, sessions: UiSessions | None
) -> TokenInfo:
    cookie = request.cookies.get(COOKIE)
    if sessions is not None and cookie and "Authorization" not in request.headers:
        return _session_client(request, sessions, cookie, failures)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        _failed(failures)
        raise e.AuthenticationRequired("Jeton d'accès manquant : en-tête « Authorization: Bearer <jeton> ».",
                                       code="token_missing")
    client = await verify(token.strip())
    if client is None:
        _failed(failures)
        log.warning("jeton refusé (inconnu ou révoqué)")
        raise e.AuthenticationRequired("Jeton d'accès inconnu ou révoqué.", code="token_invalid")
    return client


def _failed(failures: FailureTracker) -> None:
    """A failed attempt: 429 while failures are over the limit (this attempt is then not counted, so the lockout
    ends with the window), else counted and the caller answers 401."""
    wait = failures.locked_for()
    if wait:
        raise e.TooManyFailures(
            f"Trop d'échecs d'authentification : réessayez dans {wait} secondes.", retry_after=wait
        )
    failures.record()


def _session_client(request: web.Request, sessions: UiSessions, cookie: str, failures: FailureTracker) -> TokenInfo:
    """The dashboard's cookie session; state changes also need the CSRF header (SameSite is a second lock)."""
    session = sessions.lookup(cookie)
    if session is None:
        _failed(failures)
        raise e.AuthenticationRequired("Session du tableau de bord expirée : rouvrez-le depuis l'icône Relais.",
                                       code="session_expired")
    if request.method not in ("GET", "HEAD") and not sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise e.AccessRefused("Requête refusée : jeton anti-falsification (CSRF) absent ou faux.", code="csrf_refused")
    return TokenInfo(id="ui", name=f"{session.client} (tableau de bord)", created_at="", last_used_at=None,
                     revoked_at=None)


async def read_json(request: web.Request, limit: int | None = None) -> dict[str, Any]:
    """The request's JSON object, with clear errors; enforces the route's size limit on chunked bodies too."""
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise e.InvalidInput(
            "Le corps doit être du JSON (Content-Type: application/json).",
            errors=[e.FieldError("Content-Type", "application/json attendu")],
            code="unsupported_media_type",
        )
    if limit is None:
        limit = request.app[LIMITS_KEY](route_of(request))
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise e.PayloadTooLarge(f"Le corps de la requête dépasse {limit} octets.", limit=limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        position = getattr(exc, "pos", None)
        where = f" (position {position})" if position is not None else ""
        raise e.InvalidInput(
            f"JSON mal formé{where}.", errors=[e.FieldError("body", f"JSON mal formé{where}")], code="malformed_json"
        ) from exc
    if not isinstance(data, dict):
        raise e.InvalidInput.field("body", "Un objet JSON est attendu.")
    route = route_of(request)
    if route is not None and route.request_schema is not None:
        check_body(data, route.request_schema, resolve)  # unknown keys and wrong types: 422 naming each field
    return data


LIMITS_KEY: web.AppKey[Callable[[Route | None], int]] = web.AppKey("relais_body_limits")
