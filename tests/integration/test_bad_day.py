"""A bad day and an attacker (issue 23): nothing lost, nothing frozen, nothing readable by others. Real SQLite
files on disk, real sockets."""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.domain.orders import DeliveryState, NewOrder
from agent.errors import InvalidInput, StoreError
from agent.routing import queue_link
from agent.routing.protocol import Forward, new_nonce
from agent.store import orders as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database

NOW = 1_800_000_000.0


def _new_order() -> NewOrder:
    return NewOrder(order_id=str(uuid.uuid4()), client_ref=None, client_name="lgc", body_hash="h",
                    ins="279035121518989", ins_oid="1.2.250.1.213.1.4.8", identity_status="QUAL",
                    author_rpps="10000000000", document_unique_id=f"2.25.{uuid.uuid4().int}",
                    submission_set_unique_id=f"2.25.{uuid.uuid4().int}", type_code="11488-4",
                    payload=b'{"document": "..."}', destinations=("dmp",), delay_seconds=900)


async def _insert(db: Database, cipher: ContentCipher) -> repo.OrderView:
    order, _ = await db.write(lambda c: repo.insert_order(c, cipher, _new_order(), NOW, "2027-01-15T08:00:00Z"))
    return order


async def test_retention_never_erases_an_order_forwarded_to_a_holder_that_never_settled_it(tmp_path: Path) -> None:
    # The holder never came back: erasing the origin's copy would lose an acknowledged order everywhere.
    db = Database(tmp_path / "relais.db")
    db.open()
    cipher = ContentCipher(os.urandom(32))
    try:
        order = await _insert(db, cipher)
        assert await db.write(lambda c: repo.forward(c, order.seq, NOW))
        a_year_later = NOW + 365 * 86400
        assert await db.write(lambda c: repo.erase_expired_content(c, a_year_later - 30 * 86400, a_year_later)) == 0
        assert await db.read(lambda c: repo.open_payload(c, cipher, order.id)) == b'{"document": "..."}'
        # Once the holder says it sent it, the retention applies as for any sent order.
        assert await db.write(lambda c: repo.mirror_final(c, order.seq, "dmp", "sent", NOW, NOW, "urn:uuid:1"))
        assert await db.write(lambda c: repo.erase_expired_content(c, a_year_later - 30 * 86400, a_year_later)) == 1
        detail = await db.read(lambda c: repo.require_order(c, order.id))
        assert detail.deliveries[0].state is DeliveryState.SENT and detail.content_erased_at is not None
    finally:
        db.close()


async def test_a_clean_stop_folds_the_wal_into_the_database_so_a_copy_of_it_alone_loses_nothing(
        tmp_path: Path) -> None:
    # A backup tool that copies relais.db without its -wal file must find every acknowledged order.
    db = Database(tmp_path / "relais.db")
    db.open()
    cipher = ContentCipher(os.urandom(32))
    orders = [await _insert(db, cipher) for _ in range(5)]
    assert len(await db.read(lambda c: repo.list_orders(c))) == 5  # the readers are open, as in a running agent
    db.close()
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "relais.db").write_bytes((tmp_path / "relais.db").read_bytes())
    restored = Database(copy / "relais.db")
    restored.open()
    try:
        assert sorted(o.id for o in await restored.read(lambda c: repo.list_orders(c))) == sorted(o.id for o in orders)
    finally:
        restored.close()


async def test_a_damaged_database_is_refused_at_start_with_a_french_message(tmp_path: Path) -> None:
    # Before: the agent started without a word, accepted new orders (201), and its order list answered 500.
    path = tmp_path / "relais.db"
    db = Database(path)
    db.open()
    cipher = ContentCipher(os.urandom(32))
    for _ in range(40):
        await _insert(db, cipher)
    db.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    middle = len(data) // page // 2 * page  # a page of orders, read by no migration: the agent used to start
    data[middle:middle + page] = bytes([0x5A]) * page  # a bad disk sector, a torn copy
    path.write_bytes(bytes(data))
    damaged = Database(path)
    with pytest.raises(StoreError) as caught:
        damaged.open()
    assert "endommagée" in caught.value.message and "sauvegarde" in caught.value.message
    with pytest.raises(StoreError):
        await damaged.write(lambda c: repo.insert_order(c, cipher, _new_order(), NOW, "2027-01-15T08:00:00Z"))
    damaged.close()


