"""Forwarding send-orders to the workstation that holds the author's CPS, with real agents on loopback ports:
the order goes once, the origin mirrors the holder, a cancel from the origin wins during the delay, replayed and
stale forwards are refused over the real mTLS link."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from agent.cli.wiring import DemoOptions
from agent.errors import Conflict
from agent.routing import queue_link
from agent.routing.protocol import Forward, new_nonce
from tests.integration.test_routing_pairing import init, invite, join, peers, routing, start, wait_for
from tests.support.ins import insi_gave_order_patient
from tests.support.queue import order_body

DOCTOR = "01234567897"  # the demo CPS (relais_sandbox/cards.py)


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str,
               body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    if method == "POST" and path == "/v1/orders":
        await insi_gave_order_patient(agent, body)
    async with http.request(method, f"{agent.url}{path}", json=body, headers=agent.headers()) as response:
        return response.status, await response.json()


async def _recent(agent: Any) -> list[Any]:
    """Every event the agent published so far (the bus replays its recent history to a new subscriber)."""
    subscription = agent.services.bus.subscribe(after=0)
    events = []
    while (event := await subscription.get(timeout=0.05)) is not None:
        events.append(event)
    subscription.close()
    return events


async def order_state(agent: Any, order_id: str) -> str | None:
    from agent.store import orders as repo

    order = await agent.services.db.read(lambda c: repo.load_order(c, order_id))
    return None if order is None else order.state.value


@pytest.fixture
async def practice(start_agent: Any, tmp_path: Any) -> tuple[Any, Any]:
    """"Accueil" has no card reader; "Cabinet" holds the demo doctor's CPS."""
    holder = await start(start_agent, "Cabinet", data_dir=tmp_path / "holder", demo=DemoOptions(cards="cps"))
    origin = await start(start_agent, "Accueil", data_dir=tmp_path / "origin")
    await init(holder, "Cabinet")
    await join(origin, await invite(holder), holder, "Accueil")
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is not None)
    return origin, holder


async def test_presence_says_who_holds_the_cps(practice: Any, http: aiohttp.ClientSession) -> None:
    origin, _ = practice
    status, body = await call(http, origin, "GET", "/v1/peers")
    assert status == 200
    assert body["peers"][0]["name"] == "Cabinet"
    assert body["peers"][0]["cps"]["rpps"] == DOCTOR


async def test_an_order_without_its_cps_here_goes_once_to_the_holder(practice: Any,
                                                                      http: aiohttp.ClientSession) -> None:
    origin, holder = practice
    status, created = await call(http, origin, "POST", "/v1/orders", order_body(rpps=DOCTOR, delay=3600))
    assert status == 201, created
    order_id = created["id"]
    await wait_for(lambda: peers(origin).peers["Cabinet"].reachable)
    peers(origin).wake()
    async def forwarded() -> bool:
        return await order_state(origin, order_id) == "forwarded" and await order_state(holder, order_id) is not None

    deadline = 15.0
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not await forwarded():
        assert loop.time() < end, "not forwarded"
        await asyncio.sleep(0.05)
    # The holder keeps the origin's deadline, the same document identifiers, and counts the order once.
    status, mine = await call(http, origin, "GET", f"/v1/orders/{order_id}")
    status, theirs = await call(http, holder, "GET", f"/v1/orders/{order_id}")
    assert status == 200 and theirs["state"] == "scheduled"
    assert mine["state"] == "forwarded"
    assert mine["routing"] == {"forwarded_to": "Cabinet", "remote_state": "scheduled", "acknowledged": True}
    assert theirs["routing"] == {"received_from": "Accueil"}
    # Both sides said so on their event streams; the holder's tray is told an order arrived for its CPS.
    received = [e for e in await _recent(holder) if e.type == "order.received"]
    assert [(e.data["id"], e.data["origin"]) for e in received] == [(order_id, "Accueil")]
    assert any(e.type == "order.forwarded" and e.data["id"] == order_id for e in await _recent(origin))
    assert theirs.get("document_unique_id", mine.get("document_unique_id")) == mine.get("document_unique_id")
    counts = await holder.services.db.read(
        lambda c: c.execute("SELECT count(*) FROM orders WHERE id = ?", (order_id,)).fetchone()[0])
    assert counts == 1
    # Another pass of the origin does not send it again.
    await routing(origin).tick()
    assert await order_state(origin, order_id) == "forwarded"


