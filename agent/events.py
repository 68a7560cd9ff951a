"""The in-process event bus behind ``GET /v1/events``.

Services publish typed events (``card.inserted``, ``order.updated``...); the SSE route and internal listeners
subscribe. Publishing never blocks: a subscriber that does not keep up loses its oldest events and is told so
with a ``stream.lagged`` event, rather than slowing the queue or the card thread down. A ring of recent events
lets a client that reconnects with ``Last-Event-ID`` catch up.

Events carry identifiers and states, never a patient name, NIR or document content.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agent.clock import Clock, SystemClock, rfc3339


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str
    at: str
    data: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, **self.data}


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self._loop = asyncio.get_running_loop()
        self.lagged = False

    def _offer(self, event: Event) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.lagged = True
        self._queue.put_nowait(event)

    async def get(self, timeout: float | None = None) -> Event | None:
        # asyncio.timeout, never asyncio.wait_for, in every loop a stop cancels: on Python 3.11, wait_for loses
        # the cancellation when its inner wait completes at the same moment (CPython gh-86296), and the task
        # then waits on as if never stopped (a shutdown hung on the routing loop this way).
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def close(self) -> None:
        self._bus._unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()


class EventBus:
    """Fan-out of events to subscribers; safe to publish from any thread."""

    def __init__(self, clock: Clock | None = None, *, history: int = 256) -> None:
        self._clock = clock or SystemClock()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._recent: collections.deque[Event] = collections.deque(maxlen=history)

    def publish(self, type_: str, **data: Any) -> Event:
        with self._lock:
            event = Event(next(self._ids), type_, rfc3339(self._clock.now()), data)
            self._recent.append(event)
            subscribers = list(self._subscribers)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # published from a thread (the card monitor)
            running = None
        for sub in subscribers:
            if running is sub._loop:
                sub._offer(event)
            else:
                sub._loop.call_soon_threadsafe(sub._offer, event)
        return event

    def subscribe(self, *, maxsize: int = 1000, after: int | None = None) -> Subscription:
        """Subscribe from the event loop; with ``after``, events newer than that id are replayed first."""
        sub = Subscription(self, maxsize)
        with self._lock:
            if after is not None:
                for event in self._recent:
                    if event.id > after:
                        sub._offer(event)
            self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
