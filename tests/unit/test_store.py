"""The store: migrations, grouped durable writes, encryption at rest, tokens."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest

from agent.errors import Conflict, NotFound, StoreError
from agent.store.crypto import ContentCipher
from agent.store.db import Database, connect, open_sync
from agent.store.dmp_documents import last_visibility, record_visibility
from agent.store.masterkey import load_master_key
from agent.store.migrations import apply_migrations
from agent.store.tokens import create_token, list_tokens, revoke_token, verify_token

NOW = "2026-01-05T09:00:00Z"


def test_pragmas_are_wal_full_sync_and_foreign_keys(tmp_path):
    conn = open_sync(tmp_path / "r.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_migrations_are_idempotent_and_refuse_a_newer_database(tmp_path):
    conn = connect(tmp_path / "r.db")
    first = apply_migrations(conn)
    assert apply_migrations(conn) == first
    conn.execute("UPDATE schema_versions SET version = 99 WHERE component = 'core'")
    with pytest.raises(StoreError, match="plus récente"):
        apply_migrations(conn)


async def test_concurrent_writes_share_commits_and_a_failing_write_fails_alone(tmp_path):
    db = Database(tmp_path / "r.db")
    db.open()
    try:
        def insert(i: int):
            def fn(conn: sqlite3.Connection) -> int:
                if i == 7:
                    conn.execute("INSERT INTO settings(key, value) VALUES ('k7', 'v')")
                    raise ValueError("boom")
                conn.execute("INSERT INTO settings(key, value) VALUES (?, ?)", (f"k{i}", "v"))
                return i
            return fn

        results = await asyncio.gather(*(db.write(insert(i)) for i in range(50)), return_exceptions=True)
        assert isinstance(results[7], ValueError)
        assert [r for r in results if not isinstance(r, Exception)] == [i for i in range(50) if i != 7]
        keys = await db.read(lambda c: {r[0] for r in c.execute("SELECT key FROM settings")})
        assert "k7" not in keys and len(keys) == 49
        assert db.commits < 50  # grouped: fewer fsyncs than writes
    finally:
        db.close()
    # Everything acknowledged is there after reopening.
    conn = open_sync(tmp_path / "r.db")
    assert conn.execute("SELECT count(*) FROM settings").fetchone()[0] == 49


async def test_closed_database_refuses_writes(tmp_path):
    db = Database(tmp_path / "r.db")
    db.open()
    db.close()
    db.close()
    with pytest.raises(StoreError):
        await db.write(lambda c: None)


def test_sealed_content_opens_only_with_its_key_and_is_gone_once_destroyed(tmp_path):
    conn = open_sync(tmp_path / "r.db")
    cipher = ContentCipher(os.urandom(32))
    secret = b"<ClinicalDocument>SENTINEL-7f3a</ClinicalDocument>"
    sealed = cipher.seal(conn, secret, NOW)
    assert b"SENTINEL" not in sealed.blob
    assert cipher.open(conn, sealed) == secret
    other = ContentCipher(os.urandom(32))
    with pytest.raises(StoreError):
        other.open(conn, sealed)
    assert ContentCipher.destroy(conn, sealed.key_id)
    with pytest.raises(StoreError) as info:
        cipher.open(conn, sealed)
    assert info.value.code == "content_destroyed"


def test_a_blob_cannot_be_moved_to_another_key(tmp_path):
    conn = open_sync(tmp_path / "r.db")
    cipher = ContentCipher(os.urandom(32))
    a = cipher.seal(conn, b"A", NOW)
    b = cipher.seal(conn, b"B", NOW)
    with pytest.raises(StoreError):
        cipher.open(conn, type(a)(b.key_id, a.blob))


def test_master_key_file_is_private_and_stable(tmp_path):
    first = load_master_key(tmp_path, "file")
    assert first.source == "file" and first.warning
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    assert load_master_key(tmp_path, "file").key == first.key


def test_tokens_are_hashed_named_and_revocable(tmp_path):
    conn = open_sync(tmp_path / "r.db")
    token = create_token(conn, "lgc", NOW)
    stored = conn.execute("SELECT secret_hash FROM api_tokens").fetchone()[0]
    assert token.split("_")[-1].encode() not in bytes(stored)
    assert verify_token(conn, token).name == "lgc"
    with pytest.raises(Conflict):
        create_token(conn, "lgc", NOW)
    revoke_token(conn, "lgc", NOW)
    assert verify_token(conn, token) is None
    with pytest.raises(NotFound):
        revoke_token(conn, "lgc", NOW)
    again = create_token(conn, "lgc", NOW)  # a revoked name can be issued anew
    assert verify_token(conn, again) is not None and verify_token(conn, token) is None
    assert [t.name for t in list_tokens(conn)] == ["lgc"]


def test_the_visibility_last_set_by_td33b_is_kept_per_document(tmp_path):
    conn = open_sync(tmp_path / "relais.db")
    assert last_visibility(conn, "1.2.3") is None
    record_visibility(conn, "1.2.3", {"invisible_to_patient": True})
    record_visibility(conn, "1.2.3", {"masked_to_ps": True})
    assert last_visibility(conn, "1.2.3") == {"masked_to_ps": True, "invisible_to_patient": False,
                                              "invisible_to_legal_reps": False}
