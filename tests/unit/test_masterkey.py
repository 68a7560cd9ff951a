"""The master key is made once per data directory and never silently made again (keyring or file)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agent.errors import StoreError
from agent.store.masterkey import RECORD_FILE, describe, fingerprint, load_master_key
from tests.support.keyrings import Keyrings, switched_keyrings


@pytest.fixture
def keyrings() -> Iterator[Keyrings]:
    with switched_keyrings() as switch:
        yield switch


def test_a_new_data_dir_gets_a_keyring_key_and_a_record_without_the_key(tmp_path, keyrings):
    store = keyrings.available()
    master = load_master_key(tmp_path, "auto")
    assert master.source == "keyring" and not (tmp_path / "master.key").exists()
    record = json.loads((tmp_path / RECORD_FILE).read_text())
    assert record["source"] == "keyring" and record["fingerprint"] == fingerprint(master.key)
    assert master.key.hex() not in (tmp_path / RECORD_FILE).read_text()
    assert len(store.entries) == 1
    assert load_master_key(tmp_path, "auto").key == master.key


def test_a_keyring_key_unreachable_at_the_next_start_stops_it_instead_of_making_a_file_key(tmp_path, keyrings):
    keyrings.available()
    load_master_key(tmp_path, "auto")
    keyrings.absent()
    with pytest.raises(StoreError) as caught:
        load_master_key(tmp_path, "auto")
    assert caught.value.code == "master_key_unreachable"
    assert "trousseau" in caught.value.message and "relais doctor" in caught.value.message
    assert not (tmp_path / "master.key").exists()


def test_a_locked_keyring_stops_the_start_too(tmp_path, keyrings):
    store = keyrings.available()
    first = load_master_key(tmp_path, "auto")
    store.locked = True
    with pytest.raises(StoreError, match="inaccessible"):
        load_master_key(tmp_path, "auto")
    store.locked = False
    assert load_master_key(tmp_path, "auto").key == first.key


def test_a_file_key_made_without_keyring_stays_the_key_once_a_keyring_appears(tmp_path, keyrings):
    keyrings.absent()
    first = load_master_key(tmp_path, "auto")
    assert first.source == "file" and first.warning
    store = keyrings.available()
    again = load_master_key(tmp_path, "auto")
    assert again.key == first.key and again.source == "file"
    assert store.entries == {}


def test_a_deleted_key_file_stops_the_start(tmp_path, keyrings):
    keyrings.absent()
    load_master_key(tmp_path, "auto")
    (tmp_path / "master.key").unlink()
    with pytest.raises(StoreError) as caught:
        load_master_key(tmp_path, "auto")
    assert caught.value.code == "master_key_unreachable" and "master.key" in caught.value.message


def test_another_key_in_the_keyring_is_refused(tmp_path, keyrings):
    store = keyrings.available()
    load_master_key(tmp_path, "auto")
    ((service, account),) = store.entries
    store.put(service, account, "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")  # 32 other bytes
    with pytest.raises(StoreError) as caught:
        load_master_key(tmp_path, "auto")
    assert caught.value.code == "master_key_mismatch"


def test_a_data_dir_from_before_the_record_keeps_its_file_key(tmp_path, keyrings):
    keyrings.absent()
    first = load_master_key(tmp_path, "file")
    (tmp_path / RECORD_FILE).unlink()  # as an earlier version left it
    keyrings.available()
    assert load_master_key(tmp_path, "auto").key == first.key
    assert json.loads((tmp_path / RECORD_FILE).read_text())["source"] == "file"


def test_the_configured_mode_must_match_the_recorded_one(tmp_path, keyrings):
    keyrings.absent()
    load_master_key(tmp_path, "file")
    keyrings.available()
    with pytest.raises(StoreError) as caught:
        load_master_key(tmp_path, "keyring")
    assert caught.value.code == "master_key_mode"


def test_doctor_explains_an_unreachable_keyring_key_and_creates_nothing(tmp_path, keyrings):
    keyrings.available()
    load_master_key(tmp_path, "auto")
    assert describe(tmp_path, "auto")[0] == "OK"
    keyrings.absent()
    level, text = describe(tmp_path, "auto")
    assert level == "ERREUR" and "trousseau" in text
    assert not (tmp_path / "master.key").exists()


def test_doctor_on_a_new_data_dir_says_where_the_key_will_go(tmp_path, keyrings):
    keyrings.absent()
    assert describe(tmp_path, "auto")[0] == "ATTENTION"
    assert not (tmp_path / RECORD_FILE).exists()
