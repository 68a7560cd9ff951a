"""SQLite on disk, the agent's single source of truth.

One writer thread owns the write connection. Writes are functions ``fn(conn) -> T`` queued from the event loop;
the writer takes every write waiting at that moment, runs each inside its own SAVEPOINT of one transaction, and
commits once (WAL, ``synchronous=FULL``: the commit is fsynced). Each caller's future resolves only after that
commit, so "acknowledged" always means "on disk" (invariant 1), and 32 concurrent clients share fsyncs instead
of paying one each. A write that raises rolls back to its savepoint and fails alone.

Reads run on a small pool of read-only connections, concurrently with the writer (WAL).
This module must never hold the event loop: every SQLite call happens in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.clock import Clock, SystemClock, rfc3339
from agent.errors import StorageUnavailable, StoreError
from agent.logs import get_logger
from agent.store.migrations import apply_migrations

T = TypeVar("T")
log = get_logger("store")

_MAX_BATCH = 256

# SQLite primary result codes (the low byte of an extended code) that mean "the disk refused the write".
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 8, 10, 13, 14
_DISK_MESSAGES = {
    "disk_full": "Le disque de ce poste est plein : l'agent ne peut plus rien enregistrer, et rien n'a été "
                 "enregistré pour cette demande. Libérez de la place sur le disque ; l'agent reprend de lui-même.",
    "disk_read_only": "Le dossier de données de l'agent est en lecture seule : l'agent ne peut plus rien "
                      "enregistrer, et rien n'a été enregistré pour cette demande. Rendez le disque accessible en "
                      "écriture ; l'agent reprend de lui-même.",
    "disk_error": "Le disque de ce poste refuse l'écriture (disque plein, quota atteint ou disque défaillant) : "
                  "rien n'a été enregistré pour cette demande. Libérez de la place ou vérifiez le disque ; "
                  "l'agent reprend de lui-même.",
}


def disk_problem(exc: BaseException) -> str | None:
    """``disk_full``, ``disk_read_only`` or ``disk_error`` when ``exc`` (SQLite or OS) says the disk refused a
    write; None for any other error."""
    if isinstance(exc, sqlite3.Error):
        primary = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        return {_SQLITE_FULL: "disk_full", _SQLITE_READONLY: "disk_read_only", _SQLITE_IOERR: "disk_error",
                _SQLITE_CANTOPEN: "disk_error"}.get(primary)
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return "disk_full"
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "disk_read_only"
        if exc.errno == errno.EIO:
            return "disk_error"
    return None


def _disk_cause(exc: BaseException) -> sqlite3.Error | None:
    """The SQLite error that says the disk refused a write, in ``exc`` or what caused it; None otherwise."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, sqlite3.Error) and disk_problem(seen) is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def storage_error(exc: BaseException) -> StoreError:
    """The one translation of a failed write: 507 ``StorageUnavailable`` with a French message for a disk
    problem, a plain ``StoreError`` otherwise."""
    problem = disk_problem(exc)
    error: StoreError = (StorageUnavailable(_DISK_MESSAGES[problem], code=problem) if problem is not None
                         else StoreError(f"écriture en base impossible : {exc}"))
    error.__cause__ = exc
    return error


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the agent's pragmas. Autocommit mode: transactions are explicit."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        # Deleted rows (destroyed document keys) are overwritten, not left in free pages.
        conn.execute("PRAGMA secure_delete = ON")
    return conn


