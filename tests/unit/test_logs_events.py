"""Logs never carry a NIR; the event bus fans out without blocking and replays after reconnection."""

from __future__ import annotations

import logging

from agent.events import EventBus
from agent.logs import TRAFFIC, flush_logs, setup_logging


def test_nir_like_numbers_are_masked_in_every_log_line(tmp_path, capsys):
    setup_logging("INFO", tmp_path)
    log = logging.getLogger("relais.test")
    log.info("patient %s found", "279035121518989")
    log.warning("corsica 1 84 12 2A 123 456 78 and key-less 2790351215189")
    flush_logs()  # written by the logging thread, off the caller's path
    text = (tmp_path / "relais.log").read_text() + capsys.readouterr().err
    assert "279035121518989" not in text and "2790351215189" not in text
    assert "2A 123 456" not in text
    assert text.count("[NIR masqué]") >= 4  # twice per handler at least


def test_traffic_level_warns_when_enabled(tmp_path, capsys):
    setup_logging("TRAFFIC", tmp_path)
    assert logging.getLogger("relais").level == TRAFFIC
    assert "TRAFFIC" in capsys.readouterr().err


async def test_slow_subscriber_loses_oldest_and_is_told():
    bus = EventBus()
    sub = bus.subscribe(maxsize=3)
    for i in range(5):
        bus.publish("order.updated", n=i)
    got = [await sub.get(timeout=1) for _ in range(3)]
    assert [e.data["n"] for e in got if e] == [2, 3, 4]
    assert sub.lagged
    sub.close()
    assert bus.subscriber_count == 0


async def test_replay_after_an_id():
    bus = EventBus()
    first = bus.publish("a")
    bus.publish("b")
    sub = bus.subscribe(after=first.id)
    event = await sub.get(timeout=1)
    assert event is not None and event.type == "b"
    assert await sub.get(timeout=0.05) is None
