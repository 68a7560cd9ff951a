"""The send-order repository: orders, their deliveries and attempts, in SQLite.

Every function takes a connection and runs inside the caller's transaction (``Database.write`` for changes,
``Database.read`` for queries), so a state change and its attempt record commit together or not at all.
Times are stored as Unix seconds (REAL) so comparisons are numeric; the API renders them as RFC 3339.

The document travels sealed (``ContentCipher``): patient traits, CDA and visibility are never in clear in the
database; the metadata the queue needs without opening it (ids, INS for reconciliation, states) is.
This module never logs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.domain.orders import (
    CANCELLABLE,
    NOT_RETRYABLE,
    SUMMARY_PRIORITY,
    DeliveryState,
    Event,
    NewOrder,
    allowed,
    cancel_refusal,
    destination_kind,
    next_state,
    refusal,
    summary_state,
)
from agent.errors import Conflict, NotFound, StoreError
from agent.store import order_display
from agent.store.crypto import ContentCipher, SealedBlob

S = DeliveryState


def ts(when: datetime) -> float:
    return when.timestamp()


def from_ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class AttemptView:
    number: int
    started_at: float
    ended_at: float | None
    outcome: str | None
    error_code: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    id: int
    destination: str
    kind: str
    state: DeliveryState
    due_at: float | None
    attempts: int
    round_attempts: int
    uncertain: bool
    last_error_code: str | None
    last_error: str | None
    last_error_at: float | None
    sent_at: float | None
    entry_uuid: str | None
    reconciled: bool
    attempt_log: tuple[AttemptView, ...] = ()
    # PRE_ERR: the service's own code and text of the last refusal (the DMP's), None when it gave none.
    last_remote_code: str | None = None
    last_remote_text: str | None = None


@dataclass(frozen=True, slots=True)
class OrderView:
    seq: int
    id: str
    client_ref: str | None
    client_name: str
    body_hash: str
    ins: str
    ins_oid: str
    identity_status: str
    author_rpps: str
    document_unique_id: str
    submission_set_unique_id: str
    type_code: str
    created_at: float
    send_at: float
    content_erased_at: float | None
    deliveries: tuple[DeliveryView, ...] = field(default_factory=tuple)

    @property
    def state(self) -> DeliveryState:
        return summary_state(d.state for d in self.deliveries)


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery the executor took to send: already ``sending`` on disk, with the opened payload."""

    delivery_id: int
    order_id: str
    destination: str
    kind: str
    attempt: int
    round_attempts: int
    needs_reconcile: bool  # an earlier attempt may have reached the service: ask before sending again
    ins: str
    ins_oid: str
    author_rpps: str
    document_unique_id: str
    submission_set_unique_id: str
    payload: bytes


# --- creation and reading ---------------------------------------------------------------------------------

def find_by_client_ref(conn: sqlite3.Connection, client_ref: str) -> OrderView | None:
    row = conn.execute("SELECT id FROM orders WHERE client_ref = ?", (client_ref,)).fetchone()
    return load_order(conn, row[0]) if row else None


def insert_order(conn: sqlite3.Connection, cipher: ContentCipher, new: NewOrder, now: float,
                 now_text: str) -> tuple[OrderView, bool]:
    """Store a new order, or return the existing one for the same ``client_ref`` (created=False).

    Runs in the writer's transaction, so two identical requests racing each other cannot both insert.
    """
    if new.client_ref is not None:
        existing = find_by_client_ref(conn, new.client_ref)
        if existing is not None:
            if existing.body_hash != new.body_hash:
                raise Conflict("Cette référence client (client_ref) désigne déjà un autre envoi, différent.",
                               code="client_ref_conflict")
            return existing, False
    if "dmp" in new.destinations:
        previous = conn.execute(
            "SELECT o.id FROM orders o JOIN deliveries d ON d.order_seq = o.seq "
            "WHERE o.document_unique_id = ? AND d.destination = 'dmp' AND d.state != 'cancelled' LIMIT 1",
            (new.document_unique_id,),
        ).fetchone()
        if previous is not None:
            raise Conflict("Ce document (même identifiant unique) fait déjà l'objet d'un envoi au DMP.",
                           code="document_already_ordered", order_id=previous[0])
    sealed = cipher.seal(conn, new.payload, now_text)
    send_at = now + new.delay_seconds
    cursor = conn.execute(
        "INSERT INTO orders(id, client_ref, client_name, body_hash, ins, ins_oid, identity_status, author_rpps,"
        " document_unique_id, submission_set_unique_id, type_code, key_id, payload, created_at, send_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (new.order_id, new.client_ref, new.client_name, new.body_hash, new.ins, new.ins_oid, new.identity_status,
         new.author_rpps, new.document_unique_id, new.submission_set_unique_id, new.type_code, sealed.key_id,
         sealed.blob, now, send_at),
    )
    seq = cursor.lastrowid
    initial = S.READY if new.delay_seconds == 0 else S.SCHEDULED
    conn.executemany(
        "INSERT INTO deliveries(order_seq, destination, kind, state, due_at, updated_at) VALUES (?,?,?,?,?,?)",
        [(seq, dest, destination_kind(dest), initial.value, send_at, now) for dest in new.destinations],
    )
    order = load_order(conn, new.order_id)
    assert order is not None
    return order, True


