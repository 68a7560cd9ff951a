"""The one source of truth about whether each national service answers: ``connectivity.changed`` and
``/v1/status`` both read it.

Clients (DMP, INSi, MSSanté) and the queue report what they saw (``report("dmp", False)``); the tracker keeps
the last reading per service and publishes ``connectivity.changed`` only when a service's reachability changes,
so a listener never depends on which part happened to look first.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.clock import Clock, rfc3339
from agent.events import EventBus


@dataclass(frozen=True, slots=True)
class Reading:
    reachable: bool | None  # None: not checked yet
    checked_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, object]:
        return {"reachable": self.reachable,
                "checked_at": rfc3339(self.checked_at) if self.checked_at is not None else None}


class ConnectivityTracker:
    def __init__(self, bus: EventBus, clock: Clock) -> None:
        self._bus = bus
        self._clock = clock
        self._lock = threading.Lock()
        self._readings: dict[str, Reading] = {}

    def report(self, service: str, reachable: bool) -> None:
        """What a call to ``service`` just showed; publishes ``connectivity.changed`` on a change."""
        with self._lock:
            before = self._readings.get(service, Reading(None)).reachable
            self._readings[service] = Reading(reachable, self._clock.now())
        if before is not reachable:
            self._bus.publish("connectivity.changed", service=service, reachable=reachable)

    def reporter(self, service: str) -> Callable[[bool], None]:
        """A callback for one client: ``reporter("dmp")(True)``."""
        return lambda reachable: self.report(service, reachable)

    def reading(self, service: str) -> Reading:
        with self._lock:
            return self._readings.get(service, Reading(None))
