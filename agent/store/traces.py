"""The traces table (the "traces" migrations): rows of the hash chain, written once, read in order.

This module only moves rows in and out of SQLite; the chain (what is hashed, how it is verified) lives in
``agent.audit.chain``. Triggers refuse UPDATE and DELETE, so an edit needs someone to drop them first, and the
chain then shows where.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

GENESIS = "0" * 64

COLUMNS = ("seq", "at", "action", "actor_rpps", "workstation", "client", "mode", "ins", "object", "outcome",
           "details", "prev_hash", "hash", "mac")
MAC_KEY_SETTING = "traces.mac_key"


@dataclass(frozen=True, slots=True)
class StoredTrace:
    seq: int
    at: str
    action: str
    actor_rpps: str | None
    workstation: str
    client: str
    mode: str
    ins: str | None
    object: str | None
    outcome: str
    details: str  # canonical JSON
    prev_hash: str
    hash: str
    mac: str = ""  # HMAC-SHA256 of ``hash`` under the chain's key (agent.audit.chain)


@dataclass(frozen=True, slots=True)
class TraceFilter:
    since: str | None = None  # RFC 3339, inclusive
    until: str | None = None  # RFC 3339, exclusive
    ins: str | None = None
    actor: str | None = None
    action: str | None = None
    after_seq: int = 0


def get_setting(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def put_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO settings(key, value) VALUES (?, ?)", (key, value))


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(seq, hash) of the last row, or (0, GENESIS) for an empty chain."""
    row = conn.execute("SELECT seq, hash FROM traces ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def insert(conn: sqlite3.Connection, trace: StoredTrace) -> None:
    conn.execute(
        f"INSERT INTO traces({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",  # noqa: S608
        tuple(getattr(trace, name) for name in COLUMNS),
    )


def _from_row(row: sqlite3.Row | tuple[object, ...]) -> StoredTrace:
    return StoredTrace(*row)  # type: ignore[arg-type]


def iter_all(conn: sqlite3.Connection, batch: int = 2000) -> Iterator[StoredTrace]:
    """Every row in chain order, read in batches so a large table never sits in memory."""
    last = -1
    while True:
        rows = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM traces WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
            (last, batch),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield _from_row(tuple(row))
        last = int(rows[-1][0])


def select(conn: sqlite3.Connection, where: TraceFilter, limit: int) -> list[StoredTrace]:
    clauses = ["seq > ?"]
    params: list[object] = [where.after_seq]
    if where.since:
        clauses.append("at >= ?")
        params.append(where.since)
    if where.until:
        clauses.append("at < ?")
        params.append(where.until)
    if where.ins:
        clauses.append("ins = ?")
        params.append(where.ins)
    if where.actor:
        clauses.append("actor_rpps = ?")
        params.append(where.actor)
    if where.action:
        clauses.append("action = ?")
        params.append(where.action)
    params.append(limit)
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM traces WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?",  # noqa: S608
        params,
    ).fetchall()
    return [_from_row(tuple(row)) for row in rows]


def last_at(conn: sqlite3.Connection, ins: str, actions: tuple[str, ...], before_seq: int | None = None) -> str | None:
    """When the latest successful trace of one of ``actions`` for this patient was written."""
    marks = ", ".join("?" * len(actions))
    sql = f"SELECT at FROM traces WHERE ins = ? AND outcome = 'ok' AND action IN ({marks})"  # noqa: S608
    params: list[object] = [ins, *actions]
    if before_seq is not None:
        sql += " AND seq < ?"
        params.append(before_seq)
    row = conn.execute(sql + " ORDER BY seq DESC LIMIT 1", params).fetchone()
    return str(row[0]) if row else None
