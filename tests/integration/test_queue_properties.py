"""Property: whatever happens (delays, cancels, send-now, DMP outages, 500s, timeouts after storing, restarts,
clock jumps), a cancelled order is never sent and no document reaches the DMP twice; once the DMP is healthy
and time has passed, every order that was not cancelled is sent.

Hypothesis draws the sequences; each runs the real executor over a real SQLite file with ``MemoryDmp``.
"""

from __future__ import annotations

import asyncio
import collections
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.clock import FrozenClock
from agent.domain.orders import DeliveryState
from agent.errors import Conflict, Unavailable
from tests.support.queue import Harness, MemoryDmp, make_cda, order_body

Step = tuple[str, int]
STEPS = st.lists(st.tuples(
    st.sampled_from(["create", "create", "cancel", "send_now", "run", "run", "advance", "mode", "mode", "restart",
                     "retry"]),
    st.integers(min_value=0, max_value=30)), min_size=1, max_size=25)
MODES = ["ok", "down", "error500", "timeout_after_store", "refuse"]


async def play(steps: list[Step], folder: Path) -> None:
    dmp = MemoryDmp()
    harness = Harness(folder / "relais.db", FrozenClock(), dmp, max_attempts=3, probe_interval_seconds=10.0)
    await harness.start()
    orders: list[str] = []
    cancelled: set[str] = set()
    try:
        for action, n in steps:
            if action == "create":
                order, _ = await harness.create(order_body(delay=n % 3 * 60, cda=make_cda()), "lgc")
                orders.append(order.id)
            elif action in ("cancel", "send_now", "retry") and orders:
                order_id = orders[n % len(orders)]
                try:
                    if action == "cancel":
                        await harness.service.cancel(order_id)
                        cancelled.add(order_id)
                    elif action == "send_now":
                        await harness.service.send_now(order_id)
                    else:
                        await harness.service.retry(order_id)
                except (Conflict, Unavailable):
                    pass  # refused with its reason: already left, or cannot be verified right now
            elif action == "run":
                await harness.run()
            elif action == "advance":
                harness.clock.advance(n)
            elif action == "mode":
                dmp.mode = MODES[n % len(MODES)]
            elif action == "restart":
                await harness.restart()
        unique = {}
        for order_id in orders:
            detail = await harness.service.get(order_id)
            unique[order_id] = detail.document_unique_id
        # Invariants at any point: nothing cancelled ever left; nothing reached the DMP twice.
        counts = collections.Counter(dmp.submissions)
        assert all(n == 1 for n in counts.values()), counts
        assert not {unique[o] for o in cancelled} & set(dmp.stored)
        # Liveness: a healthy DMP, time, a retry of whatever failed, and everything else is sent.
        dmp.mode = "ok"
        for _ in range(4):
            harness.clock.advance(4000)
            for order_id in orders:
                if (await harness.service.get(order_id)).state is DeliveryState.FAILED:
                    await harness.service.retry(order_id)
            await harness.run()
            await harness.run()
        for order_id in orders:
            state = (await harness.service.get(order_id)).state
            assert state is (DeliveryState.CANCELLED if order_id in cancelled else DeliveryState.SENT), state
        assert all(n == 1 for n in collections.Counter(dmp.submissions).values())
    finally:
        await harness.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
@example(steps=[("create", 0), ("mode", 3), ("run", 0), ("cancel", 0)])  # cancel after a timeout-after-store
# A timeout after the store, then a refused connection: the refusal must not clear the earlier doubt.
@example(steps=[("create", 0), ("mode", 3), ("run", 0), ("mode", 1), ("send_now", 0), ("run", 0), ("cancel", 0)])
@example(steps=[("create", 0), ("mode", 3), ("run", 0), ("restart", 0), ("cancel", 0), ("run", 0)])
@example(steps=[("create", 0), ("mode", 1), ("run", 0), ("cancel", 0), ("mode", 0), ("advance", 30), ("run", 0)])
@example(steps=[("create", 3), ("advance", 30), ("mode", 2), ("run", 0), ("advance", 30), ("run", 0),
                ("cancel", 0), ("mode", 0), ("run", 0)])
def test_never_cancelled_then_sent_never_twice_and_eventually_sent(steps: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(play(steps, Path(folder)))