_DELIVERY_COLUMNS = ("id, destination, kind, state, due_at, attempts, round_attempts, uncertain, last_error_code,"
                     " last_error, last_error_at, sent_at, entry_uuid, reconciled, last_remote_code, last_remote_text")
_ORDER_COLUMNS = ("seq, id, client_ref, client_name, body_hash, ins, ins_oid, identity_status, author_rpps,"
                  " document_unique_id, submission_set_unique_id, type_code, created_at, send_at, content_erased_at")


def _delivery(r: Any, attempt_log: tuple[AttemptView, ...] = ()) -> DeliveryView:
    return DeliveryView(
        id=int(r[0]), destination=str(r[1]), kind=str(r[2]), state=DeliveryState(r[3]), due_at=r[4],
        attempts=int(r[5]), round_attempts=int(r[6]), uncertain=bool(r[7]), last_error_code=r[8],
        last_error=r[9], last_error_at=r[10], sent_at=r[11], entry_uuid=r[12], reconciled=bool(r[13]),
        attempt_log=attempt_log, last_remote_code=r[14], last_remote_text=r[15],
    )


def _order(r: Any, deliveries: tuple[DeliveryView, ...]) -> OrderView:
    fields = tuple(r)
    return OrderView(*fields[:15], deliveries=deliveries)  # type: ignore[misc]


def load_order(conn: sqlite3.Connection, order_id: str, *, with_attempts: bool = False) -> OrderView | None:
    row = conn.execute(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ?", (order_id,)).fetchone()  # noqa: S608
    if row is None:
        return None
    rows = conn.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE order_seq = ? ORDER BY id",  # noqa: S608
                        (row[0],)).fetchall()
    deliveries = []
    for d in rows:
        log: tuple[AttemptView, ...] = ()
        if with_attempts:
            log = tuple(AttemptView(*a) for a in conn.execute(
                "SELECT number, started_at, ended_at, outcome, error_code, error FROM attempts"
                " WHERE delivery_id = ? ORDER BY number", (d[0],)))
        deliveries.append(_delivery(d, log))
    return _order(row, tuple(deliveries))


def require_order(conn: sqlite3.Connection, order_id: str, *, with_attempts: bool = False) -> OrderView:
    order = load_order(conn, order_id, with_attempts=with_attempts)
    if order is None:
        raise NotFound("Aucun envoi ne porte cet identifiant.", code="order_not_found")
    return order


