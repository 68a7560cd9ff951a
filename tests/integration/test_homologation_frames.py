"""The homologation's frames journal: the raw exchanges with the DMP simulator (over mutual TLS) kept sealed, filed
under the CNDA test code being played, exported as files, erased after their retention, and never in the logs."""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.clock import FrozenClock, SystemClock
from agent.config import MssSection
from agent.homologation.export import export_frames
from agent.homologation.journal import FramesJournal, FramesSettings, transaction_of
from agent.logs import LOGGER_NAME
from agent.mss.factory import settings_from
from agent.mss.service import MssSender
from agent.store import frames as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database, connect
from relais_sandbox.identities import PAT_TROIS
from tests.support.dmp import Sandbox, running_sandbox

KEY = bytes(range(32))


@pytest.fixture
async def sandbox(tmp_path: Path, reference_dir: Path) -> AsyncIterator[Sandbox]:
    async with running_sandbox(tmp_path, reference_dir) as running:
        yield running


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "data" / "relais.db")
    database.open()
    yield database
    database.close()


def _raw_rows(path: Path) -> list[sqlite3.Row]:
    conn = connect(path, readonly=True)
    try:
        return conn.execute("SELECT * FROM frames ORDER BY seq").fetchall()
    finally:
        conn.close()


async def test_cdt_2_1_011_feed_frames_are_journaled_sealed_and_exported(
        sandbox: Sandbox, db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)  # every level, TRAFFIC included: frames must reach none of them
    cipher = ContentCipher(KEY)
    journal = FramesJournal(db, cipher, SystemClock(), FramesSettings(enabled=True, test_code="2.1-011"))
    sandbox.client.transport.frames = journal
    status = await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid)
    assert status.exists
    cda, uid = sandbox.cda()
    await sandbox.client.submit(sandbox.request(cda, uid))
    await journal.flush()

    rows = _raw_rows(db.path)
    assert [(r["service"], r["transaction_name"], r["test_code"]) for r in rows] == [
        ("dmp", "TD0.2", "2.1-011"), ("dmp", "TD2.1", "2.1-011")]
    assert [r["outcome"] for r in rows] == ["HTTP 200", "HTTP 200"]
    for row in rows:  # sealed at rest: neither the INS nor the document is readable in the table
        for blob in (bytes(row["request_blob"]), bytes(row["response_blob"])):
            assert PAT_TROIS.ins.encode() not in blob and b"Envelope" not in blob

    out = tmp_path / "export"
    conn = connect(db.path, readonly=True)
    try:
        exported = export_frames(conn, cipher, out, test_code="2.1-011")
    finally:
        conn.close()
    assert exported.count == 2 and len(exported.files) == 4
    with (out / "index.csv").open(encoding="utf-8") as handle:
        index = list(csv.DictReader(handle, delimiter=";"))
    assert [r["transaction"] for r in index] == ["TD0.2", "TD2.1"]
    feed_request = (out / index[1]["requete"]).read_bytes()
    feed_response = (out / index[1]["reponse"]).read_bytes()
    assert index[1]["requete"].endswith("_TD2.1_0002_requete.mime")  # MTOM, as it left
    assert uid.encode() in feed_request and b"ProvideAndRegisterDocumentSet-b" in feed_request
    assert b"ResponseStatusType:Success" in feed_response
    assert PAT_TROIS.ins.encode() in (out / index[0]["requete"]).read_bytes()
    # Nothing of the frames in Relais's logs (the "relais" tree, the only one the agent writes): neither the INS
    # nor the document's id, at any level.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(LOGGER_NAME))
    assert ours and PAT_TROIS.ins not in ours and uid not in ours

    conn = connect(db.path, readonly=True)
    try:
        assert export_frames(conn, cipher, tmp_path / "none", test_code="3.1-010").count == 0
    finally:
        conn.close()


async def test_nothing_is_journaled_while_the_journal_is_off(sandbox: Sandbox, db: Database) -> None:
    journal = FramesJournal(db, ContentCipher(KEY), SystemClock(), FramesSettings(enabled=False))
    await journal.start()
    try:
        sandbox.client.transport.frames = journal
        assert (await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid)).exists
        await journal.flush()
        assert await db.read(repo.count) == (0, None)
        # Switched on (as `relais frames on` does), the next exchange is kept.
        await journal.set_enabled(True)
        assert (await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid)).exists
        await journal.flush()
        assert (await db.read(repo.count))[0] == 1
    finally:
        await journal.stop()


