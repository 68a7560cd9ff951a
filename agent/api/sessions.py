"""Dashboard sessions: a one-time login link, then an HttpOnly SameSite=Strict cookie with a CSRF token.

The tray (an API client with its own token) asks for a login link. The link carries a one-time code in its
URL *fragment* (``/ui/#login=...``): fragments are never sent to a server, so the code appears in no request
line and no log. The page posts the code once to ``/ui/session``, which sets the session cookie and returns the
CSRF token the page sends back in ``X-Relais-CSRF`` on every state-changing call. Codes live 60 seconds and
work once; sessions live in memory only (a restarted agent asks the tray for a new link).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from agent.clock import Clock

COOKIE = "relais_session"
CSRF_HEADER = "X-Relais-CSRF"
CODE_TTL = 60.0
SESSION_TTL = 12 * 3600.0
MAX_SESSIONS = 32


@dataclass(frozen=True, slots=True)
class UiSession:
    client: str
    csrf: str
    expires: float


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class UiSessions:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._codes: dict[str, tuple[str, float]] = {}  # sha256(code) -> (client, expires)
        self._sessions: dict[str, UiSession] = {}  # sha256(session id) -> session

    def _purge(self) -> None:
        now = self._clock.monotonic()
        self._codes = {k: v for k, v in self._codes.items() if v[1] > now}
        self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}

    def issue_code(self, client: str) -> str:
        self._purge()
        code = secrets.token_urlsafe(32)
        self._codes[_digest(code)] = (client, self._clock.monotonic() + CODE_TTL)
        return code

    def redeem(self, code: str) -> tuple[str, UiSession] | None:
        """Trade a one-time code for (session id, session); None when unknown, used or expired."""
        self._purge()
        entry = self._codes.pop(_digest(code), None)
        if entry is None:
            return None
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
            del self._sessions[oldest]
        session_id = secrets.token_urlsafe(32)
        session = UiSession(entry[0], secrets.token_urlsafe(32), self._clock.monotonic() + SESSION_TTL)
        self._sessions[_digest(session_id)] = session
        return session_id, session

    def lookup(self, session_id: str) -> UiSession | None:
        self._purge()
        return self._sessions.get(_digest(session_id))

    def active(self) -> int:
        """How many dashboard sessions are open (for /v1/status)."""
        self._purge()
        return len(self._sessions)

    def end(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)

    @staticmethod
    def csrf_ok(session: UiSession, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(session.csrf.encode(), presented.encode())
