"""What the doctor reads of an order in the queue (the document's title, the patient's name and birth date, the
author, the visibility), sealed at rest like the document itself and written in the order's own transaction.

Kept apart from the order's payload so that a list of orders opens a few hundred bytes per row, not each
document. Never logged; the API answers it only to authenticated callers (the LGC's token, the dashboard).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent.errors import StoreError
from agent.store.crypto import ContentCipher, SealedBlob
from agent.store.migrations import register

register("order_display", [
    """
    CREATE TABLE order_display (
        order_id  TEXT PRIMARY KEY,
        key_id    TEXT NOT NULL,
        blob      BLOB NOT NULL
    );
    """,
])


def summary_of(payload: bytes) -> dict[str, Any]:
    """The readable summary of a new order's payload (patient, author, visibility, the CDA header read once)."""
    data = json.loads(payload)
    header = data.get("cda_header") or {}
    patient = data.get("patient") or {}
    given = patient.get("given_names") if isinstance(patient.get("given_names"), list) else []
    family = str(header.get("patient_family") or patient.get("used_name") or patient.get("birth_name") or "")
    first = str(header.get("patient_given") or (given[0] if given else ""))
    birth = str(header.get("patient_birth") or "")
    birth_date = (f"{birth[:4]}-{birth[4:6]}-{birth[6:8]}" if len(birth) >= 8 and birth[:8].isdigit()
                  else str(patient.get("birth_date") or "") or None)
    author = " ".join(p for p in (str(header.get("author_given") or ""), str(header.get("author_family") or ""))
                      if p)
    return {"title": str(header.get("title") or "") or None,
            "patient_name": " ".join(p for p in (family.upper(), first) if p) or None,
            "patient_birth_date": birth_date,
            "author_name": author or None,
            "visibility": data.get("visibility") or {},
            **({"replaces": data["replaces"]} if data.get("replaces") else {})}  # a DMP replacement only


def put(conn: sqlite3.Connection, cipher: ContentCipher, order_id: str, summary: dict[str, Any],
        created_at: str) -> None:
    sealed = cipher.seal(conn, json.dumps(summary, ensure_ascii=False).encode(), created_at)
    conn.execute("INSERT OR IGNORE INTO order_display(order_id, key_id, blob) VALUES (?, ?, ?)",
                 (order_id, sealed.key_id, sealed.blob))


def read_many(conn: sqlite3.Connection, cipher: ContentCipher, order_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The summaries of these orders (an order stored before this table, or whose key was destroyed, has none)."""
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(order_ids), 500):
        chunk = order_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(f"SELECT order_id, key_id, blob FROM order_display WHERE order_id IN ({marks})",  # noqa: S608
                            chunk).fetchall()
        for order_id, key_id, blob in rows:
            try:
                out[order_id] = json.loads(cipher.open(conn, SealedBlob(key_id, bytes(blob))))
            except (StoreError, ValueError):  # destroyed or unreadable: the row shows the INS instead
                continue
    return out


def erase(conn: sqlite3.Connection, order_seq: int) -> None:
    """The summary goes with the document's content when its retention ends (its key destroyed first)."""
    row = conn.execute("SELECT d.key_id FROM order_display d JOIN orders o ON o.id = d.order_id WHERE o.seq = ?",
                       (order_seq,)).fetchone()
    if row is None:
        return
    ContentCipher.destroy(conn, row[0])
    conn.execute("DELETE FROM order_display WHERE key_id = ?", (row[0],))
