"""The frames tap: how a transport hands its raw requests and answers to the homologation journal.

The CNDA asks, for each test of its book, the request and response "frames" exchanged with the national service.
A transport (DMP, INSi, MSSanté) holds an optional ``FrameTap`` (None: nothing is kept) and calls, where it sends,
``exchange = open_exchange(self.frames, service, action, body, content_type)`` and, where the answer has been read,
``exchange.answered(data, status=..., content_type=...)``. An exchange that is never answered stays in the journal
as "sans réponse" (timeout, connection lost). The journal itself (``agent/homologation/journal.py``) decides whether
anything is kept, seals it like a document, and erases it after its retention: a transport never knows.

SMTP and IMAP have no single request and answer: ``SmtpDialog`` and ``ImapDialog`` record what the client writes
and the server replies once the session is authenticated (no credential is ever kept), as one exchange per session.

Nothing here logs: frames carry patient data and must never reach the ordinary logs.
"""

from __future__ import annotations

import re
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


_TAGGED = re.compile(rb"^[A-Za-z]+\d+ (OK|NO|BAD)\b")


class ImapDialog:
    """Wraps an authenticated ``imaplib.IMAP4`` client's ``send``, ``readline`` and ``read``: the commands written
    are the request, the server's lines and literals (the reports fetched) the response. The status is that of the
    last tagged completion (``IMAP OK``, ``IMAP NO``...)."""

    def __init__(self, tap: FrameTap | None, client: Any, action: str = "imap") -> None:
        self._tap = tap
        self._sent: list[bytes] = []
        self._received: list[bytes] = []
        self._status = ""
        self._action = action
        if tap is None:
            return
        send: Callable[[bytes], None] = client.send
        readline: Callable[[], bytes] = client.readline
        read: Callable[[int], bytes] = client.read

        def recording_send(data: bytes) -> None:
            self._sent.append(bytes(data))
            send(data)

        def recording_readline() -> bytes:
            line = readline()
            self._received.append(line)
            match = _TAGGED.match(line)
            if match:
                self._status = match.group(1).decode()
            return line

        def recording_read(size: int) -> bytes:
            data = read(size)
            self._received.append(data)
            return data

        client.send = recording_send
        client.readline = recording_readline
        client.read = recording_read

    def done(self) -> None:
        """Hand the session to the journal (commands and answers as one exchange); a no-op without a tap."""
        if self._tap is None or not self._sent:
            return
        exchange = open_exchange(self._tap, "mss", self._action, b"".join(self._sent), "text/plain")
        try:
            exchange.answered(b"".join(self._received), status=f"IMAP {self._status}".strip(),
                              content_type="text/plain")
        except Exception:
            return
