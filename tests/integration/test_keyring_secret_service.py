"""The master key in a real Secret Service (gnome-keyring-daemon on a private D-Bus bus), as on a Linux desktop:
the agent reads and writes it through its keyring child process, never loading keyring itself, and a locked
keyring stops the start with a French message that says so."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.store.masterkey import RECORD_FILE, SERVICE, fingerprint
from tests.support.keyrings import BACKEND_ENV, secret_service

AUTO = {"master_key": "auto"}


@pytest.fixture
def session_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(BACKEND_ENV, raising=False)  # keyring's own choice of backend, as on a workstation
    with secret_service(tmp_path / "session"):
        yield


def _items(account: str) -> list[bytes]:
    import secretstorage

    with secretstorage.dbus_init() as conn:
        return [item.get_secret() for item in secretstorage.search_items(conn, {"service": SERVICE,
                                                                              "username": account})]


def _lock() -> None:
    import secretstorage

    with secretstorage.dbus_init() as conn:
        secretstorage.get_default_collection(conn).lock()


async def test_the_key_goes_to_the_secret_service_and_back_without_the_agent_loading_keyring(
        session_keyring, start_agent, make_config):
    import base64
    import json

    keyring_before = "keyring" in sys.modules
    first = await start_agent(store=AUTO)
    assert first.services.master_key_source == "keyring"
    await first.agent.stop()
    again = await start_agent(store=AUTO)
    assert again.services.master_key_source == "keyring"
    data_dir = make_config().data_dir
    (stored,) = _items(str(data_dir.resolve()))
    record = json.loads((data_dir / RECORD_FILE).read_text())
    assert record["source"] == "keyring" and record["fingerprint"] == fingerprint(base64.b64decode(stored))
    assert not (data_dir / "master.key").exists()
    assert ("keyring" in sys.modules) == keyring_before  # read in a child process, not here


async def test_a_locked_secret_service_stops_the_start_and_says_so(session_keyring, start_agent, make_config):
    first = await start_agent(store=AUTO)
    await first.agent.stop()
    _lock()
    with pytest.raises(StoreError) as caught:
        await start_agent(store=AUTO)
    assert caught.value.code == "master_key_unreachable"
    assert "trousseau est verrouillé" in caught.value.message and "relais doctor" in caught.value.message
    assert not (make_config().data_dir / "master.key").exists()
