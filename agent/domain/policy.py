"""Seams between parts: DMP access rights, traces, and the feeding gate.

The DMP consultation, the INSi routes and the queue call these protocols; the consent/traces part implements them
(consent store, habilitation matrix, DICA, hash-chained traces). There is no permissive default: an agent without
its rights and traces part does not start.
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
    reason: str = ""  # why an emergency mode is used (traced; never in events or logs)
    family_name: str = ""  # the CPS holder's name, for the VIHF (never traced: the RPPS is)
    given_name: str = ""
    via_psc: bool = False  # identified through Pro Santé Connect (no card): DMP calls in the PSC mode
    # The professional proved they hold the card (CPS PIN verified): only then is a national service called in
    # their name (DICA's TD0.2 at a carte Vitale's insertion, CONF.21's acknowledgement).
    authenticated: bool = False


@dataclass(frozen=True, slots=True)
class TraceEvent:
    action: str  # e.g. "dmp.search", "dmp.retrieve", "insi.search", "order.sent", "order.cancelled"
    actor: Actor
    ins: str | None = None
    object: str | None = None  # a document uniqueId / entryUUID, an order id...
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)  # no patient names, no content


class TraceRecorder(Protocol):
    """The trace policy, decided once: a trace that cannot be written fails what it records. Where there is a
    state change (a send, a failure, a cancellation), the trace is written in the same store transaction
    (``record_in``), so both commit or neither does; elsewhere (DMP reads, INSi calls) it is written before the
    answer leaves (``record``), and its failure is the operation's."""

    async def record(self, event: TraceEvent) -> None: ...

    def record_in(self, conn: Any, event: TraceEvent) -> None:
        """Append within the caller's store transaction (``conn`` is its sqlite3 connection)."""
        ...


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