async def test_cancel_from_the_origin_wins_at_the_holder_during_the_delay(practice: Any,
                                                                            http: aiohttp.ClientSession) -> None:
    origin, holder = practice
    status, created = await call(http, origin, "POST", "/v1/orders", order_body(rpps=DOCTOR, delay=3600))
    order_id = created["id"]
    peers(origin).wake()
    import asyncio

    for _ in range(300):
        if await order_state(holder, order_id) == "scheduled" and await order_state(origin, order_id) == "forwarded":
            break
        await asyncio.sleep(0.05)
    status, cancelled = await call(http, origin, "POST", f"/v1/orders/{order_id}/cancel")
    assert status == 200, cancelled
    assert await order_state(holder, order_id) == "cancelled"
    assert cancelled["state"] == "cancelled"


async def test_replayed_and_stale_forwards_are_refused(practice: Any) -> None:
    origin, holder = practice
    from tests.support.queue import make_cda

    body = order_body(rpps=DOCTOR, delay=3600, cda=make_cda())
    await insi_gave_order_patient(origin, body)
    order = (await origin.services.orders.submit(body, "test")).order
    meta, payload = await origin.services.db.read(lambda c: queue_link.export(c, origin.services.cipher, order.id))
    port = peers(holder).port
    now = origin.services.clock.now()
    message = Forward(order.id, now, new_nonce(), DOCTOR, meta, payload).to_json()
    _, first = await peers(origin).call("127.0.0.1", port, "/peer/v1/forward", message)
    assert first["status"] == "stored"
    with pytest.raises(Conflict) as replay:
        await peers(origin).call("127.0.0.1", port, "/peer/v1/forward", message)
    assert replay.value.code == "replayed"
    # A fresh message for the same order is acknowledged without a second order.
    again = Forward(order.id, now, new_nonce(), DOCTOR, meta, payload).to_json()
    _, second = await peers(origin).call("127.0.0.1", port, "/peer/v1/forward", again)
    assert second["status"] == "duplicate"
    stale = Forward(order.id, now - timedelta(hours=1), new_nonce(), DOCTOR, meta, payload).to_json()
    with pytest.raises(Conflict) as old:
        await peers(origin).call("127.0.0.1", port, "/peer/v1/forward", stale)
    assert old.value.code == "stale"
    counts = await holder.services.db.read(
        lambda c: c.execute("SELECT count(*) FROM orders WHERE id = ?", (order.id,)).fetchone()[0])
    assert counts == 1


async def test_a_cancel_that_overtakes_its_forward_wins(practice: Any, http: aiohttp.ClientSession) -> None:
    origin, holder = practice
    async def no_round() -> None:  # keep the background rounds from sending it meanwhile
        return None

    routing(origin).forwarding.forward_pass = no_round  # type: ignore[method-assign]
    body = order_body(rpps=DOCTOR, delay=3600)
    await insi_gave_order_patient(origin, body)
    order = (await origin.services.orders.submit(body, "test")).order
    # The intent is on disk, the request has not reached the holder yet (a slow link, a crash in between).
    now = origin.services.clock.now().timestamp()
    assert await origin.services.db.write(lambda c: queue_link.claim(c, order.id, "Cabinet", now))
    status, cancelled = await call(http, origin, "POST", f"/v1/orders/{order.id}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled", cancelled
    # The late forward is answered "already settled" and the holder never stores the order.
    assert await routing(origin).forwarding.send_forward(order.id, "Cabinet") == "cancelled"
    assert await order_state(holder, order.id) is None
    assert await order_state(origin, order.id) == "cancelled"


async def test_cancel_is_refused_with_the_reason_when_the_holder_is_unreachable(
        practice: Any, http: aiohttp.ClientSession) -> None:
    origin, holder = practice
    status, created = await call(http, origin, "POST", "/v1/orders", order_body(rpps=DOCTOR, delay=3600))
    order_id = created["id"]
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is not None)
    peers(origin).wake()
    import asyncio

    for _ in range(300):
        if await order_state(origin, order_id) == "forwarded" and await order_state(holder, order_id):
            break
        await asyncio.sleep(0.05)
    await holder.agent.stop()
    status, problem = await call(http, origin, "POST", f"/v1/orders/{order_id}/cancel")
    assert status == 503 and problem["code"] == "peer_unreachable"
    assert "injoignable" in problem["detail"]
    assert await order_state(origin, order_id) == "forwarded"