def list_query(*, state: str | None = None, ins: str | None = None, author: str | None = None, limit: int = 50,
               before_seq: int | None = None) -> tuple[str, list[object]]:
    """The one query of ``list_orders``: a page of orders, newest first, from the index of the filter (the summary
    state is a column kept by triggers), joined to their deliveries. Tests check its plan."""
    clauses: list[str] = []
    params: list[object] = []
    for column, value in (("state", state), ("ins", ins), ("author_rpps", author)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if before_seq is not None:
        clauses.append("seq < ?")
        params.append(before_seq)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    delivery_columns = ", ".join(f"d.{c.strip()}" for c in _DELIVERY_COLUMNS.split(","))
    order_columns = ", ".join(f"o.{c.strip()}" for c in _ORDER_COLUMNS.split(","))
    sql = (f"SELECT {order_columns}, {delivery_columns}"  # noqa: S608 - columns and clauses are ours
           f" FROM (SELECT {_ORDER_COLUMNS} FROM orders{where} ORDER BY seq DESC LIMIT ?) AS o"
           " JOIN deliveries d ON d.order_seq = o.seq")
    return sql, [*params, limit]


def list_orders(conn: sqlite3.Connection, *, state: str | None = None, ins: str | None = None,
                author: str | None = None, limit: int = 50, before_seq: int | None = None) -> list[OrderView]:
    """Newest first, from ``before_seq`` (the cursor) down; ``state`` filters on the order's summary state. One
    indexed query whatever the filter, never a loop loading orders one by one."""
    sql, params = list_query(state=state, ins=ins, author=author, limit=limit, before_seq=before_seq)
    width = len(_ORDER_COLUMNS.split(","))
    heads: dict[int, tuple[Any, ...]] = {}
    deliveries: dict[int, list[DeliveryView]] = {}
    for row in conn.execute(sql, params):
        fields = tuple(row)
        seq = int(fields[0])
        heads.setdefault(seq, fields[:width])
        deliveries.setdefault(seq, []).append(_delivery(fields[width:]))
    return [_order(heads[seq], tuple(sorted(deliveries[seq], key=lambda d: d.id)))
            for seq in sorted(heads, reverse=True)]


def counts_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """Orders by summary state (the most pressing state of their deliveries): counts kept by triggers, so this
    reads ten rows however many orders the store holds."""
    counts = {s.value: 0 for s in DeliveryState}
    for state, count in conn.execute("SELECT state, n FROM order_counts"):
        if state in counts:
            counts[state] = int(count)
    return counts


def document_status(conn: sqlite3.Connection, unique_id: str) -> list[tuple[OrderView, DeliveryView]]:
    out: list[tuple[OrderView, DeliveryView]] = []
    for (order_id,) in conn.execute("SELECT id FROM orders WHERE document_unique_id = ? ORDER BY seq", (unique_id,)):
        order = load_order(conn, order_id)
        if order is not None:
            out.extend((order, d) for d in order.deliveries)
    return out


def fed_version(conn: sqlite3.Connection, reference: str) -> tuple[OrderView, DeliveryView] | None:
    """The last order whose DMP delivery carried ``reference``, a document uniqueId or the entryUUID the DMP gave
    it (a replacement's previous version, EX_2.1-1130: the software finds what it fed), with that delivery;
    cancelled deliveries left out."""
    if reference.startswith("urn:uuid:"):
        sql = ("SELECT o.id FROM orders o JOIN deliveries d ON d.order_seq = o.seq WHERE d.destination = 'dmp' "
               "AND d.entry_uuid = ? ORDER BY o.seq DESC")
    else:
        sql = ("SELECT o.id FROM orders o JOIN deliveries d ON d.order_seq = o.seq WHERE d.destination = 'dmp' "
               "AND d.state != 'cancelled' AND o.document_unique_id = ? ORDER BY o.seq DESC")
    for (order_id,) in conn.execute(sql, (reference,)).fetchall():
        order = load_order(conn, order_id)
        delivery = next((d for d in order.deliveries if d.destination == "dmp"), None) if order else None
        if order is not None and delivery is not None:
            return order, delivery
    return None


# --- user actions -----------------------------------------------------------------------------------------

def _set_state(conn: sqlite3.Connection, delivery_id: int, state: DeliveryState, now: float, **columns: object) -> None:
    if "last_error_code" in columns and "last_remote_code" not in columns:  # a new error: no older service code
        columns.update(last_remote_code=None, last_remote_text=None)
    sets = ", ".join(f"{name} = ?" for name in columns)
    conn.execute(
        f"UPDATE deliveries SET state = ?, updated_at = ?{', ' + sets if sets else ''} WHERE id = ?",  # noqa: S608
        (state.value, now, *columns.values(), delivery_id),
    )


def cancel_order(conn: sqlite3.Connection, order_id: str, now: float) -> OrderView:
    """All or nothing: every delivery not yet left is cancelled, or nothing changes (409)."""
    order = require_order(conn, order_id)
    refusal_code = cancel_refusal(d.state for d in order.deliveries)
    if refusal_code is not None:
        state = S.SENDING if refusal_code == "already_sending" else S.SENT
        raise Conflict(refusal(state, Event.CANCEL), code=refusal_code)
    for d in order.deliveries:
        if d.state in CANCELLABLE:
            _set_state(conn, d.id, S.CANCELLED, now, due_at=None, uncertain=0)
    return require_order(conn, order_id)


def release_order(conn: sqlite3.Connection, order_id: str, now: float) -> OrderView:
    """send-now: the delay (or a backoff) ends now."""
    order = require_order(conn, order_id)
    if order.state is S.CANCELLED:
        next_state(S.CANCELLED, Event.RELEASE)  # raises the 409 with its French message
    for d in order.deliveries:
        if allowed(d.state, Event.RELEASE):
            _set_state(conn, d.id, S.READY, now, due_at=now)
    return require_order(conn, order_id)


def retry_order(conn: sqlite3.Connection, order_id: str, now: float) -> OrderView:
    """Failed deliveries back to ready, except those a retry cannot mend (``NOT_RETRYABLE``: a bounced mail),
    which stay failed; 409 with their reason when they are the only failed ones."""
    order = require_order(conn, order_id)
    failed = [d for d in order.deliveries if d.state is S.FAILED and d.last_error_code not in NOT_RETRYABLE]
    stuck = [d for d in order.deliveries if d.state is S.FAILED and d.last_error_code in NOT_RETRYABLE]
    if not failed and stuck:
        code = str(stuck[0].last_error_code)
        raise Conflict(NOT_RETRYABLE[code], code=code)
    if not failed:
        state = order.state
        next_state(state if state is not S.FAILED else S.READY, Event.RETRY)
    for d in failed:
        _set_state(conn, d.id, S.READY, now, due_at=now, round_attempts=0)
    return require_order(conn, order_id)


def dismiss_failed(conn: sqlite3.Connection, order_id: str, now: float) -> OrderView:
    """"Retirer": the order's failed deliveries are given up (failed -> cancelled: never sent, never will be);
    its other deliveries, sent or pending, are left as they are. 409 not_failed when none has failed."""
    order = require_order(conn, order_id)
    failed = [d for d in order.deliveries if d.state is S.FAILED]
    if not failed:
        next_state(order.state if order.state is not S.FAILED else S.READY, Event.RETRY)  # 409 with its message
    for d in failed:
        _set_state(conn, d.id, next_state(S.FAILED, Event.CANCEL), now, due_at=None, uncertain=0)
    return require_order(conn, order_id)


def retry_failed(conn: sqlite3.Connection, now: float) -> list[str]:
    """"Réessayer tout": every failed delivery is ready again, with a fresh retry budget; the ids of its orders.
    A failed delivery is uncertain when an attempt may have reached the service: the executor asks first. Those a
    retry cannot mend (``NOT_RETRYABLE``: a bounced mail) stay failed, as with ``retry_order``."""
    rows = [r[0] for r in conn.execute("SELECT id, last_error_code FROM deliveries WHERE state = 'failed' "
                                       "ORDER BY order_seq, id") if r[1] not in NOT_RETRYABLE]
    for delivery_id in rows:
        _set_state(conn, delivery_id, S.READY, now, due_at=now, round_attempts=0)
    return _order_ids(conn, rows)


# --- routing: orders handed to the workstation that holds the author's CPS --------------------------------

def _transition_all(conn: sqlite3.Connection, seq: int, event: Event, now: float, *, only: DeliveryState | None = None,
                    destination: str | None = None, **columns: object) -> int:
    """Apply ``event`` to the order's deliveries where the state machine allows it; how many changed."""
    changed = 0
    for delivery_id, raw, dest in conn.execute("SELECT id, state, destination FROM deliveries WHERE order_seq = ?",
                                               (seq,)).fetchall():
        state = DeliveryState(raw)
        if (only is not None and state is not only) or (destination is not None and dest != destination):
            continue
        if allowed(state, event):
            _set_state(conn, int(delivery_id), next_state(state, event), now, **columns)
            changed += 1
    return changed


def forward(conn: sqlite3.Connection, seq: int, now: float) -> bool:
    """Every delivery of the order becomes ``forwarded`` (the executor no longer touches them), or none when one
    of them has moved on (the executor took it, or it was cancelled)."""
    states = {DeliveryState(r[0]) for r in conn.execute("SELECT state FROM deliveries WHERE order_seq = ?", (seq,))}
    if not states or not all(allowed(state, Event.FORWARD) for state in states):
        return False
    _transition_all(conn, seq, Event.FORWARD, now)
    return True


def forward_refused(conn: sqlite3.Connection, seq: int, now: float) -> None:
    _transition_all(conn, seq, Event.FORWARD_REFUSED, now)


def recall(conn: sqlite3.Connection, seq: int, now: float, due_at: float) -> None:
    """The order comes back from the holder; its deadline is unchanged (or now, if it passed)."""
    _transition_all(conn, seq, Event.RECALL, now, due_at=due_at)


def mirror_final(conn: sqlite3.Connection, seq: int, destination: str, state: str, now: float,
                 sent_at: float | None, entry_uuid: str | None) -> bool:
    """The holder's final state of one forwarded delivery (sent or cancelled), taken here."""
    if state == S.SENT.value:
        return _transition_all(conn, seq, Event.DELIVERED, now, only=S.FORWARDED, destination=destination,
                               sent_at=sent_at, entry_uuid=entry_uuid, due_at=None) > 0
    if state == S.CANCELLED.value:
        return _transition_all(conn, seq, Event.REMOTE_CANCELLED, now, only=S.FORWARDED, destination=destination,
                               due_at=None) > 0
    return False


# --- the executor's side ----------------------------------------------------------------------------------

def _order_ids(conn: sqlite3.Connection, delivery_ids: Iterable[int]) -> list[str]:
    ids = list(delivery_ids)
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"SELECT DISTINCT o.id FROM orders o JOIN deliveries d ON d.order_seq = o.seq WHERE d.id IN ({marks})",  # noqa: S608
        ids,
    ).fetchall()
    return [r[0] for r in rows]