async def test_a_frame_is_erased_with_its_keys_after_its_retention(db: Database) -> None:
    clock = FrozenClock()
    journal = FramesJournal(db, ContentCipher(KEY), clock, FramesSettings(enabled=True, retention_days=3))
    journal.exchange("insi", "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite",
                     b"<Envelope>requete</Envelope>").answered(b"<Envelope>reponse</Envelope>", status=200)
    await journal.flush()
    rows = _raw_rows(db.path)
    assert [(r["transaction_name"], r["outcome"]) for r in rows] == [("INSi rechercher (traits)", "HTTP 200")]

    def keys(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM data_keys").fetchone()[0])

    assert await db.read(keys) == 2
    clock.advance(2 * 86400)
    assert await journal.erase_expired() == 0
    clock.advance(1 * 86400 + 1)
    assert await journal.erase_expired() == 1
    assert await db.read(repo.count) == (0, None)
    assert await db.read(keys) == 0  # the ciphertext left in the WAL can no longer be opened


async def test_an_unanswered_exchange_stays_as_sans_reponse(db: Database) -> None:
    journal = FramesJournal(db, ContentCipher(KEY), FrozenClock(), FramesSettings(enabled=True))
    with journal.playing("0.2-010"):
        journal.exchange("dmp", "urn:hl7-org:v3:PRPA_IN201307UV02", b"<Envelope/>")
    await journal.flush()
    assert [(r["transaction_name"], r["test_code"], r["outcome"]) for r in _raw_rows(db.path)] == [
        ("TD0.2", "0.2-010", "sans réponse")]


def test_transactions_are_named_as_the_cnda_book_names_them() -> None:
    assert transaction_of("dmp", "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b") == "TD2.1"
    assert transaction_of("dmp", "urn:ihe:iti:2007:RegistryStoredQuery") == "TD3.1"
    assert transaction_of("dmp", "urn:hl7-org:v3:PRPA_IN201314UV02") == "TD0.3"
    assert transaction_of("insi", "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale") == \
        "INSi rechercher (carte Vitale)"
    assert transaction_of("mss", "submission") == "MSSanté envoi"
    assert transaction_of("mss", "imap") == "MSSanté lecture (IMAP)"


async def test_a_journal_that_cannot_write_never_fails_the_call_it_records(sandbox: Sandbox, tmp_path: Path) -> None:
    closed = Database(tmp_path / "closed" / "relais.db")
    closed.open()
    journal = FramesJournal(closed, ContentCipher(KEY), SystemClock(), FramesSettings(enabled=True))
    closed.close()  # every write now fails
    sandbox.client.transport.frames = journal
    assert (await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid)).exists


async def test_mssante_smtp_and_imap_sessions_are_journaled_sealed_without_credentials(
        operator: Any, db: Database, reference_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Reading the delivery and read reports (IMAP) is kept like the submission (SMTP): one exchange per
    authenticated session, sealed at rest, exported as files, never in the logs, and no password in it."""
    from tests.integration.test_mss_transport import outgoing, packager

    caplog.set_level(1)
    _, endpoint, pki = operator
    cipher = ContentCipher(KEY)
    journal = FramesJournal(db, cipher, SystemClock(), FramesSettings(enabled=True, test_code="MSS-ACK"))
    settings = settings_from(MssSection(), endpoint)
    assert settings is not None and settings.imap is not None
    settings = replace(settings, smtp=replace(settings.smtp, frames=journal),
                       imap=replace(settings.imap, password=endpoint["password"], frames=journal))
    sender = MssSender(settings, packager(pki), FrozenClock(dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)))
    cs9 = (reference_dir / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()
    message_id = await sender.send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))
    batch = await sender.read_acks(0, 0)
    assert {a.original_message_id for a in batch.acks} == {message_id}
    await journal.flush()

    rows = _raw_rows(db.path)
    assert [(r["service"], r["transaction_name"], r["test_code"], r["outcome"]) for r in rows] == [
        ("mss", "MSSanté envoi", "MSS-ACK", "SMTP 250"), ("mss", "MSSanté lecture (IMAP)", "MSS-ACK", "IMAP OK")]
    for row in rows:  # sealed at rest
        for blob in (bytes(row["request_blob"]), bytes(row["response_blob"])):
            assert message_id.encode() not in blob and b"FETCH" not in blob

    conn = connect(db.path, readonly=True)
    try:
        exported = export_frames(conn, cipher, tmp_path / "export", test_code="MSS-ACK")
    finally:
        conn.close()
    assert exported.count == 2
    with (tmp_path / "export" / "index.csv").open(encoding="utf-8") as handle:
        imap_row = list(csv.DictReader(handle, delimiter=";"))[1]
    request = (tmp_path / "export" / imap_row["requete"]).read_bytes()
    response = (tmp_path / "export" / imap_row["reponse"]).read_bytes()
    assert b"UID SEARCH" in request and b"BODY.PEEK[]" in request and b"LOGOUT" in request
    assert b"LOGIN" not in request and endpoint["password"].encode() not in request  # after authentication only
    assert message_id.encode() in response and b"report-type=delivery-status" in response
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(LOGGER_NAME))
    assert message_id not in ours and "BODY.PEEK" not in ours