async def _two_card_desks_and_a_reception(start_agent: Any, tmp_path: Any, http: aiohttp.ClientSession
                                          ) -> tuple[Any, Any, Any]:
    """A practice of three: "Cabinet" holds the doctor's CPS, "Salle-2" has a reader whose card was taken out,
    "Accueil" has none; all paired, and the reception already knows who holds the CPS."""
    first = await start(start_agent, "Cabinet", data_dir=tmp_path / "first", demo=DemoOptions(cards="cps"))
    second = await start(start_agent, "Salle-2", data_dir=tmp_path / "second", demo=DemoOptions(cards="cps"))
    origin = await start(start_agent, "Accueil", data_dir=tmp_path / "origin")
    status, _ = await call(http, second, "POST", "/_sandbox/cards/cps", {"inserted": False})
    assert status == 200
    await init(first, "Cabinet")
    await join(second, await invite(first), first, "Salle-2")
    await join(origin, await invite(first), first, "Accueil")
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is not None)
    return first, second, origin


async def test_pending_orders_follow_the_cps_to_another_workstation(start_agent: Any, tmp_path: Any,
                                                                     http: aiohttp.ClientSession) -> None:
    first, second, origin = await _two_card_desks_and_a_reception(start_agent, tmp_path, http)
    assert peers(origin).holder_of(DOCTOR).name == "Cabinet"  # type: ignore[union-attr]
    status, created = await call(http, origin, "POST", "/v1/orders", order_body(rpps=DOCTOR, delay=3600))
    order_id = created["id"]
    import asyncio

    for _ in range(300):
        if await order_state(first, order_id) == "scheduled":
            break
        await asyncio.sleep(0.05)
    # The doctor takes the card to the other room.
    await call(http, first, "POST", "/_sandbox/cards/cps", {"inserted": False})
    await call(http, second, "POST", "/_sandbox/cards/cps", {"inserted": True})
    for _ in range(400):
        if await order_state(second, order_id) == "scheduled" and await order_state(first, order_id) == "forwarded":
            break
        await asyncio.sleep(0.05)
    assert await order_state(second, order_id) == "scheduled"
    assert await order_state(first, order_id) == "forwarded"
    # A cancel from the origin goes to the first holder, which passes it on: it wins at the second.
    status, cancelled = await call(http, origin, "POST", f"/v1/orders/{order_id}/cancel")
    assert status == 200, cancelled
    assert await order_state(second, order_id) == "cancelled"
    assert await order_state(origin, order_id) == "cancelled"


class OffsetClock:
    """The system clock, set wrong by ``offset`` (a workstation whose time drifted)."""

    def __init__(self, offset: timedelta) -> None:
        from agent.clock import SystemClock

        self._system = SystemClock()
        self.offset = offset

    def now(self) -> Any:
        return self._system.now() + self.offset

    def monotonic(self) -> float:
        return self._system.monotonic()


