"""The executor over a real SQLite store, with a protocol-level DMP (``MemoryDmp``) and a frozen clock.

Each "restart" closes the database and opens a fresh service and executor over the same file, as a new agent
process would. The same behaviours are checked against the DMP simulator over its socket in
``test_queue_simulator.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.clock import FrozenClock
from agent.domain.orders import DeliveryState
from agent.errors import Conflict
from agent.store import orders as repo
from tests.support.queue import Harness, MemoryDmp, TransactionCounter, make_cda, order_body


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "relais.db", FrozenClock(), MemoryDmp())
    await h.start()
    yield h
    await h.stop()


async def test_scheduled_order_waits_out_its_delay_then_is_sent_once(harness: Harness) -> None:
    order, created = await harness.create(order_body(delay=900), "lgc")
    assert created and order.state is DeliveryState.SCHEDULED
    await harness.run()
    assert harness.dmp.submissions == []
    harness.clock.advance(899)
    await harness.run()
    assert harness.dmp.submissions == []
    harness.clock.advance(1)
    await harness.run()
    await harness.run()
    assert harness.dmp.submissions == [order.document_unique_id]
    sent = await harness.service.get(order.id)
    assert sent.state is DeliveryState.SENT
    assert sent.deliveries[0].entry_uuid == harness.dmp.stored[order.document_unique_id]
    assert [e.action for e in harness.traces.events] == ["order.sent"]


async def test_cancel_during_the_delay_means_never_sent_across_restarts(harness: Harness) -> None:
    order, _ = await harness.create(order_body(delay=600), "lgc")
    service = await harness.restart()  # between the order and the cancel
    cancelled = await service.cancel(order.id)
    assert cancelled.state is DeliveryState.CANCELLED
    await harness.restart()  # between the cancel and the due time
    harness.clock.advance(3600)
    await harness.run()
    await harness.restart()
    await harness.run()
    assert harness.dmp.submissions == []
    assert await harness.state(order.id) is DeliveryState.CANCELLED


async def test_cancel_after_sent_is_refused(harness: Harness) -> None:
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    with pytest.raises(Conflict) as caught:
        await harness.service.cancel(order.id)
    assert caught.value.code == "already_sent"


async def test_send_now_ends_the_delay(harness: Harness) -> None:
    order, _ = await harness.create(order_body(delay=900), "lgc")
    await harness.service.send_now(order.id)
    await harness.run()
    assert harness.dmp.submissions == [order.document_unique_id]


async def test_due_order_is_sent_after_a_restart_and_a_clock_jump(harness: Harness) -> None:
    order, _ = await harness.create(order_body(delay=300), "lgc")
    await harness.stop()
    harness.clock.advance(24 * 3600)  # the machine slept, or the clock jumped forward, while the agent was off
    await harness.start()
    await harness.run()
    assert harness.dmp.submissions == [order.document_unique_id]


async def test_dmp_down_then_back_sends_each_once_in_creation_order(harness: Harness) -> None:
    harness.dmp.mode = "down"
    orders = [(await harness.create(order_body(delay=0), "lgc"))[0] for _ in range(5)]
    await harness.run()
    states = {await harness.state(o.id) for o in orders}
    assert states == {DeliveryState.WAITING_NETWORK}
    assert harness.executor.offline == {"dmp"}
    harness.clock.advance(30)
    await harness.run()  # the probe finds the DMP still down
    assert {await harness.state(o.id) for o in orders} == {DeliveryState.WAITING_NETWORK}
    await harness.restart()  # waiting survives a restart
    harness.dmp.mode = "ok"
    harness.clock.advance(30)
    for _ in range(3):
        await harness.run()
    assert harness.dmp.submissions == [o.document_unique_id for o in orders]
    assert {await harness.state(o.id) for o in orders} == {DeliveryState.SENT}


async def test_bursts_of_500_are_retried_with_backoff_then_sent(harness: Harness) -> None:
    harness.dmp.fail_next = 3
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    detail = await harness.service.get(order.id)
    delivery = detail.deliveries[0]
    assert delivery.state is DeliveryState.RETRYING
    assert delivery.due_at == pytest.approx(harness.clock.now().timestamp() + 0.5 * 10.0)  # full jitter, attempt 1
    for expected_ceiling in (20.0, 40.0):
        harness.clock.advance(300)
        await harness.run()
        delivery = (await harness.service.get(order.id)).deliveries[0]
        assert delivery.state is DeliveryState.RETRYING
        assert delivery.due_at == pytest.approx(harness.clock.now().timestamp() + 0.5 * expected_ceiling)
    harness.clock.advance(300)
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT
    assert detail.deliveries[0].attempts == 4
    assert [a.outcome for a in detail.deliveries[0].attempt_log] == ["retrying", "retrying", "retrying", "sent"]
    assert harness.dmp.submissions == [order.document_unique_id]


async def test_transient_failures_are_retried_for_days_without_failing(harness: Harness) -> None:
    harness.dmp.mode = "error500"
    order, _ = await harness.create(order_body(delay=0), "lgc")
    for _ in range(3 * 24 * 6):  # three days of 5xx, a look every ten minutes
        await harness.run()
        harness.clock.advance(600)
    detail = await harness.service.get(order.id)
    assert detail.state in (DeliveryState.RETRYING, DeliveryState.READY)
    assert detail.deliveries[0].attempts > 100
    harness.dmp.mode = "ok"
    harness.clock.advance(600)
    await harness.run()
    await harness.run()
    assert await harness.state(order.id) is DeliveryState.SENT
    assert harness.dmp.submissions == [order.document_unique_id]


async def test_a_dmp_answering_500_is_tried_at_a_capped_rate_whatever_the_queue(harness: Harness) -> None:
    harness.dmp.mode = "error500"
    orders = [(await harness.create(order_body(delay=0), "lgc"))[0] for _ in range(40)]
    for _ in range(60):  # one minute, a pass every second
        await harness.run()
        harness.clock.advance(1)
    # The first burst (4 parallel slots), then one try when each pause ends (10 s base: 7.5, 15, 30 s with rand
    # 0.5): a handful of requests, not one per order.
    assert harness.dmp.calls <= 8, harness.dmp.calls
    assert (await harness.service.status())["queue"]["troubled"] == ["dmp"]
    harness.clock.advance(3600)  # a long outage: the pause never grows past the cap (300 s here)
    calls = harness.dmp.calls
    for _ in range(3600 // 10):
        await harness.run()
        harness.clock.advance(10)
    hour = harness.dmp.calls - calls
    assert 3600 / 300 <= hour <= 3600 / 150 + 1  # still trying, at most one request every cap/2
    harness.dmp.mode = "ok"
    harness.clock.advance(300)
    for _ in range(20):
        await harness.run()
        harness.clock.advance(600)
    assert {await harness.state(o.id) for o in orders} == {DeliveryState.SENT}
    assert sorted(harness.dmp.submissions) == sorted(o.document_unique_id for o in orders)
    assert (await harness.service.status())["queue"]["troubled"] == []


async def test_too_many_transient_failures_fail_with_a_french_reason(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "capped.db", FrozenClock(), MemoryDmp(), max_attempts=5)  # a configured cap
    await harness.start()
    harness.dmp.mode = "error500"
    order, _ = await harness.create(order_body(delay=0), "lgc")
    for _ in range(5):
        await harness.run()
        harness.clock.advance(600)
    detail = await harness.service.get(order.id)
    await harness.stop()
    assert detail.state is DeliveryState.FAILED
    assert detail.deliveries[0].last_error is not None
    assert detail.deliveries[0].last_error.startswith("Échec après 5 tentatives")


async def test_out_of_attempts_asks_the_dmp_before_calling_it_failed(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "capped.db", FrozenClock(), MemoryDmp(), max_attempts=1)
    await harness.start()
    harness.dmp.mode = "timeout_after_store"  # stored, the answer lost: the one allowed attempt got there
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    detail = await harness.service.get(order.id)
    await harness.stop()
    assert detail.state is DeliveryState.SENT and detail.deliveries[0].reconciled


async def test_a_refusal_after_the_dmp_stored_it_is_delivered_not_failed(harness: Harness) -> None:
    harness.dmp.mode = "refuse_after_store"  # stored, then answered an error
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT, detail.deliveries[0].last_error
    assert detail.deliveries[0].reconciled
    assert detail.deliveries[0].entry_uuid == harness.dmp.stored[order.document_unique_id]
    assert harness.dmp.submissions == [order.document_unique_id]


async def test_a_refusal_the_dmp_cannot_confirm_is_not_called_failed_yet(harness: Harness) -> None:
    harness.dmp.mode = "refuse_find500"  # refused, and the look-up that would confirm it fails
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.RETRYING
    assert detail.deliveries[0].uncertain
    harness.dmp.mode = "refuse"  # now the DMP can say it does not hold it: failed, with its reason
    harness.clock.advance(3600)
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.FAILED
    assert detail.deliveries[0].last_error == "Le DMP refuse le document : format non conforme."


async def test_permanent_error_fails_and_retry_sends_it(harness: Harness) -> None:
    harness.dmp.mode = "refuse"
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.FAILED
    assert detail.deliveries[0].last_error == "Le DMP refuse le document : format non conforme."
    harness.dmp.mode = "ok"
    await harness.service.retry(order.id)
    await harness.run()
    assert await harness.state(order.id) is DeliveryState.SENT
    assert harness.dmp.submissions == [order.document_unique_id]
    with pytest.raises(Conflict) as caught:
        await harness.service.retry(order.id)
    assert caught.value.code == "not_failed"


async def test_timeout_after_the_dmp_stored_it_is_reconciled_not_resent(harness: Harness) -> None:
    harness.dmp.mode = "timeout_after_store"
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    assert await harness.state(order.id) is DeliveryState.RETRYING
    harness.dmp.mode = "ok"
    harness.clock.advance(600)
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT
    assert detail.deliveries[0].reconciled
    assert harness.dmp.submissions == [order.document_unique_id]  # one submission, never two
    assert harness.dmp.finds == 1


async def test_crash_while_sending_is_reconciled_at_restart(harness: Harness) -> None:
    import asyncio

    harness.dmp.entered, harness.dmp.release = asyncio.Event(), asyncio.Event()
    order, _ = await harness.create(order_body(delay=0), "lgc")
    task = asyncio.create_task(harness.run())
    await harness.dmp.entered.wait()
    assert await harness.state(order.id) is DeliveryState.SENDING  # on disk before the request leaves
    with pytest.raises(Conflict) as caught:
        await harness.service.cancel(order.id)
    assert caught.value.code == "already_sending"
    # The DMP stores it, but the agent dies before it records the answer.
    harness.dmp.stored[order.document_unique_id] = "urn:uuid:stored-before-crash"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    harness.dmp.entered = harness.dmp.release = None
    await harness.restart()
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT and detail.deliveries[0].reconciled
    assert detail.deliveries[0].entry_uuid == "urn:uuid:stored-before-crash"
    assert harness.dmp.submissions == []  # asked, not resent


async def test_duplicate_unique_id_answer_means_delivered(harness: Harness) -> None:
    order, _ = await harness.create(order_body(delay=0), "lgc")
    harness.dmp.stored[order.document_unique_id] = "urn:uuid:already"
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT and detail.deliveries[0].reconciled


async def test_author_card_absent_waits_for_the_card(harness: Harness) -> None:
    harness.cps_here = False
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.WAITING_CARD
    assert detail.deliveries[0].attempts == 0  # no request left: no attempt spent
    harness.cps_here = True
    await harness.run()
    assert await harness.state(order.id) is DeliveryState.WAITING_CARD  # looked at again a little later...
    harness.executor.cards_changed()  # ...or at once when the cards service says a CPS arrived
    await harness.run()
    await harness.run()
    assert await harness.state(order.id) is DeliveryState.SENT


async def test_retention_destroys_the_document_key_and_keeps_the_metadata(harness: Harness) -> None:
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    assert await harness.executor.erase_expired() == 0
    harness.clock.advance(31 * 86400)
    assert await harness.executor.erase_expired() == 1
    assert harness.db is not None
    assert await harness.db.read(lambda c: repo.open_payload(c, harness.service.cipher, order.id)) is None
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT and detail.content_erased_at is not None
    keys = await harness.db.read(lambda c: c.execute("SELECT count(*) FROM data_keys").fetchone()[0])
    assert keys == 0


async def test_events_follow_every_change(harness: Harness) -> None:
    subscription = harness.bus.subscribe()
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    states = []
    while (event := await subscription.get(timeout=0.01)) is not None:
        assert event.type == "order.updated" and event.data["id"] == order.id
        states.append(event.data["state"])
    assert states == ["ready", "sending", "sent"]


async def test_same_document_cannot_be_ordered_twice_for_the_dmp(harness: Harness) -> None:
    cda = make_cda()
    await harness.create(order_body(delay=60, cda=cda), "lgc")
    with pytest.raises(Conflict) as caught:
        await harness.create(order_body(delay=60, cda=cda), "lgc")
    assert caught.value.code == "document_already_ordered"


async def test_cancel_after_an_ambiguous_attempt_asks_the_dmp_first(harness: Harness) -> None:
    harness.dmp.mode = "timeout_after_store"  # it got there, the answer did not
    stored, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    assert await harness.state(stored.id) is DeliveryState.RETRYING
    with pytest.raises(Conflict) as caught:
        await harness.service.cancel(stored.id)
    assert caught.value.code == "already_sent"  # not "cancelled" on a guess
    assert await harness.state(stored.id) is DeliveryState.SENT

    harness.dmp.mode = "error500"  # failed on the DMP's side: nothing stored
    lost, _ = await harness.create(order_body(delay=0, cda=make_cda()), "lgc")
    await harness.run()
    cancelled = await harness.service.cancel(lost.id)
    assert cancelled.state is DeliveryState.CANCELLED
    harness.clock.advance(3600)
    harness.dmp.mode = "ok"
    await harness.run()
    assert lost.document_unique_id not in harness.dmp.stored


async def test_cancel_while_the_dmp_cannot_answer_is_refused_then_allowed(harness: Harness) -> None:
    from agent.errors import Unavailable

    harness.dmp.mode = "error500"
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    harness.dmp.mode = "down"
    with pytest.raises(Unavailable) as caught:
        await harness.service.cancel(order.id)
    assert caught.value.code == "cancel_unverified"
    harness.dmp.mode = "ok"
    assert (await harness.service.cancel(order.id)).state is DeliveryState.CANCELLED


async def test_cancel_of_an_order_that_never_reached_the_dmp_needs_no_answer(harness: Harness) -> None:
    harness.dmp.mode = "down"  # connection refused: the request never left
    order, _ = await harness.create(order_body(delay=0), "lgc")
    await harness.run()
    assert await harness.state(order.id) is DeliveryState.WAITING_NETWORK
    finds = harness.dmp.finds
    assert (await harness.service.cancel(order.id)).state is DeliveryState.CANCELLED
    assert harness.dmp.finds == finds


async def test_retry_all_failed_sends_every_failed_order_once(harness: Harness) -> None:
    harness.dmp.mode = "refuse"
    failed = [(await harness.create(order_body(delay=0), "lgc"))[0] for _ in range(3)]
    waiting, _ = await harness.create(order_body(delay=900), "lgc")
    await harness.run()
    assert {await harness.state(o.id) for o in failed} == {DeliveryState.FAILED}
    harness.dmp.mode = "ok"
    assert sorted(await harness.service.retry_failed("dashboard")) == sorted(o.id for o in failed)
    await harness.run()
    assert {await harness.state(o.id) for o in failed} == {DeliveryState.SENT}
    assert sorted(harness.dmp.submissions) == sorted(o.document_unique_id for o in failed)
    assert await harness.state(waiting.id) is DeliveryState.SCHEDULED  # only the failed ones move
    assert await harness.service.retry_failed("dashboard") == []


async def test_a_drain_costs_one_transaction_per_order(tmp_path: Path) -> None:
    """Each send's outcome, its trace and the claim of the next ready delivery share one transaction (one fsync
    at most; fewer when the store groups concurrent ones), instead of one to record and one to claim. One slot,
    so that the store cannot group them by chance."""
    harness = Harness(tmp_path / "drain.db", FrozenClock(), MemoryDmp(), concurrency=1)
    await harness.start()
    orders = [(await harness.create(order_body(delay=0), "lgc"))[0] for _ in range(20)]
    assert harness.db is not None
    transactions = TransactionCounter(harness.db)
    for _ in range(len(orders)):  # passes of the executor until the queue is drained
        await harness.run()
        if len(harness.dmp.stored) == len(orders):
            break
    assert {await harness.state(o.id) for o in orders} == {DeliveryState.SENT}
    await harness.stop()
    # + the release of the due orders and the first claim
    assert transactions.count <= len(orders) + 2, transactions.count
    assert len(harness.traces.events) == len(orders)  # each "sent" traced in the transaction that records it


async def test_a_running_drain_of_one_patient_costs_one_transaction_per_order(tmp_path: Path) -> None:
    """The executor's own loop, four slots, one patient: the patient's documents leave one after the other, so
    three slots stay free; a send's outcome and the claim of the next share one transaction, and that claim
    looked at every free slot, so the loop does not look again (no empty claim per order)."""
    harness = Harness(tmp_path / "drain.db", FrozenClock(), MemoryDmp(), concurrency=4)
    await harness.start()
    orders = [(await harness.create(order_body(delay=0), "lgc"))[0] for _ in range(20)]
    assert harness.db is not None
    transactions = TransactionCounter(harness.db)
    await harness.executor.start()
    for _ in range(3000):  # until drained (a bound, not a timing: the DMP answers at once)
        if len(harness.dmp.stored) == len(orders) and not harness.executor._tasks:
            break
        await asyncio.sleep(0.01)
    await harness.stop()
    assert harness.dmp.submissions == [o.document_unique_id for o in orders]  # in creation order, each once
    # + the recovery at start, the first claim, and one pass of the loop's periodic look at most.
    assert transactions.count <= len(orders) + 4, transactions.count
