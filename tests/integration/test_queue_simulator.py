"""The queue against the DMP simulator over its real socket (mutual TLS, SOAP/MTOM, XDS.b validation).

The DMP client is the real one (``agent.dmp``), adapted by the composition root's ``DmpDelivery``; faults are
injected in the simulator as `POST /_sandbox/dmp/faults` would. The simulator's own registry says how many
times each document arrived: exactly once, whatever happened on the way.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from agent.clock import FrozenClock
from agent.dmp.gateway import DmpDelivery
from agent.dmp.models import Professional
from agent.domain.orders import DeliveryState
from relais_sandbox.dmp import DmpSimulator, reidentify
from relais_sandbox.host import FaultMode
from relais_sandbox.identities import PAT_TROIS
from tests.support.dmp import running_sandbox
from tests.support.documents import written_by
from tests.support.queue import Harness, order_body

DR_DEMO = Professional(rpps="10001234567", family_name="DEMO", given_name="Alice")


class Simulated:
    def __init__(self, sim: DmpSimulator, reference: Path) -> None:
        self.sim = sim
        self.reference = reference

    def cda(self) -> bytes:
        data = (self.reference / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
        p = PAT_TROIS
        cda, _ = reidentify(data, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                            f"2.25.{uuid.uuid4().int}")
        return written_by(cda, DR_DEMO.national_id)

    def body(self, **kw: Any) -> dict[str, Any]:
        return order_body(cda=self.cda(), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=DR_DEMO.rpps, **kw)

    def received(self) -> list[str]:
        """Document uniqueIds in the order the simulator stored them (one per accepted submission)."""
        assert self.sim.registry is not None
        return [d["unique_id"] for s in self.sim.registry.submissions() for d in s["documents"]]

    def fault(self, mode: FaultMode, **settings: float | str) -> None:
        self.sim.faults.mode = mode
        for key, value in settings.items():
            setattr(self.sim.faults, key, value)


@pytest.fixture
async def env(tmp_path: Path, reference_dir: Path) -> AsyncIterator[tuple[Harness, Simulated]]:
    async with running_sandbox(tmp_path, reference_dir, total_timeout=3.0) as sandbox:
        gateway = DmpDelivery(sandbox.client, lambda: sandbox.doctor)
        harness = Harness(tmp_path / "relais.db", FrozenClock(datetime.now(UTC)), gateway, allow_test_oids=True,
                          concurrency=1, attempt_timeout_seconds=10.0)
        await harness.start()
        yield harness, Simulated(sandbox.sim, reference_dir)
        await harness.stop()


async def test_sent_once_with_its_fixed_ids(env: tuple[Harness, Simulated]) -> None:
    harness, dmp = env
    order, _ = await harness.create(dmp.body(delay=0), "lgc")
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT, detail.deliveries[0].last_error
    assert dmp.received() == [order.document_unique_id]
    assert dmp.sim.registry is not None
    assert [s["submission_set_unique_id"] for s in dmp.sim.registry.submissions()] == [
        order.submission_set_unique_id]
    assert detail.deliveries[0].entry_uuid == dmp.sim.registry.by_unique_id(order.document_unique_id)[0].entry_uuid


async def test_cancel_during_the_delay_across_restarts_never_reaches_the_dmp(env: tuple[Harness, Simulated]) -> None:
    harness, dmp = env
    order, _ = await harness.create(dmp.body(delay=300), "lgc")
    await harness.restart()
    await harness.service.cancel(order.id)
    await harness.restart()
    harness.clock.advance(3600)
    await harness.run()
    assert dmp.received() == []


async def test_dmp_down_then_back_sends_each_once_in_creation_order(env: tuple[Harness, Simulated]) -> None:
    harness, dmp = env
    dmp.fault(FaultMode.DOWN)
    orders = [(await harness.create(dmp.body(delay=0), "lgc"))[0] for _ in range(4)]
    await harness.run()
    assert {(await harness.service.get(o.id)).state for o in orders} == {DeliveryState.WAITING_NETWORK}
    harness.clock.advance(31)
    await harness.run()  # the probe: still down
    assert dmp.received() == []
    dmp.fault(FaultMode.OK)
    harness.clock.advance(31)
    for _ in range(len(orders) + 1):
        await harness.run()
    assert dmp.received() == [o.document_unique_id for o in orders]
    assert {(await harness.service.get(o.id)).state for o in orders} == {DeliveryState.SENT}


async def test_bursts_of_500_are_retried_with_backoff_then_sent(env: tuple[Harness, Simulated]) -> None:
    harness, dmp = env
    dmp.fault(FaultMode.ERROR500)
    order, _ = await harness.create(dmp.body(delay=0), "lgc")
    for _ in range(3):
        await harness.run()
        detail = await harness.service.get(order.id)
        assert detail.state is DeliveryState.RETRYING
        assert detail.deliveries[0].due_at is not None and detail.deliveries[0].due_at > harness.clock.now().timestamp()
        harness.clock.advance(400)
    dmp.fault(FaultMode.OK)
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT
    assert detail.deliveries[0].attempts == 4
    assert dmp.received() == [order.document_unique_id]


async def test_unreadable_answer_is_retried_then_sent_once(env: tuple[Harness, Simulated]) -> None:
    harness, dmp = env
    dmp.fault(FaultMode.MALFORMED)
    order, _ = await harness.create(dmp.body(delay=0), "lgc")
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.RETRYING  # an unreadable answer is no refusal: tried again, not failed
    message = detail.deliveries[0].last_error or ""
    assert "DMP" in message and "illisible" in message  # a French reason the doctor can read
    dmp.fault(FaultMode.OK)
    harness.clock.advance(3600)
    await harness.run()
    assert (await harness.service.get(order.id)).state is DeliveryState.SENT
    assert dmp.received() == [order.document_unique_id]


async def test_http_500_mode_gets_a_few_requests_a_minute_not_hundreds(env: tuple[Harness, Simulated]) -> None:
    harness, dmp = env
    dmp.fault(FaultMode.ERROR500)
    orders = [(await harness.create(dmp.body(delay=0), "lgc"))[0] for _ in range(20)]
    before = dmp.sim.faults.requests
    for _ in range(60):  # one minute of the agent's time, a pass every second
        await harness.run()
        harness.clock.advance(1)
    assert dmp.sim.faults.requests - before <= 6
    dmp.fault(FaultMode.OK)
    for _ in range(30):
        harness.clock.advance(600)
        await harness.run()
    assert {(await harness.service.get(o.id)).state for o in orders} == {DeliveryState.SENT}
    assert sorted(dmp.received()) == sorted(o.document_unique_id for o in orders)


async def test_document_the_dmp_cannot_take_fails_with_the_reason_and_is_not_sent(
        env: tuple[Harness, Simulated]) -> None:
    harness, dmp = env
    body = dmp.body(delay=0)
    root = etree.fromstring(base64.b64decode(body["document"]["cda_base64"]))
    code = root.find("{urn:hl7-org:v3}code")
    assert code is not None
    code.set("code", "00000-0")  # a type of document outside the DMP's value sets
    body["document"]["cda_base64"] = base64.b64encode(etree.tostring(root)).decode()
    order, _ = await harness.create(body, "lgc")
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.FAILED
    assert detail.deliveries[0].last_error == "Métadonnées XDS hors des jeux de valeurs du DMP."
    assert dmp.received() == []


async def test_timeout_after_the_simulator_stored_it_is_reconciled_not_sent_twice(
        env: tuple[Harness, Simulated]) -> None:
    harness, dmp = env
    # The feed times out after the DMP stored it; the TD0.2 before it (CNDA MEMENTO) answers normally.
    dmp.fault(FaultMode.TIMEOUT, timeout_seconds=5.0, only_path="/repository")
    order, _ = await harness.create(dmp.body(delay=0), "lgc")
    await harness.run()
    assert (await harness.service.get(order.id)).state is DeliveryState.RETRYING
    assert dmp.received() == [order.document_unique_id]  # it got there; the answer did not
    dmp.fault(FaultMode.OK)
    harness.clock.advance(400)
    await harness.run()
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT and detail.deliveries[0].reconciled
    assert dmp.received() == [order.document_unique_id]
    await asyncio.sleep(0)


async def test_cancel_after_a_timeout_asks_the_simulator_and_refuses(env: tuple[Harness, Simulated]) -> None:
    from agent.errors import Conflict

    harness, dmp = env
    dmp.fault(FaultMode.TIMEOUT, timeout_seconds=5.0, only_path="/repository")  # TD0.2 answers
    order, _ = await harness.create(dmp.body(delay=0), "lgc")
    await harness.run()
    dmp.fault(FaultMode.OK)
    with pytest.raises(Conflict) as caught:
        await harness.service.cancel(order.id)
    assert caught.value.code == "already_sent"
    detail = await harness.service.get(order.id)
    assert detail.state is DeliveryState.SENT and detail.deliveries[0].reconciled
    assert dmp.received() == [order.document_unique_id]


async def test_order_waiting_for_the_network_is_checked_then_cancelled(env: tuple[Harness, Simulated]) -> None:
    harness, dmp = env
    dmp.fault(FaultMode.DOWN)
    order, _ = await harness.create(dmp.body(delay=0), "lgc")
    await harness.run()
    assert (await harness.service.get(order.id)).state is DeliveryState.WAITING_NETWORK
    dmp.fault(FaultMode.OK)
    cancelled = await harness.service.cancel(order.id)  # the dropped connection may have carried it: asked first
    assert cancelled.state is DeliveryState.CANCELLED
    harness.clock.advance(3600)
    await harness.run()
    assert dmp.received() == []
