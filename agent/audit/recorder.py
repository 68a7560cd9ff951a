"""The trace log: every DMP access, INSi call, send, cancellation, deletion, masking and consent change.

``TraceLog.record`` appends one row to the hash chain inside a store write: the previous link is read in the
same transaction, so concurrent writers (grouped by the store's writer) still form one chain. The call returns
once the row is on disk. Rows hold the actor's RPPS, the workstation, the client, the patient's INS, the action,
the object and the time; never a patient name or document content.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from agent.audit import chain
from agent.clock import Clock, rfc3339
from agent.domain.policy import TraceEvent
from agent.logs import get_logger
from agent.store import traces as table
from agent.store.db import Database
from agent.store.traces import StoredTrace, TraceFilter

log = get_logger("audit")

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class Page:
    items: list[StoredTrace]
    next_cursor: str | None


class TraceLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def record(self, event: TraceEvent) -> None:
        at = rfc3339(self._clock.now())

        def append(conn: sqlite3.Connection) -> StoredTrace:
            return append_event(conn, event, at)

        row = await self._db.write(append)
        log.debug("trace %d %s %s", row.seq, row.action, row.outcome)

    async def page(self, where: TraceFilter, limit: int) -> Page:
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self._db.read(lambda conn: table.select(conn, where, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, str(rows[-1].seq) if more and rows else None)

    async def verify(self) -> chain.Verification:
        return await self._db.read(verify_conn)

    async def last_consultation(self, ins: str) -> str | None:
        return await self._db.read(lambda conn: table.last_at(conn, ins, CONSULTATION_ACTIONS))


# What counts as the patient's DMP having been consulted (for "new documents since the last consultation").
CONSULTATION_ACTIONS = ("dmp.search", "dmp.retrieve", "dmp.import")


def append_event(conn: sqlite3.Connection, event: TraceEvent, at: str) -> StoredTrace:
    seq, prev = table.head(conn)
    actor = event.actor
    row = chain.seal(seq=seq + 1, prev_hash=prev, at=at, action=event.action, actor_rpps=actor.rpps,
                     workstation=actor.workstation, client=actor.client, mode=actor.mode, ins=event.ins,
                     object=event.object, outcome=event.outcome, details=dict(event.details))
    table.insert(conn, row)
    return row


def verify_conn(conn: sqlite3.Connection) -> chain.Verification:
    return chain.verify(table.iter_all(conn))


def export_rows(conn: sqlite3.Connection, where: TraceFilter, batch: int = 2000) -> Iterator[StoredTrace]:
    """Every row matching ``where``, in order, in batches (for the CLI's export of a large period)."""
    after = where.after_seq
    while True:
        rows = table.select(conn, TraceFilter(where.since, where.until, where.ins, where.actor, where.action, after),
                            batch)
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
