"""The order list, the status counts and the retention clean-up at scale (issue 23 #14, issue 24 #5), on a real
SQLite file: every filter of ``GET /v1/orders`` is one indexed query (checked with ``EXPLAIN QUERY PLAN`` and by
counting the statements run), the summary state and the counts kept by triggers always equal what the deliveries
say, and the clean-up runs in short batches."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import sqlite3
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent.clock import FrozenClock
from agent.domain.orders import SUMMARY_PRIORITY, DeliveryState, Event, NewOrder, summary_state
from agent.store import migrations
from agent.store import orders as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database, connect
from tests.support.queue import Harness, MemoryDmp

NOW = 1_800_000_000.0
S = DeliveryState


def _new(serial: int, *, destinations: tuple[str, ...] = ("dmp",), author: str = "10000000000") -> NewOrder:
    return NewOrder(order_id=str(uuid.uuid4()), client_ref=None, client_name="lgc", body_hash="h",
                    ins=f"2790351215{serial % 7:05d}", ins_oid="1.2.250.1.213.1.4.8", identity_status="QUAL",
                    author_rpps=author, document_unique_id=f"2.25.{uuid.uuid4().int}",
                    submission_set_unique_id=f"2.25.{uuid.uuid4().int}", type_code="11488-4",
                    payload=b"{}", destinations=destinations, delay_seconds=900)


def _fill(conn: sqlite3.Connection, cipher: ContentCipher, count: int) -> list[repo.OrderView]:
    made = []
    conn.execute("BEGIN")
    for i in range(count):
        destinations = ("dmp", "mss:a@x.mssante.fr") if i % 3 == 0 else ("dmp",)
        made.append(repo.insert_order(conn, cipher, _new(i, destinations=destinations,
                                                         author=f"1000000000{i % 3}"), NOW, "t")[0])
    conn.execute("COMMIT")
    return made


FILTERS = [dict(zip(("state", "ins", "author", "before_seq"), values, strict=True)) for values in itertools.product(
    (None, "failed"), (None, "279035121500001"), (None, "10000000001"), (None, 120))]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: "+".join(k for k, v in f.items() if v) or "none")
def test_every_filter_of_the_order_list_is_one_query_served_by_an_index(tmp_path: Path,
                                                                         filters: dict[str, Any]) -> None:
    # Before: the state filter loaded orders one by one (7-35 s on 13,000 orders, 3.4 s for a rare state at 50,000).
    conn = connect(tmp_path / "r.db")
    migrations.apply_migrations(conn)
    cipher = ContentCipher(os.urandom(32))
    _fill(conn, cipher, 300)
    conn.execute("ANALYZE")
    sql, params = repo.list_query(**filters, limit=51)
    plan = [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    orders_steps = [step for step in plan if "orders" in step]
    assert orders_steps, plan
    if any(filters.values()):
        assert all("USING" in step for step in orders_steps), plan  # an index (or the primary key), never a scan
    assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort of the whole store
    assert any(step.startswith("SEARCH d USING") and "order_seq=?" in step for step in plan), plan
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    page = repo.list_orders(conn, **filters, limit=51)
    conn.set_trace_callback(None)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements
    everything = (repo.load_order(conn, r[0]) for r in conn.execute("SELECT id FROM orders ORDER BY seq DESC"))
    expected = [o for o in everything
                if o is not None and (filters["state"] is None or o.state.value == filters["state"])
                and (filters["ins"] is None or o.ins == filters["ins"])
                and (filters["author"] is None or o.author_rpps == filters["author"])
                and (filters["before_seq"] is None or o.seq < filters["before_seq"])][:51]
    assert page == expected


def test_a_rare_state_is_found_with_one_query_among_many_orders(tmp_path: Path) -> None:
    conn = connect(tmp_path / "r.db")
    migrations.apply_migrations(conn)
    cipher = ContentCipher(os.urandom(32))
    orders = _fill(conn, cipher, 400)
    rare = orders[7]
    conn.execute("BEGIN")
    conn.execute("UPDATE deliveries SET state = 'failed' WHERE order_seq = ? AND destination = 'dmp'", (rare.seq,))
    conn.execute("COMMIT")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    found = repo.list_orders(conn, state="failed")
    conn.set_trace_callback(None)
    assert [o.id for o in found] == [rare.id]
    assert len(statements) == 1, statements  # before: 1 + 2 x 400 statements
    assert repo.counts_by_state(conn)["failed"] == 1


def test_the_summary_state_and_the_counts_follow_every_delivery_change(tmp_path: Path) -> None:
    conn = connect(tmp_path / "r.db")
    migrations.apply_migrations(conn)
    ranks = [r[0] for r in conn.execute("SELECT state FROM order_state_rank ORDER BY rank")]
    assert ranks == [s.value for s in SUMMARY_PRIORITY]  # the triggers rank states as the domain does
    cipher = ContentCipher(os.urandom(32))
    orders = _fill(conn, cipher, 60)
    rand = random.Random(23)
    states = [s.value for s in DeliveryState]
    for _ in range(400):
        order = rand.choice(orders)
        conn.execute("BEGIN")
        if rand.random() < 0.3:
            with contextlib.suppress(Exception):  # a refused cancel changes nothing, which is checked too
                repo.cancel_order(conn, order.id, NOW)
        else:
            delivery = rand.choice(order.deliveries)
            conn.execute("UPDATE deliveries SET state = ? WHERE id = ?", (rand.choice(states), delivery.id))
        conn.execute("COMMIT")
        check_consistent(conn)


def check_consistent(conn: sqlite3.Connection) -> None:
    truth: Counter[str] = Counter()
    for seq, stored in conn.execute("SELECT seq, state FROM orders").fetchall():
        expected = summary_state(S(r[0]) for r in conn.execute("SELECT state FROM deliveries WHERE order_seq = ?",
                                                               (seq,)))
        assert stored == expected.value
        truth[expected.value] += 1
    counts = repo.counts_by_state(conn)
    assert {k: v for k, v in counts.items() if v} == dict(truth)


def test_an_existing_store_gets_its_summary_states_and_counts_when_the_agent_is_updated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    older = {k: v for k, v in migrations.MIGRATIONS.items() if k != "order_summary"}
    conn = connect(tmp_path / "r.db")
    monkeypatch.setattr(migrations, "MIGRATIONS", older)
    migrations.apply_migrations(conn)
    cipher = ContentCipher(os.urandom(32))
    orders = _fill(conn, cipher, 30)
    conn.execute("UPDATE deliveries SET state = 'sent' WHERE order_seq <= 10")
    conn.execute("UPDATE deliveries SET state = 'failed' WHERE order_seq = ?", (orders[20].seq,))
    monkeypatch.undo()
    migrations.apply_migrations(conn)
    check_consistent(conn)
    assert repo.counts_by_state(conn)["sent"] == 10 and repo.counts_by_state(conn)["failed"] == 1


async def test_the_retention_clean_up_runs_in_short_batches_between_other_writes(tmp_path: Path) -> None:
    # Before: one transaction for the whole clean-up blocked every write 215 ms at 50,000 orders.
    clock = FrozenClock()
    harness = Harness(tmp_path / "r.db", clock, MemoryDmp(), retention_days=30)
    await harness.start()
    db = harness.db
    assert isinstance(db, Database)
    cipher = ContentCipher(harness.master)
    try:
        now = clock.now().timestamp()
        old = now - 40 * 86400

        def settled_long_ago(conn: sqlite3.Connection) -> None:
            for i in range(450):
                order, _ = repo.insert_order(conn, cipher, _new(i), old, "t")
                repo.cancel_order(conn, order.id, old)

        await db.write(settled_long_ago)
        recent, _ = await db.write(lambda c: repo.insert_order(c, cipher, _new(999), now, "t"))
        before = db.commits
        assert await harness.executor.erase_expired() == 450
        assert db.commits - before >= 5  # 450 orders in batches of 100: five short transactions, not one
        assert await db.read(lambda c: repo.open_payload(c, cipher, recent.id)) == b"{}"
        erased = await db.read(lambda c: c.execute("SELECT count(*) FROM orders WHERE key_id IS NULL").fetchone()[0])
        assert erased == 450
        assert await harness.executor.erase_expired() == 0
    finally:
        await harness.stop()


def test_mark_and_events_keep_counts(tmp_path: Path) -> None:
    """The executor's own transitions (claim, sent, failed attempt) keep the stored state too."""
    conn = connect(tmp_path / "r.db")
    migrations.apply_migrations(conn)
    cipher = ContentCipher(os.urandom(32))
    order, _ = repo.insert_order(conn, cipher, _new(1), NOW, "t")
    conn.execute("BEGIN")
    repo.release_order(conn, order.id, NOW)
    claims = repo.claim_ready(conn, cipher, ["dmp"], 10, NOW)
    conn.execute("COMMIT")
    check_consistent(conn)
    assert repo.list_orders(conn, state="sending")[0].id == order.id
    conn.execute("BEGIN")
    repo.mark_failed_attempt(conn, claims[0].delivery_id, claims[0].attempt, NOW, Event.TRANSIENT, "x", "y",
                             due_at=NOW + 10)
    conn.execute("COMMIT")
    check_consistent(conn)
    assert repo.counts_by_state(conn)["retrying"] == 1 and repo.counts_by_state(conn)["sending"] == 0