def recover_sending(conn: sqlite3.Connection, now: float) -> list[str]:
    """At start: a delivery left in ``sending`` was interrupted; it goes back to ready and will be reconciled
    (asked of the service by uniqueId) before any resend."""
    rows = [r[0] for r in conn.execute("SELECT id FROM deliveries WHERE state = 'sending'")]
    for delivery_id in rows:
        _set_state(conn, delivery_id, S.READY, now, uncertain=1, due_at=now)
        conn.execute("UPDATE attempts SET ended_at = ?, outcome = 'interrupted'"
                     " WHERE delivery_id = ? AND ended_at IS NULL", (now, delivery_id))
    return _order_ids(conn, rows)


def release_due(conn: sqlite3.Connection, now: float, offline_kinds: Iterable[str] = ()) -> list[str]:
    """Scheduled and retrying deliveries whose time has come become ready (or wait for the network when their
    service is known to be unreachable)."""
    offline = set(offline_kinds)
    rows = conn.execute(
        "SELECT id, kind FROM deliveries WHERE state IN ('scheduled', 'retrying') AND due_at <= ?", (now,)
    ).fetchall()
    for delivery_id, kind in rows:
        state = S.WAITING_NETWORK if kind in offline else S.READY
        _set_state(conn, delivery_id, state, now)
    return _order_ids(conn, (r[0] for r in rows))