async def test_a_workstation_whose_clock_drifted_is_flagged_and_its_forwards_are_not_applied(
        start_agent: Any, tmp_path: Any, http: aiohttp.ClientSession) -> None:
    holder = await start(start_agent, "Cabinet", data_dir=tmp_path / "holder", demo=DemoOptions(cards="cps"))
    origin = await start(start_agent, "Accueil", data_dir=tmp_path / "origin",
                         clock=OffsetClock(timedelta(minutes=30)))
    await init(holder, "Cabinet")
    await join(origin, await invite(holder), holder, "Accueil")
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is not None)
    status, body = await call(http, origin, "GET", "/v1/peers")
    assert status == 200 and "Horloge décalée" in (body["peers"][0]["last_error"] or "")
    _, created = await call(http, origin, "POST", "/v1/orders", order_body(rpps=DOCTOR, delay=3600))
    await routing(origin).tick()
    await routing(origin).tick()
    assert await order_state(holder, created["id"]) is None  # refused as stale, every time
    _, mine = await call(http, origin, "GET", f"/v1/orders/{created['id']}")
    assert mine["routing"]["acknowledged"] is False


async def test_a_partition_loses_nothing_and_duplicates_nothing(practice: Any, http: aiohttp.ClientSession) -> None:
    """The holder's peer link goes down while both agents keep running: orders made meanwhile wait at the
    origin, a cancel is refused rather than promised, and after the link is back everything goes once."""
    origin, holder = practice
    _, before = await call(http, origin, "POST", "/v1/orders", order_body(rpps=DOCTOR, delay=3600))
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is not None)
    import asyncio

    for _ in range(300):
        if await order_state(holder, before["id"]) == "scheduled":
            break
        await asyncio.sleep(0.05)
    link = routing(holder)
    await link.stop()  # the partition
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is None)
    _, during = await call(http, origin, "POST", "/v1/orders", order_body(rpps=DOCTOR, delay=3600))
    await routing(origin).tick()
    assert await order_state(origin, during["id"]) == "scheduled"
    status, _ = await call(http, origin, "POST", f"/v1/orders/{before['id']}/cancel")
    assert status == 503
    await link.start()  # healed (on a new port: presence tells the origin where)
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is not None)
    for _ in range(300):
        if await order_state(holder, during["id"]) == "scheduled":
            break
        await asyncio.sleep(0.05)
    status, cancelled = await call(http, origin, "POST", f"/v1/orders/{before['id']}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled"
    for _ in range(3):
        await routing(origin).tick()
    counts = await holder.services.db.read(lambda c: c.execute(
        "SELECT id, count(*) FROM orders WHERE id IN (?, ?) GROUP BY id", (before["id"], during["id"])).fetchall())
    assert sorted(tuple(r) for r in counts) == sorted([(before["id"], 1), (during["id"], 1)])
    assert await order_state(holder, before["id"]) == "cancelled"
    assert await order_state(holder, during["id"]) == "scheduled"
    assert await order_state(origin, during["id"]) == "forwarded"


async def _until(predicate: Any, tries: int = 300) -> None:
    import asyncio

    for _ in range(tries):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def _strand(origin: Any, holder: Any, http: aiohttp.ClientSession) -> tuple[str, Any]:
    """An order forwarded to the holder, whose acknowledgement is lost, then the holder's link goes down: the
    holder keeps its copy, the origin does not know it has it. Returns the order id and the holder's link."""
    _, created = await call(http, origin, "POST", "/v1/orders", order_body(rpps=DOCTOR, delay=3600))
    order_id = created["id"]
    peers(origin).wake()

    async def forwarded() -> bool:
        return await order_state(holder, order_id) == "scheduled" and await order_state(origin, order_id) == "forwarded"

    await _until(forwarded)
    link = routing(holder)
    await link.stop()  # the holder's peer link goes down (the workstation is switched off, say)
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is None)
    await origin.services.db.write(lambda c: c.execute(  # as if its acknowledgement had never come back
        "UPDATE routing_outbound SET state = 'forwarding' WHERE order_id = ?", (order_id,)))
    return order_id, link