@pytest.mark.parametrize("send_at", [1e308, math.nan, math.inf, -math.inf, NOW + 30 * 86400])
async def test_a_forward_with_an_absurd_deadline_is_refused_and_nothing_is_stored(tmp_path: Path,
                                                                                    send_at: float) -> None:
    # A practice member sent send_at=1e308: the holder stored it and its order list answered 500 for good.
    origin, holder = Database(tmp_path / "origin.db"), Database(tmp_path / "holder.db")
    origin.open()
    holder.open()
    cipher = ContentCipher(os.urandom(32))
    try:
        order = await _insert(origin, cipher)
        meta, payload = await origin.read(lambda c: queue_link.export(c, cipher, order.id))
        message = Forward(order.id, datetime.fromtimestamp(NOW, UTC), new_nonce(), "10000000000",
                          {**meta, "send_at": send_at}, payload)
        with pytest.raises(InvalidInput) as caught:
            await holder.write(lambda c: queue_link.accept(c, cipher, "Accueil", message, "10000000000", NOW,
                                                           "2027-01-15T08:00:00Z"))
        assert caught.value.code == "invalid_input"
        assert await holder.read(lambda c: repo.list_orders(c)) == []
    finally:
        origin.close()
        holder.close()


async def _closed_by_server(port: int, opening: bytes) -> bool:
    """Open a connection, send ``opening`` (nothing, or half a request) and wait: True once the server closes it.
    The 60 s guard only stops a hang; it is no timing assertion (the agent's idle timeout is set far below)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(opening)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 60) == b""
    except TimeoutError:
        return False
    finally:
        writer.close()


async def test_idle_and_half_sent_connections_are_closed_and_the_api_keeps_answering(start_agent: Any) -> None:
    # ~1,000 idle connections exhausted the file handles and the LGC's requests timed out.
    agent = await start_agent(api={"idle_timeout_seconds": 0.5})
    port = agent.agent.port
    idle = [_closed_by_server(port, b"") for _ in range(20)]
    slow = [_closed_by_server(port, b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(20)]
    assert all(await asyncio.gather(*idle, *slow))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.read(), 60)).startswith(b"HTTP/1.1 200")
    writer.close()


async def test_the_data_folder_and_the_database_are_readable_by_this_account_only(tmp_path: Path) -> None:
    # Another Unix account read INS numbers, consents and a live pairing invite's key from a 0644 relais.db.
    previous = os.umask(0o022)
    try:
        fresh = Database(tmp_path / "new" / "relais.db")
        fresh.open()
        await _insert(fresh, ContentCipher(os.urandom(32)))
        folder = tmp_path / "new"
        assert folder.stat().st_mode & 0o777 == 0o700
        for name in ("relais.db", "relais.db-wal", "relais.db-shm"):
            assert (folder / name).stat().st_mode & 0o777 == 0o600, name
        fresh.close()
        # A folder made by an older agent is tightened at start.
        folder.chmod(0o755)
        (folder / "relais.db").chmod(0o644)
        again = Database(folder / "relais.db")
        again.open()
        again.close()
        assert folder.stat().st_mode & 0o777 == 0o700
        assert (folder / "relais.db").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)


async def test_a_statement_the_full_disk_refuses_fails_its_batch_with_507_and_the_fault_clears_after(
        tmp_path: Path) -> None:
    # SQLite's own limit on the file's size (PRAGMA max_page_count) plays the full disk: SQLITE_FULL inside a write.
    # Before: "no such savepoint" or the raw sqlite3 error, a 500, and nothing in /v1/status.
    from agent.errors import StorageUnavailable

    db = Database(tmp_path / "relais.db")
    db.open()
    try:
        pages = await db.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await db.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}").fetchone())
        with pytest.raises(StorageUnavailable) as caught:
            await db.write(lambda c: c.execute("INSERT INTO settings(key, value) VALUES ('big', ?)", ("x" * 200_000,)))
        assert caught.value.code == "disk_full" and "plein" in caught.value.message
        assert db.health()["writable"] is False and db.health()["problem"]["code"] == "disk_full"
        await db.write(lambda c: c.execute("PRAGMA max_page_count = 1000000").fetchone())
        await db.write(lambda c: c.execute("INSERT INTO settings(key, value) VALUES ('small', 'ok')"))
        assert db.health() == {"writable": True, "problem": None}
    finally:
        db.close()