def shift_due(conn: sqlite3.Connection, seconds: float, now: float) -> list[str]:
    """The wall clock jumped by ``seconds``: every delay still running (scheduled, retrying) keeps its length, so
    its deadline moves with the clock (a forward jump must not cut the doctor's cancellation delay; a set-back
    must not hold sends an hour). The orders' ``send_at`` moves with their scheduled deliveries."""
    rows = [int(r[0]) for r in conn.execute(
        "SELECT id FROM deliveries WHERE state IN ('scheduled', 'retrying') AND due_at IS NOT NULL")]
    conn.execute("UPDATE orders SET send_at = send_at + ? WHERE seq IN"
                 " (SELECT order_seq FROM deliveries WHERE state = 'scheduled')", (seconds,))
    conn.execute("UPDATE deliveries SET due_at = due_at + ?, updated_at = ?"
                 " WHERE state IN ('scheduled', 'retrying') AND due_at IS NOT NULL", (seconds, now))
    return _order_ids(conn, rows)


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT min(due_at) FROM deliveries WHERE state IN ('scheduled', 'retrying')").fetchone()
    return None if row is None or row[0] is None else float(row[0])


# A patient's documents reach each service in the order they were created: a ready delivery waits while one of
# the same patient to the same service is under way, or an older one is still to go (ready, retrying, waiting
# for the network). Scheduled (delay running), waiting_card and final deliveries hold nothing back. The orders'
# summary state (indexed with the INS) narrows the look to the patient's open orders; an order with a delivery
# under way is summed up as ``sending``.
_OPEN_SUMMARIES = tuple(s.value for s in SUMMARY_PRIORITY if s not in (S.SENT, S.CANCELLED))
_UNDER_WAY = (
    "SELECT 1 FROM orders o INDEXED BY orders_ins_state JOIN deliveries d ON d.order_seq = o.seq"
    " WHERE o.ins = ? AND o.state = 'sending' AND d.kind = ? AND d.state = 'sending' LIMIT 1"
)
_OLDER_TO_GO = (
    "SELECT 1 FROM orders o INDEXED BY orders_ins_state JOIN deliveries d ON d.order_seq = o.seq"  # noqa: S608
    f" WHERE o.ins = ? AND o.state IN ({','.join('?' * len(_OPEN_SUMMARIES))}) AND o.seq < ? AND d.kind = ?"
    "   AND d.state IN ('ready', 'retrying', 'waiting_network') LIMIT 1"
)


