"""Time and randomness, injected: logic asks a Clock, never ``datetime.now()`` directly.

Tests pass a ``FrozenClock`` they move by hand; the agent uses ``SystemClock``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for durations and rate limits."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, when: datetime) -> None:
        """Jump the wall clock (a clock change); the monotonic clock is unaffected."""
        self._now = when


def elapsed_seconds() -> float:
    """Seconds since boot, counting time asleep where the system can (Linux ``CLOCK_BOOTTIME``; Windows'
    ``time.monotonic`` counts sleep already): the wall clock's reference for ``ClockWatch``, so that waking a
    laptop is not taken for a clock change. On macOS ``time.monotonic`` stops during sleep: a wake after a long
    sleep is then reported as a forward jump."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        return time.clock_gettime(boottime)
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class ClockJump:
    """The wall clock moved by ``seconds`` (positive: forward) more than the elapsed time says."""

    seconds: float
    at: datetime  # the wall time once the jump was seen

    @property
    def message(self) -> str:
        minutes = round(abs(self.seconds) / 60)
        way = "avancée" if self.seconds > 0 else "reculée"
        return (f"L'horloge de l'ordinateur a été {way} d'environ {minutes} minute(s). Les délais d'annulation et "
                "les nouvelles tentatives d'envoi gardent leur durée ; vérifiez la date et l'heure du poste.")

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "at": rfc3339(self.at), "message": self.message}


class ClockWatch:
    """Sees the wall clock jump (set back or forward by hand, a bad NTP step) by comparing it with the elapsed
    time: the drift between the two since the last look, beyond ``threshold`` seconds, is a jump. ``check`` is
    cheap; the queue calls it before each pass, so a jump is seen before anything due is released."""

    def __init__(self, clock: Clock, *, threshold: float = 60.0, elapsed: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._elapsed = elapsed or clock.monotonic
        self.threshold = threshold
        self.last: ClockJump | None = None
        self._wall, self._mono = self._read()

    def _read(self) -> tuple[float, float]:
        return self._clock.now().timestamp(), self._elapsed()

    def check(self) -> ClockJump | None:
        wall, mono = self._read()
        drift = (wall - self._wall) - (mono - self._mono)
        self._wall, self._mono = wall, mono
        if abs(drift) < self.threshold:
            return None
        self.last = ClockJump(drift, self._clock.now())
        return self.last

    def status(self) -> dict[str, Any]:
        return {"last_jump": self.last.as_dict() if self.last is not None else None}


def rfc3339(when: datetime) -> str:
    """RFC 3339 UTC with a Z, seconds precision unless there are microseconds."""
    text = when.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("time without a timezone")
    return value.astimezone(UTC)
