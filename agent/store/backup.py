"""`relais backup`: a consistent copy of the agent's database with SQLite's backup API.

The copy is taken from one read transaction, so it holds every order committed before it started and nothing
half-written, while the agent keeps running and writing (WAL). It is written beside the destination, checked
(``PRAGMA quick_check``), made a single self-contained file (rollback journal, no ``-wal``), readable by this
account only (0600), then renamed into place: an interrupted backup never leaves a truncated file under the name.
The master key that opens documents' content is not in the database (system keyring or ``master.key``): the copy
alone restores the queue's metadata, traces and consents, and the documents only with that key.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from agent.errors import StoreError
from agent.store.db import connect, storage_error


@dataclass(frozen=True, slots=True)
class BackupSummary:
    path: Path
    orders: int
    size: int


def backup_database(source: Path, destination: Path) -> BackupSummary:
    if not source.exists():
        raise StoreError(f"aucune base à sauvegarder : {source} n'existe pas", code="store_missing")
    destination = destination.resolve()
    if destination == source.resolve():
        raise StoreError("la sauvegarde ne peut pas remplacer la base elle-même", code="backup_same_file")
    tmp = destination.with_name(f".{destination.name}.partial")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        src = connect(source, readonly=True)
        try:
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                src.backup(dst)  # every page in one step: one read transaction, one consistent snapshot
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
                problems = [str(r[0]) for r in dst.execute("PRAGMA quick_check(5)")]
                if problems != ["ok"]:
                    raise StoreError("la copie est illisible : " + "; ".join(problems), code="backup_damaged")
                has_orders = dst.execute("SELECT 1 FROM sqlite_master WHERE name = 'orders'").fetchone()
                orders = int(dst.execute("SELECT count(*) FROM orders").fetchone()[0]) if has_orders else 0
            finally:
                dst.close()
        finally:
            src.close()
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, destination)
    except (sqlite3.Error, OSError) as exc:
        tmp.unlink(missing_ok=True)
        error = storage_error(exc)
        raise StoreError(f"sauvegarde impossible vers {destination} : {error.message}", code=error.code) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BackupSummary(destination, orders, destination.stat().st_size)