async def test_cancel_of_a_forward_never_acknowledged_works_while_the_holder_is_away(
        practice: Any, http: aiohttp.ClientSession) -> None:
    origin, holder = practice
    order_id, link = await _strand(origin, holder, http)
    status, cancelled = await call(http, origin, "POST", f"/v1/orders/{order_id}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled", cancelled
    # The holder comes back: it is told to drop the copy it kept, during its delay.
    await link.start()
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is not None)

    async def dropped() -> bool:
        await routing(origin).tick()
        return await order_state(holder, order_id) == "cancelled"

    await _until(dropped, tries=100)
    assert await order_state(origin, order_id) == "cancelled"
    assert await origin.services.db.read(lambda c: c.execute("SELECT count(*) FROM routing_withdrawals")
                                          .fetchone()[0]) == 0


async def test_a_forward_never_acknowledged_comes_back_when_the_cps_does(
        start_agent: Any, tmp_path: Any, http: aiohttp.ClientSession) -> None:
    holder = await start(start_agent, "Cabinet", data_dir=tmp_path / "holder", demo=DemoOptions(cards="cps"))
    origin = await start(start_agent, "Accueil", data_dir=tmp_path / "origin", demo=DemoOptions(cards="cps"))
    status, _ = await call(http, origin, "POST", "/_sandbox/cards/cps", {"inserted": False})
    assert status == 200
    await init(holder, "Cabinet")
    await join(origin, await invite(holder), holder, "Accueil")
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is not None)
    order_id, link = await _strand(origin, holder, http)
    # The doctor takes the card to the origin's reader: the order is taken back and waits here.
    await call(http, origin, "POST", "/_sandbox/cards/cps", {"inserted": True})

    async def back() -> bool:
        await routing(origin).forwarding.forward_pass()
        return await order_state(origin, order_id) in ("scheduled", "waiting_card")

    await _until(back, tries=100)
    _, mine = await call(http, origin, "GET", f"/v1/orders/{order_id}")
    assert "routing" not in mine or mine["routing"] is None or "forwarded_to" not in mine["routing"], mine
    # The silent holder, back, drops its copy: the order leaves from one workstation only.
    await link.start()
    await wait_for(lambda: any(p.reachable for p in peers(origin).peers.values()))

    async def dropped() -> bool:
        await routing(origin).tick()
        return await order_state(holder, order_id) == "cancelled"

    await _until(dropped, tries=100)
    assert await order_state(origin, order_id) in ("scheduled", "waiting_card")


@pytest.fixture
async def quiet_origin(start_agent: Any, tmp_path: Any) -> tuple[Any, Any]:
    """A practice whose origin's clock runs 30 minutes ahead: its own forwards are refused as stale, so a test
    sends its crafted forwards itself (dated by the real clock), with no automatic forward racing them."""
    holder = await start(start_agent, "Cabinet", data_dir=tmp_path / "holder", demo=DemoOptions(cards="cps"))
    origin = await start(start_agent, "Accueil", data_dir=tmp_path / "origin",
                         clock=OffsetClock(timedelta(minutes=30)))
    await init(holder, "Cabinet")
    await join(origin, await invite(holder), holder, "Accueil")
    await wait_for(lambda: peers(origin).holder_of(DOCTOR) is not None)
    return origin, holder


async def _forward_as_origin(origin: Any, holder: Any, meta: dict[str, Any], payload: bytes, order_id: str,
                             author: str = DOCTOR) -> dict[str, Any]:
    """Send a forward over the real mTLS peer link with the origin's practice certificate."""
    from datetime import UTC, datetime

    message = Forward(order_id, datetime.now(UTC), new_nonce(), author, meta, payload).to_json()
    _, answer = await peers(origin).call("127.0.0.1", peers(holder).port, "/peer/v1/forward", message)
    return answer


async def _exported(origin: Any, **body: Any) -> tuple[str, dict[str, Any], bytes]:
    from tests.support.queue import make_cda

    request = order_body(rpps=DOCTOR, delay=3600, cda=make_cda(), **body)
    await insi_gave_order_patient(origin, request)  # the origin obtained the INS through INSi (EX_GEN-1530)
    order = (await origin.services.orders.submit(request, "test")).order
    meta, payload = await origin.services.db.read(lambda c: queue_link.export(c, origin.services.cipher, order.id))
    return order.id, meta, payload


