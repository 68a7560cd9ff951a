"""Release order after an outage (issue 21 #6): orders made while the DMP was unreachable or answering errors go
out in creation order once it answers again, four slots at a time, and one patient's documents one after the
other (never two of the same patient under way, never a newer one ahead of an older one).

The executor runs over a real store with ``MemoryDmp`` behind ``Overlap``, which notes the order in which sends
start and how many are under way at once, per patient and in all (each send yields to the loop a few times, so
concurrent sends really overlap). The same, end to end against the DMP simulator, is in ``test_queue_demo.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from agent.clock import FrozenClock
from agent.domain.delivery import DeliveryJob, Lookup, Receipt
from agent.domain.orders import DeliveryState
from agent.store import orders as repo
from agent.store.crypto import ContentCipher
from tests.support.queue import Harness, MemoryDmp, ins_value, order_body


class Overlap:
    """A ``DeliveryGateway`` in front of ``MemoryDmp``: the order sends start in, and the most under way at once."""

    def __init__(self, dmp: MemoryDmp) -> None:
        self.dmp = dmp
        self.started: list[str] = []  # document uniqueIds, in the order their sends started (failed ones too)
        self.under_way: Counter[str] = Counter()  # INS -> sends under way
        self.most = 0
        self.most_per_patient = 0

    async def deliver(self, job: DeliveryJob) -> Receipt:
        self.started.append(job.lookup.document_unique_id)
        self.under_way[job.lookup.ins] += 1
        self.most = max(self.most, sum(self.under_way.values()))
        self.most_per_patient = max(self.most_per_patient, self.under_way[job.lookup.ins])
        try:
            for _ in range(5):  # the request on the wire: the other slots' sends run meanwhile
                await asyncio.sleep(0)
            return await self.dmp.deliver(job)
        finally:
            self.under_way[job.lookup.ins] -= 1

    async def find(self, lookup: Lookup) -> Receipt | None:
        return await self.dmp.find(lookup)


async def outage(tmp_path: Path, mode: str) -> tuple[Harness, Overlap, list[str]]:
    """Nine orders for three patients (interleaved) made during an outage of the DMP in ``mode``, a pass of the
    executor after each; then the DMP answers again and the queue drains. The created orders' uniqueIds."""
    dmp = MemoryDmp(mode=mode)
    gateway = Overlap(dmp)
    harness = Harness(tmp_path / "relais.db", FrozenClock(), gateway, concurrency=4)
    await harness.start()
    patients = [ins_value(serial) for serial in (1, 2, 3)]
    created = []
    for i in range(9):
        order, _ = await harness.create(order_body(delay=0, ins=patients[i % 3]), "lgc")
        created.append(order)
        await harness.run()
        harness.clock.advance(7)  # the outage lasts: backoffs and pauses end, probes find it still down
    assert not dmp.stored
    assert {await harness.state(o.id) for o in created} <= {
        DeliveryState.WAITING_NETWORK, DeliveryState.RETRYING, DeliveryState.READY}
    dmp.mode = "ok"
    for _ in range(30):
        harness.clock.advance(31)
        await harness.run()
        if len(dmp.stored) == len(created):
            break
    assert {await harness.state(o.id) for o in created} == {DeliveryState.SENT}
    await harness.stop()
    return harness, gateway, [o.document_unique_id for o in created]


async def test_orders_made_while_the_dmp_was_unreachable_go_out_in_creation_order(tmp_path: Path) -> None:
    _, gateway, created = await outage(tmp_path, "down")
    assert gateway.dmp.submissions == created  # one request each, started oldest first
    assert gateway.most_per_patient == 1  # a patient's documents one after the other
    assert gateway.most > 1  # while other patients' go beside them (four slots)


async def test_orders_made_while_the_dmp_answered_500_go_out_in_creation_order(tmp_path: Path) -> None:
    _, gateway, created = await outage(tmp_path, "error500")
    assert gateway.dmp.submissions == created  # oldest first, not each at the end of its own backoff
    assert gateway.most_per_patient == 1
    assert len(gateway.started) > len(created)  # the failed attempts of the outage came first


async def test_a_patients_newer_document_waits_behind_an_older_one_in_backoff(tmp_path: Path) -> None:
    """The claim itself (the executor's transaction step): the patient's second document is not taken while their
    first waits out a backoff; another patient's is."""
    dmp = MemoryDmp(fail_next=1)  # the first document of the patient meets a 500: it waits out its backoff
    harness = Harness(tmp_path / "relais.db", FrozenClock(), Overlap(dmp), concurrency=4)
    await harness.start()
    ins, other = ins_value(1), ins_value(2)
    first, _ = await harness.create(order_body(delay=0, ins=ins), "lgc")
    await harness.run()
    assert await harness.state(first.id) is DeliveryState.RETRYING
    second, _ = await harness.create(order_body(delay=0, ins=ins), "lgc")
    elsewhere, _ = await harness.create(order_body(delay=0, ins=other), "lgc")
    db, now = harness.db, harness.clock.now().timestamp()
    assert db is not None
    await db.write(lambda c: repo.release_due(c, now))
    claims = await db.write(lambda c: repo.claim_ready(c, ContentCipher(harness.master), ["dmp"], 4, now))
    assert [c.order_id for c in claims] == [elsewhere.id]
    assert await harness.state(second.id) is DeliveryState.READY
    await harness.stop()
