"""Where routing meets the queue's tables: pick orders to forward, hand them over, store what peers forward,
and mirror the holder's state. Each function runs inside one store transaction (``db.write``/``db.read``).
Delivery states change only through the order state machine (``agent.domain.orders``), applied by the order
repository (``agent.store.orders``: forward, forward_refused, recall, mirror_final); this module keeps routing's
own tables.

Origin side, per order::

    deliveries scheduled / waiting_card, author's CPS at a peer
        --claim--> deliveries ``forwarded``, routing_outbound 'forwarding' (intent on disk before any request)
        --holder acknowledged (stored, or already stored)--> routing_outbound 'forwarded', remote state mirrored
        --holder refused (not_holder: it has not got that CPS any more)--> back to waiting_card

The holder stores a forwarded order once per order id (``routing_inbound``), with the identifiers fixed at its
creation (document and submission-set uniqueIds) and its own cancellation deadline (``send_at``), then the
queue sends it like any local order. When the order reaches the workstation that forwarded it to the sender
(the CPS came back), it is recalled there rather than stored twice.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from typing import Any

from agent.domain.orders import DeliveryState, NewOrder, check_delay
from agent.errors import Conflict, InvalidInput, NotFound
from agent.routing.protocol import Forward, same_rpps
from agent.store import order_display
from agent.store import orders as orders_repo
from agent.store import routing as repo
from agent.store.crypto import ContentCipher

FORWARDABLE = ("scheduled", "waiting_card")
FINAL = ("sent", "cancelled")


def candidates(conn: sqlite3.Connection, local_rpps: str | None) -> list[tuple[str, str]]:
    """Orders not yet leaving whose author's CPS is not in this workstation: (order id, author RPPS)."""
    rows = conn.execute(
        "SELECT o.id, o.author_rpps FROM orders o WHERE o.payload IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.order_seq = o.seq)"
        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.order_seq = o.seq"
        "                 AND d.state NOT IN ('scheduled', 'waiting_card'))"
        " AND NOT EXISTS (SELECT 1 FROM routing_outbound r WHERE r.order_id = o.id AND r.state = 'forwarding')"
        " ORDER BY o.seq LIMIT 500").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows if not same_rpps(str(r[1]), local_rpps)]


