"""Consent history and CONF.21 acknowledgements in SQLite (tables of the "consent" migrations).

Both are append-only (triggers refuse UPDATE and DELETE): the current state is the latest row, the rows before
it are the history a practice must be able to show. Functions take a connection: call them inside
``db.write`` / ``db.read``.
"""

from __future__ import annotations

import sqlite3

from agent.domain.consent import ConsentRecord, Consultation, Feeding

_COLUMNS = "ins, episode, informed, dmp_consultation, dmp_feeding, recorded_by, workstation, client, recorded_at"


def _record(row: sqlite3.Row) -> ConsentRecord:
    return ConsentRecord(
        ins=row["ins"], episode=row["episode"], informed=bool(row["informed"]),
        dmp_consultation=Consultation(row["dmp_consultation"]), dmp_feeding=Feeding(row["dmp_feeding"]),
        recorded_by=row["recorded_by"], workstation=row["workstation"], client=row["client"],
        recorded_at=row["recorded_at"],
    )


def add_record(conn: sqlite3.Connection, record: ConsentRecord) -> None:
    conn.execute(
        f"INSERT INTO consent_records({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant
        (record.ins, record.episode, int(record.informed), record.dmp_consultation.value, record.dmp_feeding.value,
         record.recorded_by, record.workstation, record.client, record.recorded_at),
    )


def current(conn: sqlite3.Connection, ins: str) -> ConsentRecord | None:
    """The patient's latest record, whatever the episode: the rights follow the last word of the patient."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM consent_records WHERE ins = ? ORDER BY id DESC LIMIT 1", (ins,)  # noqa: S608
    ).fetchone()
    return _record(row) if row else None


def history(conn: sqlite3.Connection, ins: str, limit: int = 100) -> list[ConsentRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM consent_records WHERE ins = ? ORDER BY id DESC LIMIT ?", (ins, limit)  # noqa: S608
    ).fetchall()
    return [_record(row) for row in rows]


def add_ack(conn: sqlite3.Connection, rpps: str, notice_id: str, version: int, at: str, workstation: str) -> None:
    conn.execute(
        "INSERT INTO notice_acks(rpps, notice_id, version, acknowledged_at, workstation) VALUES (?, ?, ?, ?, ?)",
        (rpps, notice_id, version, at, workstation),
    )


def last_ack(conn: sqlite3.Connection, rpps: str, notice_id: str, version: int) -> str | None:
    row = conn.execute(
        "SELECT acknowledged_at FROM notice_acks WHERE rpps = ? AND notice_id = ? AND version = ? "
        "ORDER BY id DESC LIMIT 1",
        (rpps, notice_id, version),
    ).fetchone()
    return str(row[0]) if row else None
