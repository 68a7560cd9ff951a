"""The frames tap: how a transport hands its raw requests and answers to the homologation journal.

The CNDA asks, for each test of its book, the request and response "frames" exchanged with the national service.
A transport (DMP, INSi, MSSanté) holds an optional ``FrameTap`` (None: nothing is kept) and calls, where it sends,
``exchange = open_exchange(self.frames, service, action, body, content_type)`` and, where the answer has been read,
``exchange.answered(data, status=..., content_type=...)``. An exchange that is never answered stays in the journal
as "sans réponse" (timeout, connection lost). The journal itself (``agent/homologation/journal.py``) decides whether
anything is kept, seals it like a document, and erases it after its retention: a transport never knows.

SMTP has no single request and answer: ``SmtpDialog`` records what the client writes and the server replies after
the session is open (after authentication: no credential is ever kept).

Nothing here logs: frames carry patient data and must never reach the ordinary logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Exchange(Protocol):
    def answered(self, data: bytes, *, status: int | str = "", content_type: str = "") -> None: ...


class FrameTap(Protocol):
    def exchange(self, service: str, action: str, request: bytes, *, content_type: str = "") -> Exchange: ...


class _Nothing:
    def answered(self, data: bytes, *, status: int | str = "", content_type: str = "") -> None:
        return None


NO_EXCHANGE: Exchange = _Nothing()


def open_exchange(tap: FrameTap | None, service: str, action: str, request: bytes,
                  content_type: str = "") -> Exchange:
    """The exchange to answer when the response has been read; a no-op without a tap. Never raises: keeping a
    frame must not fail the call it records."""
    if tap is None:
        return NO_EXCHANGE
    try:
        return tap.exchange(service, action, request, content_type=content_type)
    except Exception:
        return NO_EXCHANGE


class SmtpDialog:
    """Wraps an open ``smtplib.SMTP`` client's ``send`` and ``getreply`` to keep the session's dialog: what was
    written (commands and message) is the request, what the server replied is the response."""

    def __init__(self, tap: FrameTap | None, client: Any, action: str = "submission") -> None:
        self._tap = tap
        self._sent: list[bytes] = []
        self._replies: list[str] = []
        self._last = ""
        self._action = action
        if tap is None:
            return
        send: Callable[[Any], None] = client.send
        getreply: Callable[[], tuple[int, bytes]] = client.getreply

        def recording_send(data: Any) -> None:
            self._sent.append(data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data))
            send(data)

        def recording_getreply() -> tuple[int, bytes]:
            code, message = getreply()
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
            self._replies.append(f"{code} {text}")
            self._last = str(code)
            return code, message

        client.send = recording_send
        client.getreply = recording_getreply

    def done(self) -> None:
        """Hand the dialog to the journal (request and replies as one exchange); a no-op without a tap."""
        if self._tap is None or not self._sent:
            return
        exchange = open_exchange(self._tap, "mss", self._action, b"".join(self._sent), "text/plain")
        try:
            exchange.answered("\r\n".join(self._replies).encode("utf-8") + b"\r\n", status=self._last or "",
                              content_type="text/plain")
        except Exception:
            return