def claim_ready(conn: sqlite3.Connection, cipher: ContentCipher, kinds: Iterable[str], limit: int,
                now: float) -> list[Claim]:
    """Take up to ``limit`` ready deliveries, oldest order first, and mark them ``sending`` with a new attempt,
    all in the caller's transaction: once this commits, a crash leaves a trace that the request may have left.

    Sends start in creation order, and one patient's documents go to a service one after the other: the
    scan stops at a delivery whose patient has one under way (it goes next, when that one ends, before any
    newer); a patient with an older document still to go (waiting out a backoff) is skipped, so one document
    the service keeps refusing holds back that patient's later documents but nobody else's."""
    kind_list = list(kinds)
    if not kind_list or limit <= 0:
        return []
    marks = ",".join("?" * len(kind_list))
    candidates = conn.execute(
        "SELECT d.id, d.kind, o.ins, d.order_seq FROM deliveries d JOIN orders o ON o.seq = d.order_seq"  # noqa: S608
        f" WHERE d.state = 'ready' AND d.kind IN ({marks}) ORDER BY d.order_seq, d.id", kind_list)
    chosen: list[int] = []
    taken: set[tuple[str, str]] = set()
    skipped: set[tuple[str, str]] = set()
    for delivery_id, kind, ins, order_seq in candidates:  # the ready index, in order, until ``limit`` are found
        key = (str(kind), str(ins))
        if key in skipped:
            continue
        if key in taken or conn.execute(_UNDER_WAY, (ins, kind)).fetchone() is not None:
            break  # goes as soon as the patient's send under way ends, before any newer order
        if conn.execute(_OLDER_TO_GO, (ins, *_OPEN_SUMMARIES, order_seq, kind)).fetchone() is not None:
            skipped.add(key)  # behind an older document of the patient waiting out a backoff
            continue
        taken.add(key)
        chosen.append(int(delivery_id))
        if len(chosen) >= limit:
            break
    candidates.close()
    if not chosen:
        return []
    query = (
        "SELECT d.id, o.id, d.destination, d.kind, d.attempts, d.round_attempts, d.uncertain,"  # noqa: S608
        " o.ins, o.ins_oid, o.author_rpps, o.document_unique_id, o.submission_set_unique_id, o.key_id, o.payload"
        " FROM deliveries d JOIN orders o ON o.seq = d.order_seq"
        f" WHERE d.id IN ({','.join('?' * len(chosen))}) ORDER BY d.order_seq, d.id"
    )
    rows = conn.execute(query, chosen).fetchall()
    claims = []
    for (delivery_id, order_id, destination, kind, attempts, round_attempts, uncertain, ins, oid, rpps,
         doc_uid, set_uid, key_id, blob) in rows:
        if key_id is None or blob is None:
            _set_state(conn, delivery_id, S.FAILED, now, last_error_code="content_destroyed",
                       last_error="Le contenu du document a été effacé (durée de conservation écoulée).",
                       last_error_at=now)
            continue
        try:
            payload = cipher.open(conn, SealedBlob(key_id, bytes(blob)))
        except StoreError as exc:  # another master key, or altered data: this one cannot leave, the others can
            _set_state(conn, delivery_id, S.FAILED, now, last_error_code=exc.code, last_error=exc.message,
                       last_error_at=now)
            continue
        number = attempts + 1
        _set_state(conn, delivery_id, S.SENDING, now, attempts=number, round_attempts=round_attempts + 1,
                   uncertain=1)
        conn.execute("INSERT INTO attempts(delivery_id, number, started_at) VALUES (?,?,?)",
                     (delivery_id, number, now))
        claims.append(Claim(delivery_id, order_id, destination, kind, number, round_attempts + 1, bool(uncertain),
                            ins, oid, rpps, doc_uid, set_uid, payload))
    return claims


