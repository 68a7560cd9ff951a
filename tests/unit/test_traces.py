"""The trace chain over a real SQLite file: append-only, verify names the first broken row, export formats."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest

from agent.audit import chain
from agent.audit.recorder import append_event, export_rows, mac_key, verify_conn
from agent.domain.policy import Actor, TraceEvent
from agent.store import traces as table
from agent.store.crypto import ContentCipher
from agent.store.db import open_sync
from agent.store.traces import TraceFilter

DOCTOR = Actor(rpps="10003456789", workstation="poste-1", client="lgc")
INS_A = "279035121518989"
INS_B = "180012A00100112"


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    conn = open_sync(tmp_path / "relais.db")
    yield conn
    conn.close()


def write(conn: sqlite3.Connection, count: int, *, ins: str = INS_A, actor: Actor = DOCTOR,
          day: int = 5) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for i in range(count):
        append_event(conn, TraceEvent("dmp.search", actor, ins=ins, object=f"doc-{i}", details={"n": i}),
                     f"2026-01-{day:02d}T09:00:{i:02d}Z")
    conn.execute("COMMIT")


def tamper(conn: sqlite3.Connection, sql: str, *params: object) -> None:
    """What someone with the database file could do: drop the guard, then edit."""
    conn.execute("DROP TRIGGER traces_no_update")
    conn.execute("DROP TRIGGER traces_no_delete")
    conn.execute(sql, params)


def test_an_intact_chain_verifies(conn: sqlite3.Connection):
    write(conn, 5)
    result = verify_conn(conn)
    assert result.ok and result.count == 5 and result.head_seq == 5
    assert result.head_hash == table.head(conn)[1]


def test_an_empty_chain_verifies(conn: sqlite3.Connection):
    result = verify_conn(conn)
    assert result.ok and result.count == 0 and result.head_hash == table.GENESIS


def test_the_store_refuses_to_update_or_delete_a_trace(conn: sqlite3.Connection):
    write(conn, 1)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE traces SET actor_rpps = '10000000000' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM traces WHERE seq = 1")


@pytest.mark.parametrize("column, value", [
    ("actor_rpps", "10000000000"), ("ins", INS_B), ("at", "2026-01-01T00:00:00Z"), ("details", '{"n":99}'),
    ("outcome", "refused"),
])
def test_one_edited_row_fails_verification_at_that_row(conn: sqlite3.Connection, column: str, value: str):
    write(conn, 6)
    tamper(conn, f"UPDATE traces SET {column} = ? WHERE seq = 4", value)  # noqa: S608 - test columns
    result = verify_conn(conn)
    assert result.ok is False
    assert result.broken_seq == 4
    assert "n° 4" in result.problem
    assert result.head_seq == 3  # the last row that still holds


def test_an_edited_row_with_its_hash_recomputed_breaks_at_the_next_row(conn: sqlite3.Connection):
    write(conn, 6)
    row = next(r for r in table.iter_all(conn) if r.seq == 3)
    forged = chain.seal(seq=3, prev_hash=row.prev_hash, at=row.at, action=row.action, actor_rpps="10000000000",
                        workstation=row.workstation, client=row.client, mode=row.mode, ins=row.ins,
                        object=row.object, outcome=row.outcome, details={"n": 2})
    tamper(conn, "UPDATE traces SET actor_rpps = ?, hash = ? WHERE seq = 3", forged.actor_rpps, forged.hash)
    assert verify_conn(conn).broken_seq == 4


def test_a_deleted_row_breaks_the_chain_at_the_row_after_it(conn: sqlite3.Connection):
    write(conn, 6)
    tamper(conn, "DELETE FROM traces WHERE seq = 2")
    result = verify_conn(conn)
    assert result.broken_seq == 3
    assert "supprimée" in result.problem


def test_the_export_filters_by_period_patient_and_actor(conn: sqlite3.Connection):
    write(conn, 3, day=5)
    write(conn, 2, ins=INS_B, day=6)
    write(conn, 1, actor=Actor(rpps="10009999999", workstation="poste-2"), day=7)
    assert len(list(export_rows(conn, TraceFilter(ins=INS_B)))) == 2
    assert len(list(export_rows(conn, TraceFilter(actor="10009999999")))) == 1
    period = list(export_rows(conn, TraceFilter(since="2026-01-06T00:00:00Z", until="2026-01-07T00:00:00Z")))
    assert [r.ins for r in period] == [INS_B, INS_B]
    assert len(list(export_rows(conn, TraceFilter(), batch=2))) == 6  # batches join up


def test_json_and_csv_rows_carry_the_actor_the_patient_and_the_chain(conn: sqlite3.Connection):
    write(conn, 1)
    conn.execute("BEGIN IMMEDIATE")
    append_event(conn, TraceEvent("order.cancelled", DOCTOR, object="=HYPERLINK(\"http://x\")"),
                 "2026-01-05T10:00:00Z")
    conn.execute("COMMIT")
    rows = list(table.iter_all(conn))
    item = chain.as_json(rows[0])
    assert item["actor"] == {"rpps": "10003456789", "workstation": "poste-1", "client": "lgc", "mode": "normal"}
    assert item["ins"] == INS_A and item["details"] == {"n": 0} and item["hash"] == rows[0].hash
    text = chain.csv_header() + "".join(chain.csv_row(r) for r in rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[0]["actor_rpps"] == "10003456789" and parsed[0]["hash"] == rows[0].hash
    # A value that a spreadsheet would run as a formula is neutralised.
    assert parsed[1]["object"].startswith("'=")


def keyed_write(conn: sqlite3.Connection, cipher: ContentCipher, count: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    key = mac_key(conn, cipher, create_at="2026-01-05T09:00:00Z")
    for i in range(count):
        append_event(conn, TraceEvent("dmp.retrieve", DOCTOR, ins=INS_A, object=f"doc-{i}"),
                     f"2026-01-05T09:00:{i:02d}Z", key)
    conn.execute("COMMIT")


def test_a_chain_rewritten_from_an_edited_row_is_caught_by_its_macs(conn: sqlite3.Connection):
    cipher = ContentCipher(bytes(range(32)))
    keyed_write(conn, cipher, 5)
    assert verify_conn(conn, cipher).ok and verify_conn(conn, cipher).authenticated
    # Rewrite row 3 and recompute every hash after it, as someone with the file but not the master key could.
    rows = list(table.iter_all(conn))
    prev = rows[1].hash
    tamper(conn, "SELECT 1")
    for row in rows[2:]:
        forged = chain.seal(seq=row.seq, prev_hash=prev, at=row.at, action=row.action,
                            actor_rpps="10000000000" if row.seq == 3 else row.actor_rpps, workstation=row.workstation,
                            client=row.client, mode=row.mode, ins=row.ins, object=row.object, outcome=row.outcome,
                            details={})
        conn.execute("UPDATE traces SET actor_rpps = ?, hash = ?, prev_hash = ? WHERE seq = ?",
                     (forged.actor_rpps, forged.hash, forged.prev_hash, row.seq))
        prev = forged.hash
    assert verify_conn(conn).ok is True  # the hashes alone hold...
    result = verify_conn(conn, cipher)  # ...the MACs do not
    assert result.ok is False and result.broken_seq == 3


def test_another_master_key_cannot_authenticate_the_chain(conn: sqlite3.Connection):
    keyed_write(conn, ContentCipher(bytes(range(32))), 2)
    result = verify_conn(conn, ContentCipher(bytes(32)))
    assert result.ok is False and "clé" in result.problem
