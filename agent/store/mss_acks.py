"""MSSanté acknowledgements at rest: which DSN/MDN answered which Message-ID, and the mailbox reading position.

The acknowledgements are joined to deliveries by Message-ID (the delivery's ``entry_uuid`` once sent), so a
report read before its delivery was recorded (a crash between DATA and the record) still finds it later.
No recipient address is kept: a patient's address carries the INS.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from agent.domain.orders import DeliveryState, Event, next_state


@dataclass(frozen=True, slots=True)
class AckRow:
    message_id: str
    kind: str  # dsn, mdn
    outcome: str  # delivered, delayed, error, read
    status: str
    reported_at: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "outcome": self.outcome, "status": self.status, "at": self.reported_at}


def record_ack(conn: sqlite3.Connection, row: AckRow, ack_key: str, now: float) -> bool:
    """Store one acknowledgement once (``ack_key`` makes reading the same report twice harmless)."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO mss_acks(message_id, kind, outcome, status, reported_at, received_at, ack_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (row.message_id, row.kind, row.outcome, row.status[:200], row.reported_at, now, ack_key))
    return cur.rowcount == 1


def acks_for(conn: sqlite3.Connection, message_ids: Iterable[str]) -> dict[str, list[AckRow]]:
    ids = [m for m in message_ids if m]
    out: dict[str, list[AckRow]] = {m: [] for m in ids}
    if not ids:
        return out
    marks = ",".join("?" * len(ids))
    for r in conn.execute(f"SELECT message_id, kind, outcome, status, reported_at FROM mss_acks "  # noqa: S608
                          f"WHERE message_id IN ({marks}) ORDER BY id", ids):
        out[r[0]].append(AckRow(r[0], r[1], r[2], r[3], r[4]))
    return out


def orders_for_message_ids(conn: sqlite3.Connection, message_ids: Iterable[str]) -> list[str]:
    """The order ids whose MSS deliveries carry these Message-IDs (to publish ``order.updated``)."""
    ids = [m for m in message_ids if m]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT DISTINCT o.id FROM deliveries d JOIN orders o ON o.seq = d.order_seq "  # noqa: S608
                        f"WHERE d.kind = 'mss' AND d.entry_uuid IN ({marks})", ids)
    return [r[0] for r in rows]


def mark_bounced(conn: sqlite3.Connection, message_id: str, reason: str, now: float) -> bool:
    """A failed DSN: the sent MSS delivery carrying ``message_id`` becomes failed with the operator's reason."""
    rows = conn.execute("SELECT id, state FROM deliveries WHERE kind = 'mss' AND entry_uuid = ?",
                        (message_id,)).fetchall()
    changed = False
    for delivery_id, state in rows:
        if state != DeliveryState.SENT.value:
            continue
        target = next_state(DeliveryState.SENT, Event.BOUNCED)
        conn.execute("UPDATE deliveries SET state = ?, updated_at = ?, last_error_code = 'mss_bounced', "
                     "last_error = ?, last_error_at = ? WHERE id = ?", (target.value, now, reason, now, delivery_id))
        changed = True
    return changed


def mailbox_position(conn: sqlite3.Connection, mailbox: str) -> tuple[int, int]:
    row = conn.execute("SELECT uidvalidity, last_uid FROM mss_mailbox WHERE mailbox = ?", (mailbox,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def set_mailbox_position(conn: sqlite3.Connection, mailbox: str, uidvalidity: int, last_uid: int) -> None:
    conn.execute("INSERT INTO mss_mailbox(mailbox, uidvalidity, last_uid) VALUES (?, ?, ?) "
                 "ON CONFLICT(mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid",
                 (mailbox, uidvalidity, last_uid))


def summary(acks: list[AckRow]) -> str | None:
    """One word for a delivery: read > error > delivered > delayed (the most informative report wins)."""
    outcomes = {a.outcome for a in acks}
    for word in ("read", "error", "delivered", "delayed"):
        if word in outcomes:
            return word
    return None
