"""The simulated DMP's registry and repository: what it holds per patient, and the rules a registry applies.

SQLite in ``<state_dir>/dmp/dmp.sqlite``, so the documents, their statuses and visibility, and the journal of
submissions survive restarts (the queue's crash test counts submissions by uniqueId there). Metadata are kept
as the ebRIM ``ExtrinsicObject`` the registry answers with.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from agent.dmp.ebrim import (
    DE_AUTHOR,
    DE_CONFIDENTIALITY,
    DE_PATIENT_ID,
    DE_UNIQUE_ID,
    classifications,
    entry_from_extrinsic,
    external_id,
    parse_xcn_name,
    rim,
    slot_value,
)
from agent.dmp.models import STATUS_APPROVED, STATUS_DEPRECATED, DocumentEntry

REPOSITORY_UNIQUE_ID = "1.2.250.1.213.1.1.9.1"  # the sandbox repository's id
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    entry_uuid TEXT PRIMARY KEY, unique_id TEXT NOT NULL, lid TEXT NOT NULL, patient_id TEXT NOT NULL,
    status TEXT NOT NULL, version INTEGER NOT NULL, author_id TEXT NOT NULL, metadata BLOB NOT NULL,
    content BLOB, created_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_patient ON entries(patient_id);
CREATE INDEX IF NOT EXISTS entries_unique ON entries(unique_id);
CREATE INDEX IF NOT EXISTS entries_lid ON entries(lid);
CREATE INDEX IF NOT EXISTS entries_seq ON entries(created_seq);
CREATE TABLE IF NOT EXISTS submissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, submission_set_unique_id TEXT NOT NULL,
    soap BLOB NOT NULL, documents TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submission_sets (unique_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS packages (
    entry_uuid TEXT PRIMARY KEY, patient_id TEXT NOT NULL, submission_time TEXT NOT NULL, metadata BLOB NOT NULL,
    members TEXT NOT NULL
);
"""


@dataclass
class Stored:
    entry_uuid: str
    unique_id: str
    lid: str
    patient_id: str
    status: str
    version: int
    author_id: str
    metadata: etree._Element
    content: bytes | None

    @property
    def entry(self) -> DocumentEntry:
        return entry_from_extrinsic(self.metadata)

    @property
    def masked_codes(self) -> set[str]:
        return {c.get("nodeRepresentation", "") for c in classifications(self.metadata, DE_CONFIDENTIALITY)}


