"""Pausing sending from the tray or the dashboard: nothing leaves, delays run, the choice survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from agent.cli.wiring import DemoOptions
from relais_sandbox.identities import PAT_TROIS
from tests.integration.test_queue_demo import demo_cda
from tests.support.ins import obtain_ins
from tests.support.queue import order_body


async def _call(http: aiohttp.ClientSession, agent: Any, method: str, path: str, body: Any = None) -> Any:
    async with http.request(method, agent.url + path, json=body, headers=agent.headers()) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


async def _wait_state(http: aiohttp.ClientSession, agent: Any, order_id: str, wanted: str) -> str:
    state = ""
    for _ in range(150):
        state = (await _call(http, agent, "GET", f"/v1/orders/{order_id}"))["state"]
        if state == wanted:
            break
        await asyncio.sleep(0.1)
    return state


async def test_paused_queue_sends_nothing_until_resumed_even_across_a_restart(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path, make_config: Any) -> None:
    options = {"demo": DemoOptions(cards="both", tray=False), "dmp": {"reference_dir": str(reference_dir)}}
    agent = await start_agent(**options)
    rpps = (await _call(http, agent, "GET", "/v1/cards"))["cps"]["holder"]["rpps"]
    await _call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert (await _call(http, agent, "POST", "/v1/queue/pause")) == {"paused": True}
    assert (await _call(http, agent, "GET", "/v1/status"))["queue"]["paused"] is True
    await obtain_ins(http, agent, PAT_TROIS)  # the DMP takes only an INS obtained through INSi
    body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=rpps, delay=0)
    order = await _call(http, agent, "POST", "/v1/orders", body)
    # Its delay is over, yet it does not leave: it waits, ready, and can still be looked at (or cancelled).
    assert await _wait_state(http, agent, order["id"], "ready") == "ready"
    await asyncio.sleep(1.0)
    assert (await _call(http, agent, "GET", f"/v1/orders/{order['id']}"))["state"] == "ready"

    # A restart on the same data dir stays paused.
    await agent.agent.stop()
    again = await start_agent(**options)
    assert (await _call(http, again, "GET", "/v1/status"))["queue"]["paused"] is True
    await _call(http, again, "POST", "/v1/cps/login", {"pin": "1234"})
    await asyncio.sleep(1.0)
    assert (await _call(http, again, "GET", f"/v1/orders/{order['id']}"))["state"] == "ready"

    assert (await _call(http, again, "POST", "/v1/queue/resume")) == {"paused": False}
    assert await _wait_state(http, again, order["id"], "sent") == "sent"
