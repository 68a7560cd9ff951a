"""Seams between parts: DMP access rights, traces, and the feeding gate.

The DMP routes, the INSi routes and the queue call these protocols; the consent/traces part implements them
(consent store, habilitation matrix, DICA, hash-chained traces). Until it is wired, the composition root
installs the permissive defaults below, which say so in ``/v1/status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the professional (RPPS from the CPS) on this workstation, through which API client."""

    rpps: str | None
    workstation: str
    client: str = ""
    profession: str | None = None
    specialty: str | None = None
    mode: str = "normal"  # "normal", "bris_de_glace", "centre_15"


@dataclass(frozen=True, slots=True)
class TraceEvent:
    action: str  # e.g. "dmp.search", "dmp.retrieve", "insi.search", "order.sent", "order.cancelled"
    actor: Actor
    ins: str | None = None
    object: str | None = None  # a document uniqueId / entryUUID, an order id...
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)  # no patient names, no content


class TraceRecorder(Protocol):
    async def record(self, event: TraceEvent) -> None: ...


class AccessPolicy(Protocol):
    async def check_consultation(self, ins: str, actor: Actor) -> None:
        """Raise AccessRefused (French reason) when the DMP may not be consulted."""
        ...

    def filter_readable(self, entries: Sequence[Any], actor: Actor) -> list[Any]:
        """Keep the entries (with ``type_code`` / ``class_code``) this professional may read."""
        ...


class FeedingGate(Protocol):
    async def check_feeding(self, ins: str) -> None:
        """Raise InvalidInput(code="feeding_opposed") when the patient opposed feeding their DMP."""
        ...


class NoTraces:
    async def record(self, event: TraceEvent) -> None:
        return None


class AllowAll:
    async def check_consultation(self, ins: str, actor: Actor) -> None:
        return None

    def filter_readable(self, entries: Sequence[Any], actor: Actor) -> list[Any]:
        return list(entries)

    async def check_feeding(self, ins: str) -> None:
        return None