def author_id_of(eo: etree._Element) -> str:
    authors = classifications(eo, DE_AUTHOR)
    return parse_xcn_name(slot_value(authors[0], "authorPerson"))[0] if authors else ""


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # --- reading -------------------------------------------------------------------------------------------

    def _row(self, row: tuple[Any, ...]) -> Stored:
        meta = etree.fromstring(row[7])
        return Stored(row[0], row[1], row[2], row[3], row[4], row[5], row[6], meta, row[8])

    def _select(self, where: str, args: Iterable[Any]) -> list[Stored]:
        sql = ("SELECT entry_uuid, unique_id, lid, patient_id, status, version, author_id, metadata, content "  # noqa: S608
               f"FROM entries WHERE {where} ORDER BY created_seq")  # where: one of this module's constants
        cur = self.db.execute(sql, tuple(args))
        return [self._row(r) for r in cur.fetchall()]

    def by_uuid(self, entry_uuid: str) -> Stored | None:
        found = self._select("entry_uuid = ?", [entry_uuid])
        return found[0] if found else None

    def by_unique_id(self, unique_id: str) -> list[Stored]:
        return self._select("unique_id = ?", [unique_id])

    def by_patient(self, patient_id: str) -> list[Stored]:
        return self._select("patient_id = ?", [patient_id])

    def all(self) -> list[Stored]:
        return self._select("1 = 1", [])

    def unique_id_known(self, unique_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM entries WHERE unique_id = ? UNION "
                              "SELECT 1 FROM submission_sets WHERE unique_id = ?", (unique_id, unique_id)).fetchone()
        return row is not None

    def submissions(self, *, soap: bool = True) -> list[dict[str, Any]]:
        """Every ITI-41 received, in order; without ``soap`` the raw requests are left out (a soak's tens of
        thousands of submissions are then a small answer)."""
        if not soap:
            return [{"received_at": r[0], "submission_set_unique_id": r[1], "documents": json.loads(r[2])}
                    for r in self.db.execute("SELECT received_at, submission_set_unique_id, documents FROM "
                                             "submissions ORDER BY seq")]
        cur = self.db.execute("SELECT received_at, submission_set_unique_id, soap, documents FROM submissions "
                              "ORDER BY seq")
        return [{"received_at": r[0], "submission_set_unique_id": r[1], "soap_base64": base64.b64encode(r[2]).decode(),
                 "documents": json.loads(r[3])} for r in cur.fetchall()]

    # --- writing -------------------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(created_seq), 0) + 1 FROM entries").fetchone()
        return int(row[0])

    def insert(self, eo: etree._Element, content: bytes | None, *, version: int = 1, lid: str = "") -> None:
        entry_uuid = eo.get("id", "")
        eo.set("status", STATUS_APPROVED)
        eo.set("lid", lid or entry_uuid)
        _set_repository(eo)
        _set_version(eo, version)
        self.db.execute(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry_uuid, external_id(eo, DE_UNIQUE_ID), lid or entry_uuid, external_id(eo, DE_PATIENT_ID),
             STATUS_APPROVED, version, author_id_of(eo), etree.tostring(eo), content, self._next_seq()))

    def set_status(self, entry_uuid: str, status: str) -> None:
        stored = self.by_uuid(entry_uuid)
        if stored is None:
            return
        stored.metadata.set("status", status)
        self.db.execute("UPDATE entries SET status = ?, metadata = ? WHERE entry_uuid = ?",
                        (status, etree.tostring(stored.metadata), entry_uuid))

    def content_of_lid(self, lid: str) -> bytes | None:
        row = self.db.execute("SELECT content FROM entries WHERE lid = ? AND content IS NOT NULL LIMIT 1",
                              (lid,)).fetchone()
        return bytes(row[0]) if row else None

    def delete_lid(self, lid: str) -> None:
        self.db.execute("DELETE FROM entries WHERE lid = ?", (lid,))

    def record_submission(self, received_at: str, ss_unique_id: str, soap: bytes,
                          documents: list[dict[str, str]]) -> None:
        self.db.execute("INSERT INTO submissions (received_at, submission_set_unique_id, soap, documents) "
                        "VALUES (?, ?, ?, ?)", (received_at, ss_unique_id, soap, json.dumps(documents)))
        self.db.execute("INSERT OR IGNORE INTO submission_sets VALUES (?)", (ss_unique_id,))

    def insert_package(self, rp: etree._Element, patient_id: str, submission_time: str, members: list[str]) -> None:
        """A submission set as FindSubmissionSets and GetSubmissionSetAndContents return it."""
        self.db.execute("INSERT OR REPLACE INTO packages VALUES (?, ?, ?, ?, ?)",
                        (rp.get("id", ""), patient_id, submission_time, etree.tostring(rp), json.dumps(members)))

    def packages(self, patient_id: str) -> list[tuple[str, str, etree._Element, list[str]]]:
        """(entryUUID, submissionTime, RegistryPackage, member entryUUIDs) of one patient, oldest first."""
        cur = self.db.execute("SELECT entry_uuid, submission_time, metadata, members FROM packages "
                              "WHERE patient_id = ? ORDER BY rowid", (patient_id,))
        return [(r[0], r[1], etree.fromstring(r[2]), json.loads(r[3])) for r in cur.fetchall()]

    def transaction(self) -> _Tx:
        return _Tx(self.db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _set_repository(eo: etree._Element) -> None:
    for slot in eo.findall(rim("Slot")):
        if slot.get("name") == "repositoryUniqueId":
            eo.remove(slot)
    slot = etree.Element(rim("Slot"), name="repositoryUniqueId")
    etree.SubElement(etree.SubElement(slot, rim("ValueList")), rim("Value")).text = REPOSITORY_UNIQUE_ID
    eo.insert(0, slot)


def _set_version(eo: etree._Element, version: int) -> None:
    for vi in eo.findall(rim("VersionInfo")):
        eo.remove(vi)
    anchor = 0
    for i, child in enumerate(eo):
        if child.tag in (rim("Slot"), rim("Name"), rim("Description")):
            anchor = i + 1
    eo.insert(anchor, etree.Element(rim("VersionInfo"), versionName=str(version)))


__all__ = ["REPOSITORY_UNIQUE_ID", "STATUS_DEPRECATED", "Registry", "Stored", "author_id_of"]
