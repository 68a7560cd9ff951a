"""The master-key rule through the real agent and store: sealed documents stay readable or the agent stops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.errors import StoreError
from agent.store.crypto import SealedBlob
from agent.store.masterkey import RECORD_FILE
from tests.keyring_support import Keyrings, switched_keyrings


@pytest.fixture
def keyrings() -> Iterator[Keyrings]:
    with switched_keyrings() as switch:
        yield switch

AUTO = {"master_key": "auto"}


async def _seal(running, text: bytes) -> SealedBlob:
    services = running.services
    return await services.db.write(lambda conn: services.cipher.seal(conn, text, "2026-12-01T10:00:00Z"))


async def _open(running, sealed: SealedBlob) -> bytes:
    services = running.services
    return await services.db.read(lambda conn: services.cipher.open(conn, sealed))


async def test_an_agent_whose_keyring_key_is_unreachable_does_not_start_then_reads_its_data_again(
        start_agent, keyrings):
    keyrings.available()
    first = await start_agent(store=AUTO)
    sealed = await _seal(first, b"compte rendu")
    await first.agent.stop()
    keyrings.absent()
    with pytest.raises(StoreError) as caught:
        await start_agent(store=AUTO)
    assert caught.value.code == "master_key_unreachable"
    keyrings.available()
    again = await start_agent(store=AUTO)
    assert await _open(again, sealed) == b"compte rendu"


async def test_a_file_key_made_while_the_keyring_was_away_keeps_the_documents_readable(start_agent, keyrings):
    keyrings.absent()
    first = await start_agent(store=AUTO)
    assert first.services.master_key_source == "file"
    sealed = await _seal(first, b"ordonnance")
    await first.agent.stop()
    keyrings.available()
    again = await start_agent(store=AUTO)
    assert again.services.master_key_source == "file"
    assert await _open(again, sealed) == b"ordonnance"


async def test_sealed_content_without_any_key_or_record_stops_the_start(start_agent, keyrings, make_config):
    keyrings.absent()
    first = await start_agent(store=AUTO)
    await _seal(first, b"lettre")
    await first.agent.stop()
    data_dir = make_config().data_dir
    (data_dir / "master.key").unlink()
    (data_dir / RECORD_FILE).unlink()  # an earlier version's data dir whose key was lost
    with pytest.raises(StoreError) as caught:
        await start_agent(store=AUTO)
    assert caught.value.code == "master_key_unreachable" and "documents chiffrés" in caught.value.message
    assert not (data_dir / "master.key").exists()
