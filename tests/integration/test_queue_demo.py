"""The whole agent in demo mode: the executor's own loop sends a deferred order when its delay ends, after the
CPS PIN is entered, and the LGC follows each step on `/v1/events` (order.updated, ids and states only)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from lxml import etree

from agent.cli.wiring import DemoOptions
from relais_sandbox.dmp import reidentify
from relais_sandbox.identities import PAT_TROIS
from tests.support.ins import obtain_ins
from tests.support.queue import order_body


def demo_cda(reference: Path) -> bytes:
    example = (reference / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    p = PAT_TROIS
    cda, _ = reidentify(example, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                        f"2.25.{uuid.uuid4().int}")
    return etree.tostring(etree.fromstring(cda), xml_declaration=True, encoding="UTF-8")


async def events(http: aiohttp.ClientSession, agent: Any, out: list[dict[str, Any]]) -> None:
    async with http.get(agent.url + "/v1/events", headers=agent.headers()) as response:
        kind = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "order.updated":
                out.append(json.loads(line[6:]))


async def test_deferred_order_waits_for_the_pin_then_is_sent_and_followed_on_events(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    agent = await start_agent(demo=DemoOptions(cards="both", tray=False), dmp={"reference_dir": str(reference_dir)})
    seen: list[dict[str, Any]] = []
    listener = asyncio.create_task(events(http, agent, seen))
    async with http.get(agent.url + "/v1/cards", headers=agent.headers()) as response:
        rpps = (await response.json())["cps"]["holder"]["rpps"]
    # The DMP takes only an INS obtained through INSi: the doctor searched it (PIN entered), then left.
    for path, payload in (("/v1/cps/login", {"pin": "1234"}), ("/v1/cps/logout", {})):
        async with http.post(agent.url + path, json=payload, headers=agent.headers()) as response:
            assert response.status == 200, await response.text()
        if path == "/v1/cps/login":
            await obtain_ins(http, agent, PAT_TROIS)
    body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=rpps, delay=1)
    async with http.post(agent.url + "/v1/orders", json=body, headers=agent.headers()) as response:
        order = await response.json()
        assert response.status == 201, order

    async def state() -> dict[str, Any]:
        async with http.get(f"{agent.url}/v1/orders/{order['id']}", headers=agent.headers()) as r:
            return dict(await r.json())

    for _ in range(100):  # the delay ends; the PIN is not entered yet: the order waits for it
        detail = await state()
        if detail["state"] == "waiting_card":
            break
        await asyncio.sleep(0.1)
    assert detail["state"] == "waiting_card"
    assert "code PIN" in detail["deliveries"][0]["last_error"]["message"]
    async with http.post(agent.url + "/v1/cps/login", json={"pin": "1234"}, headers=agent.headers()) as response:
        assert response.status == 200
    for _ in range(100):
        detail = await state()
        if detail["state"] == "sent":
            break
        await asyncio.sleep(0.1)
    assert detail["state"] == "sent", detail
    await asyncio.sleep(0.2)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    mine = [e for e in seen if e["id"] == order["id"]]
    assert mine[0]["state"] == "scheduled"
    assert {"waiting_card", "sending", "sent"} <= {e["state"] for e in mine}
    assert mine[-1]["state"] == "sent" and mine[-1]["deliveries"] == [{"destination": "dmp", "state": "sent"}]
    assert not any("ins" in e or "patient" in e for e in mine)  # no patient data on the event stream


async def test_retry_all_failed_route_after_the_dmp_failed(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    agent = await start_agent(demo=DemoOptions(cards="both", tray=False), dmp={"reference_dir": str(reference_dir)},
                              queue={"max_attempts": 1, "backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.1})
    async with http.post(agent.url + "/v1/cps/login", json={"pin": "1234"}, headers=agent.headers()) as response:
        assert response.status == 200
    async with http.get(agent.url + "/v1/cards", headers=agent.headers()) as response:
        rpps = (await response.json())["cps"]["holder"]["rpps"]
    async with http.post(agent.url + "/_sandbox/dmp/faults", json={"mode": "error500"},
                         headers=agent.headers()) as response:
        assert response.status == 200
    await obtain_ins(http, agent, PAT_TROIS)  # the DMP takes only an INS obtained through INSi (EX_GEN-1530)
    body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=rpps, delay=0)
    async with http.post(agent.url + "/v1/orders", json=body, headers=agent.headers()) as response:
        order = await response.json()
        assert response.status == 201, order

    async def state() -> str:
        async with http.get(f"{agent.url}/v1/orders/{order['id']}", headers=agent.headers()) as r:
            return str((await r.json())["state"])

    for _ in range(200):
        if await state() == "failed":  # one attempt allowed by this configuration
            break
        await asyncio.sleep(0.05)
    assert await state() == "failed"
    async with http.post(agent.url + "/_sandbox/dmp/faults", json={"mode": "ok"}, headers=agent.headers()) as r:
        assert r.status == 200
    async with http.post(agent.url + "/v1/orders/retry-failed", headers=agent.headers()) as response:
        assert response.status == 200
        assert await response.json() == {"retried": 1, "orders": [order["id"]]}
    for _ in range(200):
        if await state() == "sent":
            break
        await asyncio.sleep(0.05)
    assert await state() == "sent"


async def test_orders_made_while_the_dmp_was_down_reach_it_in_creation_order(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    """Issue 21 #6, end to end: the whole agent (four slots) and the DMP simulator over its socket. Orders made
    during an outage (`POST /_sandbox/dmp/faults {"mode": "down"}`) reach the DMP in the order they were created,
    as its call log (`GET /_sandbox/dmp/calls`) shows."""
    agent = await start_agent(demo=DemoOptions(cards="both", tray=False), dmp={"reference_dir": str(reference_dir)},
                              queue={"probe_interval_seconds": 0.2, "backoff_base_seconds": 0.05,
                                     "backoff_cap_seconds": 0.2})

    async def call(method: str, path: str, payload: Any = None) -> Any:
        async with http.request(method, agent.url + path, json=payload, headers=agent.headers()) as response:
            assert response.status in (200, 201), await response.text()
            return await response.json()

    await call("POST", "/v1/cps/login", {"pin": "1234"})
    rpps = (await call("GET", "/v1/cards"))["cps"]["holder"]["rpps"]
    await obtain_ins(http, agent, PAT_TROIS)
    await call("POST", "/_sandbox/dmp/faults", {"mode": "down"})
    created = []
    for _ in range(6):
        body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=rpps, delay=0)
        created.append(await call("POST", "/v1/orders", body))

    async def states() -> set[str]:
        return {(await call("GET", f"/v1/orders/{o['id']}"))["state"] for o in created}

    for _ in range(200):  # the DMP found unreachable: they wait for it (the probe releases them, they wait again)
        if "waiting_network" in await states():
            break
        await asyncio.sleep(0.05)
    assert await states() <= {"waiting_network", "ready"}
    await call("POST", "/_sandbox/dmp/faults", {"mode": "ok"})
    for _ in range(400):
        if await states() == {"sent"}:
            break
        await asyncio.sleep(0.05)
    assert await states() == {"sent"}
    feeds = [base64.b64decode(c["request_base64"]) for c in (await call("GET", "/_sandbox/dmp/calls"))["items"]
             if c["transaction"] == "TD2.1"]
    received = [next(o["document"]["unique_id"] for o in created if o["document"]["unique_id"].encode() in raw)
                for raw in feeds]
    assert received == [o["document"]["unique_id"] for o in created]
