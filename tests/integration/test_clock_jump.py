"""The wall clock set forward or back while the agent runs (issue 23 #15): seen (elapsed time against wall time),
said (log, `clock.jumped` event, `/v1/status` clock.last_jump) and without effect on running delays: a forward
jump no longer cuts the doctor's cancellation delay, a set-back no longer holds sends an hour."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from agent.clock import ClockWatch, FrozenClock
from agent.domain.orders import DeliveryState
from tests.support.queue import Harness, MemoryDmp, order_body

S = DeliveryState


async def test_a_forward_jump_does_not_cut_the_cancellation_delay(tmp_path: Path) -> None:
    # Before: the clock set forward one hour released at once an order whose 15-minute delay had just begun.
    clock = FrozenClock()
    dmp = MemoryDmp()
    h = Harness(tmp_path / "relais.db", clock, dmp)
    service = await h.start()
    events = h.bus.subscribe()
    try:
        order, _ = await h.create(order_body(delay=900), "lgc")
        clock.advance(60)
        await h.run()
        clock.set(clock.now() + timedelta(hours=1))  # someone sets the clock forward
        await h.run()
        assert await h.state(order.id) is S.SCHEDULED and dmp.submissions == []
        jump = h.executor.clock_watch.last
        assert jump is not None and 3500 < jump.seconds < 3700 and "avancée" in jump.message
        seen = await events.get(timeout=1)
        while seen is not None and seen.type != "clock.jumped":
            seen = await events.get(timeout=1)
        assert seen is not None and seen.data["seconds"] > 3500
        clock.advance(900 - 60 - 1)  # the doctor still has a second to cancel
        await h.run()
        assert await h.state(order.id) is S.SCHEDULED
        clock.advance(1)
        await h.run()
        assert await h.state(order.id) is S.SENT and len(dmp.submissions) == 1
        assert service is h.service
    finally:
        events.close()
        await h.stop()


async def test_a_clock_set_back_does_not_hold_sends_an_hour(tmp_path: Path) -> None:
    clock = FrozenClock()
    dmp = MemoryDmp()
    h = Harness(tmp_path / "relais.db", clock, dmp)
    await h.start()
    try:
        order, _ = await h.create(order_body(delay=900), "lgc")
        clock.set(clock.now() - timedelta(hours=1))  # daylight saving done by hand, or a wrong NTP server
        await h.run()
        assert h.executor.clock_watch.last is not None and "reculée" in h.executor.clock_watch.last.message
        clock.advance(899)
        await h.run()
        assert await h.state(order.id) is S.SCHEDULED
        clock.advance(1)
        await h.run()
        assert await h.state(order.id) is S.SENT  # before: an hour later
        detail = await h.service.get(order.id)
        assert detail.send_at <= clock.now().timestamp()
    finally:
        await h.stop()


def test_a_small_drift_or_a_sleep_counted_as_elapsed_is_no_jump() -> None:
    clock = FrozenClock()
    watch = ClockWatch(clock, threshold=60)
    clock.advance(3600)  # elapsed and wall move together (a long run, or a sleep counted by CLOCK_BOOTTIME)
    assert watch.check() is None
    clock.set(clock.now() + timedelta(seconds=5))  # an NTP step of a few seconds
    assert watch.check() is None and watch.last is None


async def test_status_reports_the_last_jump(start_agent: Any, http: aiohttp.ClientSession) -> None:
    clock = FrozenClock()
    agent = await start_agent(clock=clock)
    async with http.get(agent.url + "/v1/status", headers=agent.headers()) as response:
        assert (await response.json())["clock"] == {"last_jump": None}
    clock.set(clock.now() + timedelta(hours=2))
    agent.services.orders.executor.wake()
    for _ in range(300):  # the executor's next pass sees it; the bound only stops a hang
        async with http.get(agent.url + "/v1/status", headers=agent.headers()) as response:
            jump = (await response.json())["clock"]["last_jump"]
        if jump is not None:
            break
        await asyncio.sleep(0.05)
    assert jump is not None and jump["seconds"] > 7000 and "horloge" in jump["message"].lower()