def _end_attempt(conn: sqlite3.Connection, delivery_id: int, number: int, now: float, outcome: str,
                 code: str | None = None, error: str | None = None) -> None:
    conn.execute(
        "UPDATE attempts SET ended_at = ?, outcome = ?, error_code = ?, error = ? WHERE delivery_id = ? AND number = ?",
        (now, outcome, code, error, delivery_id, number),
    )


def _current(conn: sqlite3.Connection, delivery_id: int) -> DeliveryState:
    row = conn.execute("SELECT state FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    if row is None:
        raise NotFound("livraison inconnue")
    return DeliveryState(row[0])


def mark_sent(conn: sqlite3.Connection, delivery_id: int, attempt: int | None, now: float,
              entry_uuid: str | None, *, reconciled: bool = False) -> None:
    state = _current(conn, delivery_id)
    next_state(state, Event.DELIVERED)
    _set_state(conn, delivery_id, S.SENT, now, sent_at=now, entry_uuid=entry_uuid, uncertain=0, due_at=None,
               reconciled=int(reconciled))
    if attempt is not None:
        _end_attempt(conn, delivery_id, attempt, now, "reconciled" if reconciled else "sent")


def mark_failed_attempt(conn: sqlite3.Connection, delivery_id: int, attempt: int, now: float, event: Event,
                        code: str, message: str, *, due_at: float | None = None, uncertain: bool = True,
                        remote: tuple[str, str] | None = None) -> None:
    """End an attempt that did not deliver: retrying (with its due time), waiting_network, waiting_card or failed.
    ``remote``: the service's own code and text of the refusal (PRE_ERR), when it gave them."""
    state = next_state(_current(conn, delivery_id), event)
    _set_state(conn, delivery_id, state, now, due_at=due_at, last_error_code=code, last_error=message,
               last_error_at=now, uncertain=int(uncertain), last_remote_code=remote[0] if remote else None,
               last_remote_text=remote[1] if remote else None)
    if event is Event.CARD_MISSING:
        # No request left: the attempt does not count against the retry budget.
        conn.execute("UPDATE deliveries SET attempts = attempts - 1, round_attempts = round_attempts - 1 WHERE id = ?",
                     (delivery_id,))
        conn.execute("DELETE FROM attempts WHERE delivery_id = ? AND number = ?", (delivery_id, attempt))
    else:
        _end_attempt(conn, delivery_id, attempt, now, state.value, code, message)


def park_ready(conn: sqlite3.Connection, kind: str, now: float) -> list[str]:
    """The service is unreachable: its ready deliveries wait for the network instead."""
    rows = [r[0] for r in conn.execute("SELECT id FROM deliveries WHERE state = 'ready' AND kind = ?", (kind,))]
    for delivery_id in rows:
        _set_state(conn, delivery_id, S.WAITING_NETWORK, now)
    return _order_ids(conn, rows)


def oldest_waiting_network(conn: sqlite3.Connection, kind: str) -> tuple[int, str, str, str] | None:
    """(delivery id, INS, OID, document uniqueId) of the oldest delivery waiting for the network."""
    row = conn.execute(
        "SELECT d.id, o.ins, o.ins_oid, o.document_unique_id FROM deliveries d JOIN orders o ON o.seq = d.order_seq"
        " WHERE d.state = 'waiting_network' AND d.kind = ? ORDER BY o.seq, d.id LIMIT 1", (kind,)
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]), str(row[3]))


def has_waiting_network(conn: sqlite3.Connection, kind: str) -> bool:
    return conn.execute("SELECT 1 FROM deliveries WHERE state = 'waiting_network' AND kind = ? LIMIT 1",
                        (kind,)).fetchone() is not None


def release_waiting_network(conn: sqlite3.Connection, kind: str, now: float) -> list[str]:
    rows = [r[0] for r in conn.execute("SELECT id FROM deliveries WHERE state = 'waiting_network' AND kind = ?",
                                       (kind,))]
    for delivery_id in rows:
        _set_state(conn, delivery_id, S.READY, now, due_at=now)
    return _order_ids(conn, rows)


