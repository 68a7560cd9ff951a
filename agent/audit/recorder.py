"""The trace log: every DMP access, INSi call, send, cancellation, deletion, masking and consent change.

``TraceLog.record`` appends one row to the hash chain inside a store write: the previous link is read in the
same transaction, so concurrent writers (grouped by the store's writer) still form one chain. The call returns
once the row is on disk. Rows hold the actor's RPPS, the workstation, the client, the patient's INS, the action,
the object and the time; never a patient name or document content.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from agent.audit import chain
from agent.clock import Clock, rfc3339
from agent.domain.policy import TraceEvent
from agent.errors import StoreError
from agent.logs import get_logger
from agent.store import traces as table
from agent.store.crypto import ContentCipher, SealedBlob
from agent.store.db import Database
from agent.store.traces import MAC_KEY_SETTING, StoredTrace, TraceFilter

log = get_logger("audit")

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class Page:
    items: list[StoredTrace]
    next_cursor: str | None


class TraceLog:
    def __init__(self, db: Database, clock: Clock, cipher: ContentCipher | None = None) -> None:
        self._db = db
        self._clock = clock
        self._cipher = cipher
        self._key: bytes | None = None  # the chain's MAC key, once it is known to be committed

    async def record(self, event: TraceEvent) -> None:
        at = rfc3339(self._clock.now())
        cached = self._key

        def append(conn: sqlite3.Connection) -> tuple[StoredTrace, bytes | None]:
            key = cached
            if key is None and self._cipher is not None:
                key = mac_key(conn, self._cipher, create_at=at)
            return append_event(conn, event, at, key), key

        row, key = await self._db.write(append)
        self._key = key  # only now: a key created in a transaction that failed is never used again
        log.debug("trace %d %s %s", row.seq, row.action, row.outcome)

    def record_in(self, conn: sqlite3.Connection, event: TraceEvent) -> None:
        """Append inside the caller's transaction: the trace commits with the state it records, or neither."""
        at = rfc3339(self._clock.now())
        key = self._key
        if key is None and self._cipher is not None:
            key = mac_key(conn, self._cipher, create_at=at)  # cached by the next record(), once surely committed
        row = append_event(conn, event, at, key)
        log.debug("trace %d %s %s", row.seq, row.action, row.outcome)

    async def page(self, where: TraceFilter, limit: int) -> Page:
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self._db.read(lambda conn: table.select(conn, where, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, str(rows[-1].seq) if more and rows else None)

    async def verify(self) -> chain.Verification:
        cipher = self._cipher
        return await self._db.read(lambda conn: verify_conn(conn, cipher))

    async def last_consultation(self, ins: str) -> str | None:
        return await self._db.read(lambda conn: table.last_at(conn, ins, CONSULTATION_ACTIONS))


# What counts as the patient's DMP having been consulted (for "new documents since the last consultation").
CONSULTATION_ACTIONS = ("dmp.search", "dmp.retrieve", "dmp.import")


def append_event(conn: sqlite3.Connection, event: TraceEvent, at: str, key: bytes | None = None) -> StoredTrace:
    seq, prev = table.head(conn)
    actor = event.actor
    row = chain.seal(seq=seq + 1, prev_hash=prev, at=at, action=event.action, actor_rpps=actor.rpps,
                     workstation=actor.workstation, client=actor.client, mode=actor.mode, ins=event.ins,
                     object=event.object, outcome=event.outcome, details=dict(event.details), key=key)
    table.insert(conn, row)
    return row


def mac_key(conn: sqlite3.Connection, cipher: ContentCipher, *, create_at: str | None) -> bytes | None:
    """The chain's MAC key, sealed under the master key in ``settings``; made at the first trace."""
    raw = table.get_setting(conn, MAC_KEY_SETTING)
    if raw is None:
        if create_at is None:
            return None
        key = secrets.token_bytes(32)
        sealed = cipher.seal(conn, key, create_at)
        table.put_setting(conn, MAC_KEY_SETTING,
                          json.dumps({"key_id": sealed.key_id, "blob": base64.b64encode(sealed.blob).decode()}))
        return key
    stored = json.loads(raw)
    return cipher.open(conn, SealedBlob(stored["key_id"], base64.b64decode(stored["blob"])))


def verify_conn(conn: sqlite3.Connection, cipher: ContentCipher | None = None) -> chain.Verification:
    """Verify the whole chain; with the store's cipher the MACs are checked too."""
    try:
        key = mac_key(conn, cipher, create_at=None) if cipher is not None else None
    except StoreError:
        return chain.Verification(False, 0, 0, table.GENESIS, None,
                                  "La clé d'authentification des traces est illisible : clé maîtresse différente "
                                  "(autre utilisateur, autre poste) ou clé altérée dans la base.", True)
    if cipher is not None and key is None and table.head(conn)[0] > 0:
        return chain.Verification(False, 0, 0, table.GENESIS, 1,
                                  "La clé d'authentification des traces a disparu de la base.", True)
    return chain.verify(table.iter_all(conn), key)


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