async def test_the_holder_refuses_a_forward_the_patient_opposed_there(quiet_origin: Any,
                                                                      http: aiohttp.ClientSession) -> None:
    from agent.errors import InvalidInput

    origin, holder = quiet_origin
    order_id, meta, payload = await _exported(origin)
    consent = {"dmp_consultation": "granted", "dmp_feeding": "opposition", "informed": True}
    async with http.put(f"{holder.url}/v1/patients/{meta['ins']}/consent", json=consent,
                        headers=holder.headers()) as response:
        assert response.status == 200, await response.text()  # recorded on the holder only
    with pytest.raises(InvalidInput) as refused:
        await _forward_as_origin(origin, holder, meta, payload, order_id)
    assert refused.value.code == "feeding_opposed"
    assert await order_state(holder, order_id) is None


async def test_the_holder_refuses_a_forward_of_an_unqualified_identity(quiet_origin: Any) -> None:
    import json

    from agent.errors import InvalidInput

    origin, holder = quiet_origin
    order_id, meta, payload = await _exported(origin)
    content = json.loads(payload)
    content["patient"]["identity_status"] = "VALI"  # what a member could send, bypassing its own checks
    with pytest.raises(InvalidInput) as refused:
        await _forward_as_origin(origin, holder, {**meta, "identity_status": "VALI"},
                                 json.dumps(content).encode(), order_id)
    assert refused.value.code == "ins_not_qualified"
    assert await order_state(holder, order_id) is None


async def test_the_holder_refuses_a_forward_whose_author_is_not_the_documents(quiet_origin: Any) -> None:
    from agent.errors import InvalidInput

    origin, holder = quiet_origin
    other = "10003456789"  # an order of another doctor, sent as if it were the CPS holder's own
    order_id, meta, payload = await _exported(origin)
    for forged_meta, author in (({**meta, "author_rpps": other}, DOCTOR), (meta, other)):
        with pytest.raises(InvalidInput) as refused:
            await _forward_as_origin(origin, holder, forged_meta, payload, order_id, author)
        assert refused.value.code == "forward_mismatch"
    assert await order_state(holder, order_id) is None


async def test_the_holder_keeps_its_own_cancellation_delay_whatever_the_origin_says(quiet_origin: Any) -> None:
    from datetime import UTC, datetime

    origin, holder = quiet_origin
    order_id, meta, payload = await _exported(origin)
    now = datetime.now(UTC).timestamp()
    answer = await _forward_as_origin(origin, holder, {**meta, "send_at": now}, payload, order_id)  # "zero delay"
    assert answer["status"] == "stored"
    from agent.store import orders as repo

    stored = await holder.services.db.read(lambda c: repo.load_order(c, order_id))
    assert stored is not None and stored.state.value == "scheduled"
    minimum = holder.services.config.practice.forwarded_min_delay_seconds
    assert minimum > 0
    assert stored.send_at >= now + minimum - 1  # the doctor holding the CPS can still cancel it


async def test_a_forward_never_acknowledged_goes_to_another_holder_of_the_cps(
        start_agent: Any, tmp_path: Any, http: aiohttp.ClientSession) -> None:
    first, second, origin = await _two_card_desks_and_a_reception(start_agent, tmp_path, http)
    order_id, link = await _strand(origin, first, http)
    # The doctor now works in the other room: the order, never acknowledged by "Cabinet", goes there.
    await call(http, second, "POST", "/_sandbox/cards/cps", {"inserted": True})

    async def moved() -> bool:
        await routing(origin).forwarding.forward_pass()
        return await order_state(second, order_id) == "scheduled" and await order_state(origin, order_id) == "forwarded"

    await _until(moved, tries=200)
    _, mine = await call(http, origin, "GET", f"/v1/orders/{order_id}")
    assert mine["routing"]["forwarded_to"] == "Salle-2"
    await link.start()  # "Cabinet" comes back: its stale copy is dropped, the order leaves from "Salle-2" only

    async def dropped() -> bool:
        await routing(origin).tick()
        return await order_state(first, order_id) == "cancelled"

    await _until(dropped, tries=200)
    assert await order_state(second, order_id) == "scheduled"