def promote_oldest_retrying(conn: sqlite3.Connection, kind: str, since: float, now: float) -> None:
    """A service in trouble is tried by one delivery at a time: the oldest still to go, not the one whose own
    backoff happens to end first (else the newest order, never tried yet, would go first when the service comes
    back). The oldest retrying delivery that has not tried the service since ``since`` (the trouble began) is made
    ready now when no older one is ready; one that keeps failing thus yields its turn to the next, so a document
    the service cannot take does not hold the others back."""
    row = conn.execute(
        "SELECT d.id, d.order_seq FROM deliveries d WHERE d.state = 'retrying' AND d.kind = ?"
        " AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id AND a.started_at >= ?)"
        " ORDER BY d.order_seq, d.id LIMIT 1", (kind, since)).fetchone()
    if row is None:
        return
    ready = conn.execute("SELECT min(order_seq) FROM deliveries WHERE state = 'ready' AND kind = ?",
                         (kind,)).fetchone()[0]
    if ready is None or int(ready) > int(row[1]):
        _set_state(conn, int(row[0]), S.READY, now, due_at=now)


def release_retrying(conn: sqlite3.Connection, kind: str, now: float) -> list[str]:
    """The service answers again: its deliveries waiting out a backoff are ready now, to leave in creation order
    instead of each at the end of its own (jittered) wait."""
    rows = [int(r[0]) for r in conn.execute("SELECT id FROM deliveries WHERE state = 'retrying' AND kind = ?",
                                            (kind,))]
    for delivery_id in rows:
        _set_state(conn, delivery_id, S.READY, now, due_at=now)
    return _order_ids(conn, rows)


def waiting_card(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return [(int(r[0]), str(r[1])) for r in conn.execute(
        "SELECT d.id, o.author_rpps FROM deliveries d JOIN orders o ON o.seq = d.order_seq"
        " WHERE d.state = 'waiting_card' ORDER BY o.seq")]


def release_waiting_card(conn: sqlite3.Connection, delivery_ids: Iterable[int], now: float) -> list[str]:
    ids = [i for i in delivery_ids if _current(conn, i) is S.WAITING_CARD]
    for delivery_id in ids:
        _set_state(conn, delivery_id, S.READY, now, due_at=now)
    return _order_ids(conn, ids)


def erase_expired_batch(conn: sqlite3.Connection, cutoff: float, now: float, *, after_seq: int = 0,
                        limit: int = 100) -> tuple[int, int | None]:
    """One small batch of the retention clean-up: among at most ``limit`` orders after ``after_seq`` whose
    deliveries are all settled (sent or cancelled) and whose content still exists, destroy the data key of those
    settled before ``cutoff``: their content can no longer be opened anywhere (WAL, backups); the metadata stays.
    Returns (erased, the cursor of the next batch or None when done); each batch is its own short transaction, so
    the clean-up never holds writes for long.

    A ``forwarded`` delivery is not settled: until the holder says it sent or cancelled it, this copy may be
    the only one left (the holder may never come back), so it is kept to be recalled."""
    rows = conn.execute(
        "SELECT o.seq, o.key_id, NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.order_seq = o.seq"
        "                                    AND (d.state NOT IN ('sent', 'cancelled') OR d.updated_at > ?))"
        " FROM orders o INDEXED BY orders_settled"
        " WHERE o.key_id IS NOT NULL AND o.state IN ('sent', 'cancelled') AND o.seq > ? ORDER BY o.seq LIMIT ?",
        (cutoff, after_seq, limit),
    ).fetchall()
    erased = 0
    for seq, key_id, expired in rows:
        if not expired:
            continue
        ContentCipher.destroy(conn, key_id)
        conn.execute("UPDATE orders SET key_id = NULL, payload = NULL, content_erased_at = ? WHERE seq = ?",
                     (now, seq))
        order_display.erase(conn, seq)  # the patient's name and the title go with the content
        erased += 1
    return erased, (int(rows[-1][0]) if len(rows) == limit else None)


def erase_expired_content(conn: sqlite3.Connection, cutoff: float, now: float) -> int:
    """Every batch of ``erase_expired_batch`` in the caller's one transaction (tests, short stores)."""
    total = 0
    cursor: int | None = 0
    while cursor is not None:
        erased, cursor = erase_expired_batch(conn, cutoff, now, after_seq=cursor)
        total += erased
    return total


def open_payload(conn: sqlite3.Connection, cipher: ContentCipher, order_id: str) -> bytes | None:
    row = conn.execute("SELECT key_id, payload FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    return cipher.open(conn, SealedBlob(row[0], bytes(row[1])))


_PAUSED_KEY = "queue.paused"


def is_paused(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (_PAUSED_KEY,)).fetchone()
    return row is not None and row[0] == "1"


def set_paused(conn: sqlite3.Connection, paused: bool) -> None:
    conn.execute("INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                 (_PAUSED_KEY, "1" if paused else "0"))