def make_private(path: Path) -> None:
    """The data folder 0700, the database and its WAL files 0600, created so and tightened if an older agent
    (or a umask of 022) left them readable: they hold INS numbers, consents, traces and pairing invites.
    On Windows the folder under the user's profile already is private; chmod changes only the read-only bit."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        if (path.parent / name).exists():
            os.chmod(path.parent / name, 0o600)


def open_sync(path: Path) -> sqlite3.Connection:
    """For short-lived commands (`relais token create`): a migrated write connection."""
    make_private(path)
    conn = connect(path)
    apply_migrations(conn)
    return conn


def _damaged(path: Path, detail: str) -> str:
    return (f"la base de l'agent est endommagée ({path}) : {detail}. L'agent ne démarre pas, pour ne pas accepter "
            "d'ordres qu'il ne pourrait pas garder ; restaurez la dernière sauvegarde de ce fichier.")


def _check_integrity(conn: sqlite3.Connection) -> None:
    """``PRAGMA quick_check`` at start: a damaged store (bad sector, torn copy) is refused with a French message
    instead of accepting orders it may lose and answering 500 on its order list."""
    problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise sqlite3.DatabaseError("database disk image is malformed: " + "; ".join(problems))


def _start_refused(path: Path, exc: BaseException) -> StoreError:
    """Why the store cannot open at start, in French: a full or read-only disk names itself."""
    problem = disk_problem(exc)
    if problem == "disk_full":
        return StorageUnavailable(f"le disque du dossier de données {path.parent} est plein : l'agent ne peut pas "
                                  "démarrer. Libérez de la place puis relancez-le.", code=problem)
    if problem == "disk_read_only":
        return StorageUnavailable(f"le dossier de données {path.parent} est en lecture seule ou interdit en "
                                  "écriture pour ce compte : l'agent ne peut pas démarrer.", code=problem)
    if problem == "disk_error":
        return StorageUnavailable(f"le disque du dossier de données {path.parent} refuse l'écriture (plein, quota "
                                  "atteint ou défaillant) : l'agent ne peut pas démarrer.", code=problem)
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StoreError(f"ouverture de la base {path} impossible : {detail}")


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: Future[Any]


class Database:
    def __init__(self, path: Path, *, readers: int = 2, clock: Clock | None = None) -> None:
        self.path = path
        self._clock = clock or SystemClock()
        # The disk's last refusal, until a write succeeds again: /v1/status and the tray say it.
        self.fault: StorageUnavailable | None = None
        self.fault_since: str | None = None
        # Called (from the writer thread) when the disk starts or stops refusing writes; None when it is back.
        self.on_fault: Callable[[StorageUnavailable | None], None] | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="relais-db-read")
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self._closed = False
        self.commits = 0  # for benchmarks: how many fsynced transactions carried the writes

    def open(self) -> None:
        try:
            make_private(self.path)
        except OSError as exc:
            raise _start_refused(self.path, exc) from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(self.path)
            _check_integrity(conn)
            apply_migrations(conn)
        except (sqlite3.DatabaseError, StoreError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, StoreError):  # a database from a newer agent
                raise
            if "malformed" in str(exc) or "not a database" in str(exc):
                raise StoreError(_damaged(self.path, str(exc)), code="store_damaged") from exc
            raise _start_refused(self.path, exc) from exc
        self._writer = threading.Thread(target=self._run_writer, args=(conn,), name="relais-db-write", daemon=True)
        self._writer.start()

    def _run_writer(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._commit_batch(conn, batch)
                if stop:
                    self._fold_wal(conn)
                    return
        finally:
            conn.close()

    @staticmethod
    def _fold_wal(conn: sqlite3.Connection) -> None:
        """On a clean stop, copy the WAL into the database file and empty it: a backup or a copy of relais.db
        alone then holds every acknowledged order (they were only in relais.db-wal before)."""
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("report du journal WAL dans la base impossible à l'arrêt : %s", exc)
            return
        if busy:
            log.warning("report du journal WAL incomplet à l'arrêt : un autre programme lit la base")

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[_Job, bool, Any]] = []
        changes = conn.total_changes
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = job.fn(conn)
                except BaseException as exc:
                    refused = _disk_cause(exc)
                    if refused is not None:
                        # The disk refused a statement (SQLite may already have rolled the whole transaction
                        # back): the batch fails as a refused COMMIT does, with the disk's reason.
                        raise refused from exc
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((job, False, exc))
                else:
                    conn.execute("RELEASE job")
                    results.append((job, True, value))
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # a full disk may refuse the rollback's journal too
                    conn.execute("ROLLBACK")
            error = storage_error(exc)
            self._set_fault(error if isinstance(error, StorageUnavailable) else self.fault)
            for job in batch:
                job.future.set_exception(error)
            return
        if self.fault is not None and conn.total_changes != changes:
            self._set_fault(None)  # a commit that wrote nothing proves nothing about the disk
        for job, ok, value in results:
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _set_fault(self, fault: StorageUnavailable | None) -> None:
        changed = (fault is None) != (self.fault is None) or (
            fault is not None and self.fault is not None and fault.code != self.fault.code)
        if not changed:
            return
        if fault is not None:
            log.error("le disque refuse l'écriture (%s) : les demandes qui écrivent répondent 507", fault.code)
            self.fault_since = rfc3339(self._clock.now())
        else:
            log.warning("le disque accepte de nouveau l'écriture : l'agent reprend")
            self.fault_since = None
        self.fault = fault
        if self.on_fault is not None:
            try:
                self.on_fault(fault)
            except Exception:
                log.exception("notification d'état du disque")

    def health(self) -> dict[str, Any]:
        """For ``/v1/status``: can the agent write, and if not, why (in French) and since when."""
        fault = self.fault
        return {"writable": fault is None,
                "problem": None if fault is None else {"code": fault.code, "message": fault.message,
                                                       "since": self.fault_since}}

    def _read_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._read_lock:
                self._read_conns.append(conn)
        return conn

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue a write from any thread; the future resolves after the fsynced commit."""
        if self._closed or self._writer is None:
            raise StoreError("la base est fermée")
        future: Future[T] = Future()
        self._jobs.put(_Job(fn, future))
        return future

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # shield: a client that disconnects must not cancel a write that is already queued.
        return await asyncio.shield(asyncio.wrap_future(self.submit(fn)))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("la base est fermée")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._read_conn()))

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self._read_conn())

    def close(self) -> None:
        """Finish every queued write, fold the WAL into the database, then close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        # Readers first: the writer's checkpoint on its way out can then fold the whole WAL.
        self._readers.shutdown(wait=True)
        with self._read_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()
        if self._writer is not None:
            self._jobs.put(None)
            self._writer.join()