def _seq(conn: sqlite3.Connection, order_id: str) -> int:
    row = conn.execute("SELECT seq FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        raise NotFound("Aucun envoi ne porte cet identifiant.", code="order_not_found")
    return int(row[0])


def claim(conn: sqlite3.Connection, order_id: str, holder: str, now: float) -> bool:
    """Mark the order's deliveries ``forwarded`` (the executor no longer touches them) and record the intent."""
    if not orders_repo.forward(conn, _seq(conn, order_id), now):
        return False  # the executor took it meanwhile, or it was cancelled
    conn.execute(
        "INSERT INTO routing_outbound(order_id, holder, state, remote_state, cancel_requested, forwarded_at,"
        " updated_at) VALUES (?, ?, 'forwarding', NULL, 0, ?, ?) ON CONFLICT(order_id) DO UPDATE SET"
        " holder = excluded.holder, state = 'forwarding', remote_state = NULL, updated_at = excluded.updated_at",
        (order_id, holder, now, now))
    repo.withdrawn(conn, order_id, holder)  # forwarded to it again: a copy it kept is the one to send
    return True


def pending_forwards(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in conn.execute(
        "SELECT order_id, holder FROM routing_outbound WHERE state = 'forwarding' ORDER BY forwarded_at")]


def unacknowledged(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """Forwards sent (or being sent) that no holder acknowledged yet: (order id, holder, author RPPS)."""
    return [(str(r[0]), str(r[1]), str(r[2])) for r in conn.execute(
        "SELECT r.order_id, r.holder, o.author_rpps FROM routing_outbound r JOIN orders o ON o.id = r.order_id"
        " WHERE r.state = 'forwarding' ORDER BY r.forwarded_at")]


def recall_unacknowledged(conn: sqlite3.Connection, order_id: str, now: float) -> str | None:
    """Take back a forward its holder never acknowledged (the holder is gone, or the CPS is elsewhere now): the
    order is this workstation's again (scheduled, its deadline kept), and the holder is to be told to drop its
    copy when it answers again, in case the forward arrived and only the acknowledgement was lost. Its deliveries
    are marked uncertain: before anything is sent from here, the service is asked whether it already has the
    document. The holder's name, or None when the forward was acknowledged meanwhile (then it is the holder's)."""
    row = repo.outbound(conn, order_id)
    if row is None or row.state != "forwarding":
        return None
    order = orders_repo.require_order(conn, order_id)
    orders_repo.recall(conn, order.seq, now, max(order.send_at, now))
    conn.execute("UPDATE deliveries SET uncertain = 1 WHERE order_seq = ? AND state = 'scheduled'", (order.seq,))
    conn.execute("UPDATE routing_outbound SET state = 'recalled', updated_at = ? WHERE order_id = ?", (now, order_id))
    repo.add_withdrawal(conn, order_id, row.holder, now)
    return row.holder


def unclaim(conn: sqlite3.Connection, order_id: str, now: float) -> None:
    """The holder refused for good (it stored nothing): the order waits for a card again."""
    orders_repo.forward_refused(conn, _seq(conn, order_id), now)
    conn.execute("DELETE FROM routing_outbound WHERE order_id = ? AND state = 'forwarding'", (order_id,))


def forwarded(conn: sqlite3.Connection, order_id: str, holder: str, remote_state: str, now: float) -> None:
    repo.add_outbound(conn, order_id, holder, remote_state, now)


def export(conn: sqlite3.Connection, cipher: ContentCipher, order_id: str) -> tuple[dict[str, Any], bytes]:
    """The order's metadata and its content, opened only to be sent over the mTLS channel."""
    order = orders_repo.require_order(conn, order_id)
    payload = orders_repo.open_payload(conn, cipher, order_id)
    if payload is None:
        raise NotFound("Le contenu de cet envoi a été détruit.", code="content_destroyed")
    meta = {
        "order_id": order.id, "client_name": order.client_name, "body_hash": order.body_hash, "ins": order.ins,
        "ins_oid": order.ins_oid, "identity_status": order.identity_status, "author_rpps": order.author_rpps,
        "document_unique_id": order.document_unique_id, "submission_set_unique_id": order.submission_set_unique_id,
        "type_code": order.type_code, "created_at": order.created_at, "send_at": order.send_at,
        "destinations": [d.destination for d in order.deliveries],
    }
    return meta, payload


@dataclass(frozen=True, slots=True)
class Accepted:
    status: str  # "stored" or "duplicate"
    state: str


def _new_order(message: Forward, origin: str, now: float, min_delay: int) -> NewOrder:
    meta = message.order
    try:
        destinations = tuple(str(d) for d in meta["destinations"])
        send_at = float(meta["send_at"])
        fields = {k: str(meta[k]) for k in ("body_hash", "ins", "ins_oid", "identity_status",
                                            "document_unique_id", "submission_set_unique_id", "type_code")}
        json.loads(message.payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput("Ordre transmis incomplet.") from exc
    # The origin's deadline, checked as an LGC's delay is: a finite number within the allowed range (1e308 or
    # NaN stored here made the order list answer 500 for good).
    if not math.isfinite(send_at) or check_delay(max(0, math.ceil(send_at - now))) is not None:
        raise InvalidInput.field("send_at", "Échéance d'envoi de l'ordre transmis invalide.")
    return NewOrder(order_id=message.order_id, client_ref=None, client_name=f"poste:{origin}",
                    author_rpps=message.author_rpps, payload=message.payload, destinations=destinations,
                    delay_seconds=max(min_delay, math.ceil(send_at - now)), **fields)


def accept(conn: sqlite3.Connection, cipher: ContentCipher, origin: str, message: Forward,
           local_rpps: str | None, now: float, now_text: str, *, min_delay: int = 0) -> Accepted:
    """Apply a forward once: the nonce is recorded in this transaction (a replay raises ``replayed``). The order
    leaves no sooner than ``min_delay`` seconds from now (this workstation's rule, not the origin's)."""
    repo.record_nonce(conn, message.nonce, origin, now)
    if repo.inbound_origin(conn, message.order_id) is not None:
        # Stored before (its acknowledgement was lost), or cancelled by the origin before it arrived.
        return Accepted("duplicate", _summary(conn, message.order_id) if not unknown_here(conn, message.order_id)
                        else "cancelled")
    existing = orders_repo.load_order(conn, message.order_id)
    if existing is not None:
        back = repo.outbound(conn, message.order_id)
        if back is None or back.holder != origin:
            raise Conflict("Cet envoi existe déjà sur ce poste.", code="duplicate_order")
        # The CPS came back here: the order we forwarded returns; its deadline is unchanged.
        orders_repo.recall(conn, existing.seq, now, max(existing.send_at, now))
        conn.execute("UPDATE routing_outbound SET state = 'recalled', updated_at = ? WHERE order_id = ?",
                     (now, message.order_id))
        return Accepted("stored", _summary(conn, message.order_id))
    if not same_rpps(local_rpps, message.author_rpps):
        raise Conflict("La carte CPS de l'auteur n'est pas sur ce poste.", code="not_holder")
    new = _new_order(message, origin, now, min_delay)
    orders_repo.insert_order(conn, cipher, new, now, now_text)
    order_display.put(conn, cipher, message.order_id, order_display.summary_of(new.payload), now_text)
    repo.add_inbound(conn, message.order_id, origin, message.at.timestamp(), now)
    return Accepted("stored", _summary(conn, message.order_id))


def unknown_here(conn: sqlite3.Connection, order_id: str) -> bool:
    return conn.execute("SELECT 1 FROM orders WHERE id = ?", (order_id,)).fetchone() is None


def settle_cancel(conn: sqlite3.Connection, order_id: str, holder: str, answer: dict[str, Any], now: float) -> None:
    """The holder accepted a cancel: even if its acknowledgement of the forward never came back (the order
    may never have arrived; then the holder keeps a tombstone), the order is the holder's answer here."""
    conn.execute("UPDATE routing_outbound SET state = 'forwarded', updated_at = ? WHERE order_id = ? AND holder = ?",
                 (now, order_id, holder))
    deliveries = answer.get("deliveries") or []
    if not deliveries and answer.get("state") == "cancelled":
        seq = _seq(conn, order_id)
        deliveries = [{"destination": r[0], "state": "cancelled"} for r in conn.execute(
            "SELECT destination FROM deliveries WHERE order_seq = ?", (seq,))]
    mirror(conn, {order_id: {**answer, "deliveries": deliveries}}, now)


def _summary(conn: sqlite3.Connection, order_id: str) -> str:
    return str(states(conn, [order_id]).get(order_id, {}).get("state", "unknown"))


def states(conn: sqlite3.Connection, order_ids: list[str]) -> dict[str, Any]:
    """The effective state of each order here; an order forwarded further reports what its holder said."""
    out: dict[str, Any] = {}
    for order_id in order_ids:
        order = orders_repo.load_order(conn, order_id)
        if order is None:
            continue
        onward = repo.outbound(conn, order_id)
        state = order.state.value
        if state == DeliveryState.FORWARDED.value and onward is not None and onward.remote_state:
            state = onward.remote_state
        out[order_id] = {"state": state, "deliveries": [
            {"destination": d.destination, "state": d.state.value, "sent_at": d.sent_at,
             "entry_uuid": d.entry_uuid} for d in order.deliveries]}
    return out


def mirror(conn: sqlite3.Connection, remote: dict[str, Any], now: float) -> list[str]:
    """Take the holder's states: remote_state for display, and sent/cancelled deliveries become final here
    too (so the order's history says what happened, and nothing here would ever send it)."""
    changed: list[str] = []
    for order_id, info in remote.items():
        if not isinstance(info, dict):
            continue
        row = repo.outbound(conn, order_id)
        if row is None or row.state != "forwarded":
            continue
        touched = repo.set_remote_state(conn, order_id, str(info.get("state", "")), now)
        seq = _seq(conn, order_id)
        for d in info.get("deliveries") or []:
            if not isinstance(d, dict) or d.get("state") not in FINAL:
                continue
            sent_at = d.get("sent_at") if isinstance(d.get("sent_at"), int | float) else None
            entry = d.get("entry_uuid") if isinstance(d.get("entry_uuid"), str) else None
            changed_here = orders_repo.mirror_final(conn, seq, str(d.get("destination")), str(d["state"]), now,
                                                    sent_at, entry)
            touched = touched or changed_here
        if touched:
            changed.append(order_id)
    return changed
