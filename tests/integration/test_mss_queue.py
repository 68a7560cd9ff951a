"""MSSanté deliveries through the real queue (store file, executor) and the sandbox operator over TLS: exactly
once. An accepted DATA is recorded before anything else; a crash between DATA and that record, or a timeout
after DATA, is reconciled by the Message-ID fixed at order creation: never a second mail."""

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
from agent.config import MssSection
from agent.domain.delivery import DeliveryJob, Lookup, Receipt
from agent.domain.orders import DeliveryState
from agent.mss.factory import settings_from
from agent.mss.gateway import MssDelivery
from agent.mss.service import MssSender
from agent.queue.service import OrderService
from relais_sandbox.dmp import reidentify
from relais_sandbox.host import FaultMode, SandboxContext
from relais_sandbox.identities import PAT_TROIS
from relais_sandbox.mss import MssSimulator
from relais_sandbox.pki import SandboxPki
from tests.integration.test_mss_transport import packager
from tests.support.queue import Harness

RECIPIENT = "jeanne.martin@medecin.demo.mssante.fr"


class CrashAfterData:
    """The agent dies right after the operator accepted DATA, before the queue records it."""

    def __init__(self, inner: MssDelivery) -> None:
        self.inner = inner

    async def deliver(self, job: DeliveryJob) -> Receipt:
        await self.inner.deliver(job)
        raise asyncio.CancelledError

    async def find(self, lookup: Lookup) -> Receipt | None:
        return await self.inner.find(lookup)


class Queue(Harness):
    """The queue over a real store, sending through the MSSanté gateway only; restart() may swap the gateway."""

    def __init__(self, path: Path, clock: FrozenClock, gateway: Any) -> None:
        super().__init__(path, clock, None, gateways={"mss": gateway}, allow_test_oids=True, grace=0.1,
                         attempt_timeout_seconds=3.0, backoff_base_seconds=10.0, backoff_cap_seconds=60.0)

    async def restart(self, gateway: Any) -> OrderService:  # type: ignore[override]
        self.gateways = {"mss": gateway}
        return await super().restart()


@pytest.fixture
async def world(tmp_path: Path, reference_dir: Path) -> AsyncIterator[tuple[MssSimulator, MssDelivery, Queue,
                                                                            dict[str, Any]]]:
    pki = SandboxPki(tmp_path / "sandbox")
    sim = MssSimulator()
    endpoint = await sim.start(SandboxContext(tmp_path / "sandbox", pki))
    settings = settings_from(MssSection(timeout_seconds=2.0), endpoint)
    assert settings is not None
    clock = FrozenClock(datetime.now(UTC))
    gateway = MssDelivery(MssSender(settings, packager(pki), clock))
    queue = Queue(tmp_path / "relais.db", clock, gateway)
    await queue.start()
    p = PAT_TROIS
    data = (reference_dir / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()
    cda, _ = reidentify(data, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                        f"2.25.{uuid.uuid4().int}")
    root = etree.fromstring(cda)
    body = {"patient": {"ins": p.ins, "oid": p.oid, "identity_status": "QUAL", "birth_name": p.birth_name,
                        "given_names": [p.first_given_name], "sex": p.sex, "birth_date": p.birth_date},
            "author": {"rpps": "10001234567"},
            "document": {"cda_base64": base64.b64encode(etree.tostring(root)).decode()},
            "destinations": {"dmp": False, "mss": [{"address": RECIPIENT}]}, "delay_seconds": 0}
    yield sim, gateway, queue, body
    await queue.stop()
    await sim.stop()


async def test_crash_between_data_and_the_record_sends_no_second_mail(world: Any) -> None:
    sim, gateway, queue, body = world
    await queue.restart(CrashAfterData(gateway))
    order, _ = await queue.create(body, "lgc")
    await queue.executor.run_once()
    assert (await queue.service.get(order.id)).state is DeliveryState.SENDING  # the record never happened
    assert len(sim.store.accepted()) == 1

    await queue.restart(gateway)  # the agent starts again
    await queue.executor.run_once()
    detail = await queue.service.get(order.id)
    delivery = detail.deliveries[0]
    assert delivery.state is DeliveryState.SENT and delivery.reconciled
    accepted = sim.store.accepted()
    assert [m["message_id"] for m in accepted] == [delivery.entry_uuid]  # one mail, the order's Message-ID


async def test_timeout_after_data_is_reconciled_never_resent(world: Any) -> None:
    sim, _, queue, body = world
    sim.faults.mode = FaultMode.TIMEOUT
    sim.faults.timeout_seconds = 6.0
    order, _ = await queue.create(body, "lgc")
    await queue.executor.run_once()
    detail = await queue.service.get(order.id)
    assert detail.state is DeliveryState.RETRYING and detail.deliveries[0].uncertain
    sim.faults.mode = FaultMode.OK
    queue.clock.advance(120)
    await queue.executor.run_once()
    delivery = (await queue.service.get(order.id)).deliveries[0]
    assert delivery.state is DeliveryState.SENT and delivery.reconciled
    assert len(sim.store.accepted()) == 1


async def test_operator_down_waits_for_the_network_then_sends_once(world: Any) -> None:
    sim, _, queue, body = world
    sim.faults.mode = FaultMode.DOWN
    order, _ = await queue.create(body, "lgc")
    await queue.executor.run_once()
    assert (await queue.service.get(order.id)).state is DeliveryState.WAITING_NETWORK
    assert sim.store.accepted() == []
    sim.faults.mode = FaultMode.OK
    queue.clock.advance(60)
    await queue.executor.run_once()
    await queue.executor.run_once()
    assert (await queue.service.get(order.id)).state is DeliveryState.SENT
    assert len(sim.store.accepted()) == 1
