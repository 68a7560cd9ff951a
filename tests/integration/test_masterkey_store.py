"""The master-key rule through the real agent and store: sealed documents stay readable or the agent stops."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.errors import StoreError
from agent.store.crypto import SealedBlob
from agent.store.masterkey import RECORD_FILE
from tests.support.keyrings import Keyrings, switched_keyrings


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


_STARTED_TWICE = """
import asyncio, json, sys
from agent.cli.wiring import Agent
from agent.clock import SystemClock
from agent.config import load_config

async def start_and_stop():
    config = load_config(None, agent={{"data_dir": {data_dir!r}}}, api={{"port": 0}}, store={{"master_key": "auto"}},
                         cda={{"allow_unvalidated": True}})
    agent = Agent(config, None, clock=SystemClock())
    await agent.start()
    try:
        return agent.services.master_key_source
    finally:
        await agent.stop()

sources = [asyncio.run(start_and_stop()) for _ in range(2)]  # the first start makes the key, the second reads it
print(json.dumps({{"sources": sources, "keyring_loaded": "keyring" in sys.modules}}))
"""


def test_an_agent_whose_key_is_in_the_keyring_never_loads_keyring_itself(keyrings, tmp_path):
    """Issue 24 item 6: the keyring (GLib and libsecret on Linux, about 7 MiB never given back) is read by a child
    process; the agent, started in a fresh interpreter, has not imported it."""
    store = keyrings.available()
    script = _STARTED_TWICE.format(data_dir=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120)
    assert json.loads(done.stdout.splitlines()[-1]) == {"sources": ["keyring", "keyring"], "keyring_loaded": False}
    assert len(store.entries) == 1 and not (tmp_path / "data" / "master.key").exists()
