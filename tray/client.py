"""The tray's HTTP client of the agent: plain urllib, an SSE reader, and reconnection.

The tray never imports the agent: it finds it through a ``locate()`` callable (URL and token) that the
`relais tray` command gives it, called again after every disconnection so a restarted agent on another port
is found again.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Locator = Callable[[], tuple[str, str]]


class AgentUnavailable(Exception):
    """The agent does not answer (stopped, restarting) or refused the call."""


@dataclass(frozen=True)
class SseEvent:
    id: str
    type: str
    data: dict[str, Any]


class AgentClient:
    def __init__(self, locate: Locator, *, timeout: float = 10.0) -> None:
        self._locate = locate
        self._timeout = timeout

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> urllib.request.Request:
        try:
            url, token = self._locate()
        except Exception as exc:  # the runtime file is missing: the agent is not running
            raise AgentUnavailable(str(exc)) from exc
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        return urllib.request.Request(url + path, data=data, method=method, headers=headers)  # noqa: S310

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = self._request(method, path, body)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 - loopback
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail", str(exc))
            except ValueError:
                detail = str(exc)
            raise AgentUnavailable(detail) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise AgentUnavailable(str(exc)) from exc

    def status(self) -> dict[str, Any]:
        result = self.call("GET", "/v1/status")
        return result if isinstance(result, dict) else {}

    def login_link(self) -> str:
        return str(self.call("POST", "/v1/ui/login-link")["url"])

    def events(self, last_id: str = "") -> Iterator[SseEvent]:
        """Events until the connection drops (then the iterator ends: the caller reconnects)."""
        request = self._request("GET", "/v1/events")
        request.add_header("Accept", "text/event-stream")
        if last_id:
            request.add_header("Last-Event-ID", last_id)
        try:
            response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - heartbeats arrive every 15 s
        except (urllib.error.URLError, OSError) as exc:
            raise AgentUnavailable(str(exc)) from exc
        with response:
            yield from parse_sse(iter(response.readline, b""))


def parse_sse(lines: Iterator[bytes]) -> Iterator[SseEvent]:
    event_id, event_type = "", "message"
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = {}
                yield SseEvent(event_id, event_type, payload if isinstance(payload, dict) else {})
            event_type, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            event_type = value
        elif field == "data":
            data.append(value)


def follow(client: AgentClient, on_event: Callable[[SseEvent | None], None], stop: Callable[[], bool],
           sleep: Callable[[float], object] = time.sleep) -> None:
    """Follow the event stream forever, reconnecting with a capped backoff; ``None`` means "disconnected"."""
    last_id, delay = "", 0.5
    while not stop():
        try:
            on_event(SseEvent("", "stream.connected", {}))
            delay = 0.5
            for event in client.events(last_id):
                if event.id:
                    last_id = event.id
                on_event(event)
                if stop():
                    return
        except AgentUnavailable:
            pass
        on_event(None)
        sleep(delay)
        delay = min(delay * 2, 10.0)
