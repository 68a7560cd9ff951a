"""The PSC part: logins in progress, the professional's session, refresh and logout, the loopback redirect.

One professional at a time per workstation (as one CPS in a reader): a new login replaces the session, and a
token is only ever handed out for the RPPS it was issued to (``access_token(rpps)``). Tokens live in this
object's memory only: never written to disk, never logged, never in an API answer. The session ends at logout,
when PSC refuses the refresh (revoked or expired), or when the agent stops.

The redirect: PSC sends the browser back to ``http://127.0.0.1:<redirect_port><redirect_path>`` (RFC 8252 §7.3),
served by a small listener of this part (not the agent's API: the browser carries no API token and comes from
another site). It answers only that path, and only for a ``state`` it issued, once, within the login timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.clock import Clock, rfc3339
from agent.errors import AccessRefused, AuthenticationRequired, RelaisError, TransientRemoteError
from agent.events import EventBus
from agent.lifecycle import Lifecycle
from agent.logs import get_logger
from agent.psc.client import PendingLogin, PscClient, TokenSet
from agent.psc.identity import PscIdentity, identity_from

log = get_logger("psc")
MAX_PENDING = 8
REFRESH_MARGIN = dt.timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class RedirectSettings:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port chosen at start (PSC must then accept any loopback port)
    path: str = "/psc/callback"
    login_timeout_seconds: float = 300.0


@dataclass
class PscSession:
    identity: PscIdentity
    tokens: TokenSet
    started_at: dt.datetime


class PscPart(Lifecycle):
    def __init__(self, client: PscClient, bus: EventBus, clock: Clock, redirect: RedirectSettings) -> None:
        self.client = client
        self.bus = bus
        self.clock = clock
        self.redirect = redirect
        self._pending: dict[str, PendingLogin] = {}
        self._session: PscSession | None = None
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self.redirect_uri = ""
        self.last_error = ""
        self.on_login: Callable[[PscIdentity], Awaitable[None]] | None = None
        self._push_task: asyncio.Task[None] | None = None

    # --- lifecycle: the loopback redirect listener ------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_get(self.redirect.path, self._callback)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.redirect.host, self.redirect.port, reuse_address=False)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.redirect_uri = f"http://{self.redirect.host}:{port}{self.redirect.path}"

    async def stop(self) -> None:
        if self._push_task is not None:
            self._push_task.cancel()
            await asyncio.gather(self._push_task, return_exceptions=True)
        self._pending.clear()
        self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.client.close()

    # --- login -----------------------------------------------------------------------------------------

    async def begin_login(self) -> dict[str, Any]:
        """A new login: the URL the system browser opens (PSC's page: CPS card or e-CPS, push or QR code)."""
        self._expire_pending()
        while len(self._pending) >= MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        pending = PendingLogin.new(self.redirect_uri, self.clock.monotonic())
        url = await self.client.authorization_url(pending)
        self._pending[pending.state] = pending
        return {"authorization_url": url, "redirect_uri": self.redirect_uri,
                "expires_in": int(self.redirect.login_timeout_seconds)}

    def _expire_pending(self) -> None:
        limit = self.clock.monotonic() - self.redirect.login_timeout_seconds
        for state in [s for s, p in self._pending.items() if p.started < limit]:
            del self._pending[state]

    async def complete(self, state: str, code: str, iss: str | None = None, error: str = "") -> PscIdentity:
        """Finish a login from PSC's redirect: state known (and used once), code exchanged with the PKCE
        verifier, id_token verified, userinfo read and matched to the id_token."""
        self._expire_pending()
        pending = self._pending.pop(state, None) if state else None
        if pending is None:
            raise AccessRefused("Connexion Pro Santé Connect inconnue ou expirée (state).", code="psc_state_invalid")
        if error:
            raise AuthenticationRequired("Connexion Pro Santé Connect refusée ou abandonnée.", code="psc_denied")
        if not code:
            raise AuthenticationRequired("Pro Santé Connect n'a pas donné de code.", code="psc_refused")
        tokens, claims = await self.client.exchange(pending, code, iss)
        return await self._open(tokens, claims)

    async def _open(self, tokens: TokenSet, claims: dict[str, Any], expected: str = "") -> PscIdentity:
        """The session of verified tokens: userinfo matched to the id_token (and to ``expected``, a national id
        or RPPS, for a push), traced, then replacing any previous session."""
        userinfo = await self.client.userinfo(tokens.access_token)
        identity = identity_from(userinfo, claims)
        if expected and expected not in (identity.national_id, identity.rpps):
            raise AccessRefused("Pro Santé Connect a répondu pour un autre professionnel.", code="psc_subject_mismatch")
        if self.on_login is not None:
            await self.on_login(identity)  # the trace: no trace, no session
        async with self._lock:
            previous = self._session
            self._session = PscSession(identity, tokens, self.clock.now())
        if previous is not None and previous.identity.national_id != identity.national_id:
            await self._revoke_quietly(previous.tokens)
            self.bus.publish("psc.logout", rpps=previous.identity.rpps, reason="replaced")
        log.info("connexion Pro Santé Connect : RPPS %s", identity.rpps)
        self.bus.publish("psc.login", rpps=identity.rpps)
        return identity

    async def begin_push(self, login_hint: str) -> dict[str, Any]:
        """"Se connecter avec e-CPS" without a browser: PSC pushes the request to the professional's app (CIBA);
        the agent polls in the background and opens the session when it is approved."""
        binding = f"Relais {secrets.randbelow(10_000):04d}"  # shown on the app and here: the doctor compares them
        auth_req_id, interval, expires = await self.client.ciba_start(login_hint, binding)
        if self._push_task is not None:
            self._push_task.cancel()
        self._push_task = asyncio.create_task(self._poll_push(auth_req_id, interval, expires, login_hint),
                                              name="relais-psc-push")
        return {"binding_message": binding, "expires_in": int(expires)}

    async def _poll_push(self, auth_req_id: str, interval: float, expires: float, login_hint: str) -> None:
        deadline = self.clock.monotonic() + expires
        while self.clock.monotonic() < deadline:
            await asyncio.sleep(max(interval, 0.2))
            try:
                approved = await self.client.ciba_poll(auth_req_id)
                if approved is not None:
                    await self._open(*approved, expected=login_hint)
                    self.last_error = ""
                    return
            except RelaisError as exc:
                self.last_error = exc.code
                log.warning("connexion e-CPS par notification refusée : %s", exc.code)
                return
        self.last_error = "psc_push_expired"

    async def _callback(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            identity = await self.complete(q.get("state", ""), q.get("code", ""), q.get("iss"), q.get("error", ""))
        except RelaisError as exc:
            self.last_error = exc.code
            log.warning("retour de Pro Santé Connect refusé : %s", exc.code)
            return _page(400, "Connexion refusée", exc.message)
        self.last_error = ""
        name = html.escape(f"{identity.given_name} {identity.family_name}".strip())
        return _page(200, "Connexion réussie",
                     f"{name} est connecté(e) à Relais avec Pro Santé Connect. Vous pouvez fermer cette fenêtre.")

    # --- the session -----------------------------------------------------------------------------------

    def identity(self) -> PscIdentity | None:
        session = self._session
        if session is None or not self._alive(session):
            return None
        return session.identity

    def _alive(self, session: PscSession) -> bool:
        """Usable now or after a refresh: the refresh token (else the access token) has not expired."""
        now = self.clock.now()
        if session.tokens.refresh_token:
            return session.tokens.refresh_expires_at is None or session.tokens.refresh_expires_at > now
        return session.tokens.expires_at > now

    def state(self) -> dict[str, Any]:
        """``GET /v1/psc/session``: who is connected and until when; never a token."""
        session = self._session
        if session is None or not self._alive(session):
            return {"active": False, "pending_logins": len(self._pending), "last_error": self.last_error or None}
        tokens = session.tokens
        return {"active": True, "professional": session.identity.as_dict(), "started_at": rfc3339(session.started_at),
                "access_expires_at": rfc3339(tokens.expires_at),
                "session_expires_at": rfc3339(tokens.refresh_expires_at) if tokens.refresh_expires_at else None,
                "pending_logins": len(self._pending)}

    def ready(self, rpps: str) -> bool:
        identity = self.identity()
        return identity is not None and identity.rpps[-11:] == rpps[-11:]

    async def access_token(self, rpps: str) -> str | None:
        """A valid PSC access token of the professional ``rpps`` (refreshed when near expiry), or None: no session
        for this professional, or PSC refused the refresh (revoked, expired: the session ends)."""
        async with self._lock:
            session = self._session
            if session is None or session.identity.rpps[-11:] != rpps[-11:]:
                return None
            if session.tokens.expires_at - REFRESH_MARGIN > self.clock.now():
                return session.tokens.access_token
            if not session.tokens.refresh_token or not self._alive(session):
                self._end(session, "expired")
                return None
            try:
                tokens, claims = await self.client.refresh(session.tokens)
            except TransientRemoteError:
                raise
            except RelaisError as exc:
                log.warning("rafraîchissement Pro Santé Connect refusé (%s) : session close", exc.code)
                self._end(session, "refused")
                return None
            if claims is not None and str(claims.get("sub", "")) != session.identity.subject:
                self._end(session, "subject_changed")
                return None
            session.tokens = tokens
            return tokens.access_token

    def _end(self, session: PscSession, reason: str) -> None:
        if self._session is session:
            self._session = None
            self.bus.publish("psc.logout", rpps=session.identity.rpps, reason=reason)

    async def logout(self) -> dict[str, Any]:
        """Ends the session here and at PSC (the refresh token revoked); the end-session URL lets the browser
        close PSC's own session too."""
        async with self._lock:
            session, self._session = self._session, None
        if session is None:
            return {"logged_out": False, "end_session_url": None}
        await self._revoke_quietly(session.tokens)
        url = ""
        try:
            url = await self.client.end_session_url(session.tokens.id_token) if session.tokens.id_token else ""
        except RelaisError:
            url = ""
        log.info("déconnexion Pro Santé Connect : RPPS %s", session.identity.rpps)
        self.bus.publish("psc.logout", rpps=session.identity.rpps, reason="logout")
        return {"logged_out": True, "end_session_url": url or None}

    async def _revoke_quietly(self, tokens: TokenSet) -> None:
        try:
            await self.client.revoke(tokens.refresh_token or tokens.access_token)
        except RelaisError as exc:
            log.warning("révocation Pro Santé Connect impossible (%s)", exc.code)


def _page(status: int, title: str, message: str) -> web.Response:
    nonce = secrets.token_urlsafe(8)
    body = (f"<!doctype html><html lang=\"fr\"><meta charset=\"utf-8\"><title>Relais – {html.escape(title)}</title>"
            f"<style nonce=\"{nonce}\">body{{font-family:sans-serif;margin:3em}}</style>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(message) if status != 200 else message}</p></html>")
    return web.Response(status=status, text=body, content_type="text/html", headers={
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": f"default-src 'none'; style-src 'nonce-{nonce}'; frame-ancestors 'none'"})
