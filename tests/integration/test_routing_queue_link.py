"""Routing on the queue's real tables (SQLite, encrypted content): claim, accept once, recall, mirror."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.domain.orders import NewOrder
from agent.errors import Conflict
from agent.routing import queue_link
from agent.routing.protocol import Forward, new_nonce
from agent.store import orders as orders_repo
from agent.store import routing as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database

DOCTOR = "01234567897"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
T = NOW.timestamp()
Stores = tuple[Database, Database, ContentCipher]


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    origin, holder = Database(tmp_path / "origin.db"), Database(tmp_path / "holder.db")
    origin.open()
    holder.open()
    yield origin, holder, ContentCipher(os.urandom(32))
    origin.close()
    holder.close()


def new_order(order_id: str = "order-1", delay: int = 600) -> NewOrder:
    payload = json.dumps({"cda_base64": "PGEvPg==", "patient": {}, "visibility": {}}).encode()
    return NewOrder(order_id=order_id, client_ref=None, client_name="lgc", body_hash="h", ins="279035121518989",
                    ins_oid="1.2.250.1.213.1.4.10", identity_status="QUAL", author_rpps=DOCTOR,
                    document_unique_id=f"2.25.{order_id.encode().hex()}",
                    submission_set_unique_id=f"2.25.9{order_id.encode().hex()}",
                    type_code="11488-4", payload=payload, destinations=("dmp",), delay_seconds=delay)


async def forward_of(db: Database, cipher: ContentCipher, order_id: str) -> Forward:
    meta, payload = await db.read(lambda c: queue_link.export(c, cipher, order_id))
    return Forward(order_id, NOW, new_nonce(), DOCTOR, meta, payload)


async def test_claimed_order_is_forwarded_once_and_the_holder_applies_it_once(stores: Stores) -> None:
    origin, holder, cipher = stores
    await origin.write(lambda c: orders_repo.insert_order(c, cipher, new_order(), T, "t"))
    assert await origin.read(lambda c: queue_link.candidates(c, None)) == [("order-1", DOCTOR)]
    assert await origin.read(lambda c: queue_link.candidates(c, DOCTOR)) == []  # its CPS is here
    assert await origin.write(lambda c: queue_link.claim(c, "order-1", "Cabinet", T))
    assert await origin.read(lambda c: queue_link.candidates(c, None)) == []
    assert await origin.read(queue_link.pending_forwards) == [("order-1", "Cabinet")]

    message = await forward_of(origin, cipher, "order-1")
    first = await holder.write(lambda c: queue_link.accept(c, cipher, "Accueil", message, DOCTOR, T + 1, "t"))
    assert (first.status, first.state) == ("stored", "scheduled")
    with pytest.raises(Conflict) as replay:
        await holder.write(lambda c: queue_link.accept(c, cipher, "Accueil", message, DOCTOR, T + 1, "t"))
    assert replay.value.code == "replayed"
    again = Forward(message.order_id, NOW, new_nonce(), DOCTOR, message.order, message.payload)
    second = await holder.write(lambda c: queue_link.accept(c, cipher, "Accueil", again, DOCTOR, T + 2, "t"))
    assert second.status == "duplicate"
    stored = await holder.read(lambda c: orders_repo.load_order(c, "order-1"))
    assert stored is not None and stored.send_at == pytest.approx(T + 600, abs=1)  # the origin's deadline
    assert await holder.read(lambda c: orders_repo.open_payload(c, cipher, "order-1")) == message.payload


async def test_a_workstation_without_the_cps_refuses_and_the_order_waits_again(stores: Stores) -> None:
    origin, holder, cipher = stores
    await origin.write(lambda c: orders_repo.insert_order(c, cipher, new_order(), T, "t"))
    await origin.write(lambda c: queue_link.claim(c, "order-1", "Cabinet", T))
    message = await forward_of(origin, cipher, "order-1")
    with pytest.raises(Conflict) as refused:
        await holder.write(lambda c: queue_link.accept(c, cipher, "Accueil", message, None, T, "t"))
    assert refused.value.code == "not_holder"
    assert await holder.read(lambda c: orders_repo.load_order(c, "order-1")) is None
    await origin.write(lambda c: queue_link.unclaim(c, "order-1", T))
    order = await origin.read(lambda c: orders_repo.load_order(c, "order-1"))
    assert order is not None and order.state.value == "waiting_card"


async def test_an_order_being_sent_is_not_claimed(stores: Stores) -> None:
    origin, _, cipher = stores
    await origin.write(lambda c: orders_repo.insert_order(c, cipher, new_order(delay=0), T, "t"))
    await origin.write(lambda c: orders_repo.claim_ready(c, cipher, ["dmp"], 1, T))
    assert not await origin.write(lambda c: queue_link.claim(c, "order-1", "Cabinet", T))


async def test_the_origin_mirrors_the_holder_and_a_returning_order_is_recalled(stores: Stores) -> None:
    origin, _, cipher = stores
    await origin.write(lambda c: orders_repo.insert_order(c, cipher, new_order(), T, "t"))
    await origin.write(lambda c: queue_link.claim(c, "order-1", "Cabinet", T))
    await origin.write(lambda c: queue_link.forwarded(c, "order-1", "Cabinet", "scheduled", T))
    remote = {"order-1": {"state": "sent", "deliveries": [
        {"destination": "dmp", "state": "sent", "sent_at": T + 5, "entry_uuid": "urn:uuid:1"}]}}
    assert await origin.write(lambda c: queue_link.mirror(c, remote, T + 6)) == ["order-1"]
    order = await origin.read(lambda c: orders_repo.load_order(c, "order-1"))
    assert order is not None and order.state.value == "sent" and order.deliveries[0].entry_uuid == "urn:uuid:1"
    assert await origin.write(lambda c: queue_link.mirror(c, remote, T + 7)) == []  # nothing new

    # Another order goes to "Cabinet", then the CPS comes back here and Cabinet sends it back: recalled.
    await origin.write(lambda c: orders_repo.insert_order(c, cipher, new_order("order-2"), T, "t"))
    await origin.write(lambda c: queue_link.claim(c, "order-2", "Cabinet", T))
    await origin.write(lambda c: queue_link.forwarded(c, "order-2", "Cabinet", "scheduled", T))
    back = await forward_of(origin, cipher, "order-2")
    result = await origin.write(lambda c: queue_link.accept(c, cipher, "Cabinet", back, DOCTOR, T + 1, "t"))
    assert result.state == "scheduled"
    row = await origin.read(lambda c: repo.outbound(c, "order-2"))
    assert row is not None and row.state == "recalled"
    with pytest.raises(Conflict):  # from anyone else, the same order id is refused
        other = await forward_of(origin, cipher, "order-1")
        await origin.write(lambda c: queue_link.accept(c, cipher, "Salle", other, DOCTOR, T + 1, "t"))


async def test_a_lost_acknowledgement_of_a_sent_order_is_settled_by_asking_the_holder(stores: Stores) -> None:
    origin, _, cipher = stores
    await origin.write(lambda c: orders_repo.insert_order(c, cipher, new_order(), T, "t"))
    await origin.write(lambda c: queue_link.claim(c, "order-1", "Cabinet", T))
    # The holder stored and sent it; its acknowledgement was lost. The forward, sent again, is answered
    # "duplicate, sent": the acknowledgement carries a final state but not the deliveries'.
    await origin.write(lambda c: queue_link.forwarded(c, "order-1", "Cabinet", "sent", T + 60))
    assert [r.order_id for r in await origin.read(repo.open_outbound)] == ["order-1"]  # still to ask the holder
    remote = {"order-1": {"state": "sent", "deliveries": [
        {"destination": "dmp", "state": "sent", "sent_at": T + 5, "entry_uuid": "urn:uuid:1"}]}}
    assert await origin.write(lambda c: queue_link.mirror(c, remote, T + 61)) == ["order-1"]
    order = await origin.read(lambda c: orders_repo.load_order(c, "order-1"))
    assert order is not None and order.state.value == "sent"
    assert await origin.read(repo.open_outbound) == []


async def test_an_unacknowledged_forward_is_recalled_with_doubt_and_withdrawn_from_its_holder(stores: Stores) -> None:
    origin, _, cipher = stores
    await origin.write(lambda c: orders_repo.insert_order(c, cipher, new_order(), T, "t"))
    await origin.write(lambda c: queue_link.claim(c, "order-1", "Cabinet", T))
    assert await origin.read(queue_link.unacknowledged) == [("order-1", "Cabinet", DOCTOR)]
    assert await origin.write(lambda c: queue_link.recall_unacknowledged(c, "order-1", T + 10)) == "Cabinet"
    order = await origin.read(lambda c: orders_repo.load_order(c, "order-1"))
    assert order is not None and order.state.value == "scheduled"
    assert order.deliveries[0].uncertain  # the holder may have sent it: the service is asked before any send
    assert order.send_at == pytest.approx(T + 600, abs=1)  # its deadline kept
    assert await origin.read(repo.withdrawals) == [("order-1", "Cabinet")]
    assert await origin.read(queue_link.unacknowledged) == []
    # Forwarded to the same holder again: the copy it may hold is the one to send, nothing to withdraw.
    await origin.write(lambda c: queue_link.claim(c, "order-1", "Cabinet", T + 20))
    assert await origin.read(repo.withdrawals) == []
    # Once acknowledged, it is the holder's: no taking it back.
    await origin.write(lambda c: queue_link.forwarded(c, "order-1", "Cabinet", "scheduled", T + 21))
    assert await origin.write(lambda c: queue_link.recall_unacknowledged(c, "order-1", T + 30)) is None


async def test_retention_keeps_the_content_of_an_order_whose_forward_is_not_settled(stores: Stores) -> None:
    origin, _, cipher = stores
    await origin.write(lambda c: orders_repo.insert_order(c, cipher, new_order(), T, "t"))
    await origin.write(lambda c: queue_link.claim(c, "order-1", "Cabinet", T))  # never acknowledged
    await origin.write(lambda c: orders_repo.insert_order(c, cipher, new_order("order-2"), T, "t"))
    await origin.write(lambda c: queue_link.claim(c, "order-2", "Cabinet", T))
    await origin.write(lambda c: queue_link.forwarded(c, "order-2", "Cabinet", "scheduled", T))  # acknowledged
    later = T + 400 * 86400
    assert await origin.write(lambda c: orders_repo.erase_expired_content(c, later - 30 * 86400, later)) == 0
    for order_id in ("order-1", "order-2"):
        assert await origin.read(lambda c, o=order_id: orders_repo.open_payload(c, cipher, o)) is not None
