"""A bounced MSSanté delivery (failed DSN) is not retried: the same message to the same address would be refused
again. Other failed deliveries of the same order are retried as usual (real SQLite store)."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.domain.orders import NewOrder
from agent.errors import Conflict
from agent.store import mss_acks
from agent.store import orders as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database

T = datetime(2026, 11, 22, 8, 0, tzinfo=UTC).timestamp()
BOUNCING = "mss:inconnu.x@medecin.demo.mssante.fr"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "orders.db")
    database.open()
    yield database
    database.close()


async def failed_order(db: Database, destinations: tuple[str, ...]) -> None:
    """An order whose deliveries were all sent; the MSS one then bounces, the others fail on their own."""
    payload = json.dumps({"cda_base64": "PGEvPg==", "patient": {}, "visibility": {}}).encode()
    new = NewOrder(order_id="order-1", client_ref=None, client_name="lgc", body_hash="h", ins="279035121518989",
                   ins_oid="1.2.250.1.213.1.4.10", identity_status="QUAL", author_rpps="01234567897",
                   document_unique_id="2.25.1", submission_set_unique_id="2.25.2", type_code="11488-4",
                   payload=payload, destinations=destinations, delay_seconds=0)

    def write(conn: sqlite3.Connection) -> None:
        repo.insert_order(conn, ContentCipher(os.urandom(32)), new, T, "t")
        conn.execute("UPDATE deliveries SET state = 'sent', entry_uuid = '<order-1.x@demo.mssante.fr>' "
                     "WHERE destination = ?", (BOUNCING,))
        conn.execute("UPDATE deliveries SET state = 'failed', last_error_code = 'dmp_refused' "
                     "WHERE destination = 'dmp'")
        assert mss_acks.mark_bounced(conn, "<order-1.x@demo.mssante.fr>", "Adresse inconnue (5.1.1)", T)

    await db.write(write)


def states(order: repo.OrderView) -> dict[str, str]:
    return {d.destination: d.state.value for d in order.deliveries}


async def test_retry_leaves_a_bounce_failed_and_retries_the_rest(db: Database) -> None:
    await failed_order(db, ("dmp", BOUNCING))
    order = await db.write(lambda c: repo.retry_order(c, "order-1", T + 60))
    assert states(order) == {"dmp": "ready", BOUNCING: "failed"}
    bounced = next(d for d in order.deliveries if d.destination == BOUNCING)
    assert bounced.last_error_code == "mss_bounced" and bounced.last_error == "Adresse inconnue (5.1.1)"


async def test_retry_of_a_bounce_alone_is_refused_with_the_reason(db: Database) -> None:
    await failed_order(db, (BOUNCING,))
    with pytest.raises(Conflict) as refused:
        await db.write(lambda c: repo.retry_order(c, "order-1", T + 60))
    assert refused.value.code == "mss_bounced"
    assert "la même adresse ne peut pas aboutir" in refused.value.message
    order = await db.read(lambda c: repo.require_order(c, "order-1"))
    assert states(order) == {BOUNCING: "failed"}
