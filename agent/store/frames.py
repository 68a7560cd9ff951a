"""The frames journal's table: raw requests and answers exchanged with the national services, sealed.

Each exchange is one row: when, which service, which transaction, the CNDA test code set at that time, the outcome,
and the request and the answer each sealed under its own data key (``ContentCipher``), as documents are. Erasing a
row destroys its keys first: the ciphertext left in the WAL or a backup can no longer be opened. The on/off switch
and the current test code live in ``settings`` (written by ``relais frames``, read by the running agent).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from agent.store.crypto import ContentCipher, SealedBlob
from agent.store.migrations import register

register("frames", [
    """
    CREATE TABLE frames (
        seq            INTEGER PRIMARY KEY,
        id             TEXT NOT NULL UNIQUE,
        at             REAL NOT NULL,
        at_text        TEXT NOT NULL,
        service        TEXT NOT NULL,
        action         TEXT NOT NULL,
        transaction_name TEXT NOT NULL,
        test_code      TEXT NOT NULL DEFAULT '',
        outcome        TEXT NOT NULL,
        request_key    TEXT,
        request_blob   BLOB,
        request_type   TEXT NOT NULL DEFAULT '',
        response_key   TEXT,
        response_blob  BLOB,
        response_type  TEXT NOT NULL DEFAULT '',
        answered_at    REAL
    );
    CREATE INDEX frames_at ON frames(at);
    CREATE INDEX frames_test ON frames(test_code, at);
    """,
])

ENABLED_KEY = "frames.enabled"
TEST_CODE_KEY = "frames.test_code"
NO_ANSWER = "sans réponse"


@dataclass(frozen=True, slots=True)
class FrameRow:
    seq: int
    id: str
    at: float
    at_text: str
    service: str
    action: str
    transaction: str
    test_code: str
    outcome: str
    request: bytes | None
    request_type: str
    response: bytes | None
    response_type: str


def insert_request(conn: sqlite3.Connection, cipher: ContentCipher, *, frame_id: str, at: float, at_text: str,
                   service: str, action: str, transaction: str, test_code: str, request: bytes,
                   content_type: str) -> None:
    sealed = cipher.seal(conn, request, at_text)
    conn.execute(
        "INSERT INTO frames(id, at, at_text, service, action, transaction_name, test_code, outcome, request_key,"
        " request_blob, request_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (frame_id, at, at_text, service, action, transaction, test_code, NO_ANSWER, sealed.key_id, sealed.blob,
         content_type))


def record_answer(conn: sqlite3.Connection, cipher: ContentCipher, *, frame_id: str, at: float, at_text: str,
                  response: bytes, content_type: str, outcome: str) -> bool:
    """Seal the answer beside its request; False when the request's row is gone (erased meanwhile)."""
    if conn.execute("SELECT 1 FROM frames WHERE id = ?", (frame_id,)).fetchone() is None:
        return False
    sealed = cipher.seal(conn, response, at_text)
    conn.execute("UPDATE frames SET response_key = ?, response_blob = ?, response_type = ?, outcome = ?,"
                 " answered_at = ? WHERE id = ?", (sealed.key_id, sealed.blob, content_type, outcome, at, frame_id))
    return True


def erase_before(conn: sqlite3.Connection, cutoff: float) -> int:
    """Destroy every frame recorded before ``cutoff`` (its keys first, then the row)."""
    rows = conn.execute("SELECT seq, request_key, response_key FROM frames WHERE at < ?", (cutoff,)).fetchall()
    for seq, request_key, response_key in rows:
        for key_id in (request_key, response_key):
            if key_id:
                ContentCipher.destroy(conn, key_id)
        conn.execute("DELETE FROM frames WHERE seq = ?", (seq,))
    return len(rows)


def count(conn: sqlite3.Connection) -> tuple[int, str | None]:
    """How many frames are kept, and when the oldest was recorded."""
    total, oldest = conn.execute("SELECT COUNT(*), MIN(at_text) FROM frames").fetchone()
    return int(total), oldest


def iter_frames(conn: sqlite3.Connection, cipher: ContentCipher, *, since: float | None = None,
                until: float | None = None, test_code: str | None = None) -> Iterator[FrameRow]:
    """Frames in time order, opened."""
    sql = ("SELECT seq, id, at, at_text, service, action, transaction_name, test_code, outcome, request_key,"
           " request_blob, request_type, response_key, response_blob, response_type FROM frames WHERE 1 = 1")
    params: list[object] = []
    if since is not None:
        sql += " AND at >= ?"
        params.append(since)
    if until is not None:
        sql += " AND at < ?"
        params.append(until)
    if test_code is not None:
        sql += " AND test_code = ?"
        params.append(test_code)
    for row in conn.execute(sql + " ORDER BY at, seq", params).fetchall():
        request = cipher.open(conn, SealedBlob(row[9], bytes(row[10]))) if row[9] else None
        response = cipher.open(conn, SealedBlob(row[12], bytes(row[13]))) if row[12] else None
        yield FrameRow(seq=row[0], id=row[1], at=row[2], at_text=row[3], service=row[4], action=row[5],
                       transaction=row[6], test_code=row[7], outcome=row[8], request=request, request_type=row[11],
                       response=response, response_type=row[14])


def read_settings(conn: sqlite3.Connection) -> tuple[bool | None, str | None]:
    """The stored switch (None: never set, the configuration decides) and test code (None: likewise)."""
    values = dict(conn.execute("SELECT key, value FROM settings WHERE key IN (?, ?)",
                               (ENABLED_KEY, TEST_CODE_KEY)).fetchall())
    enabled = values.get(ENABLED_KEY)
    return (None if enabled is None else enabled == "1"), values.get(TEST_CODE_KEY)


def write_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                 (key, value))
