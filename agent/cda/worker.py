"""CI-SIS validation in worker processes: the agent's event loop never waits for Saxon, and Saxon's compiled
schematrons (about 250 MB with the whole kit) live in the workers, not in the agent.

Why processes and not threads: Saxon (saxonche) holds the GIL for a whole transform, so a validation run in a
thread still stalls every request, SSE stream and card event of the agent (seconds for a crafted document). Why
dedicated ``multiprocessing`` workers and not a ``ProcessPoolExecutor``: a validation over its time budget must be
stopped, and an executor can only be torn down whole (every other validation in flight would fail with it); here
each worker runs one document at a time, so the one over budget is killed and replaced alone. The ``spawn``
start method: a fresh interpreter (the agent has threads, SQLite handles and card sessions a ``fork`` would copy
in an undefined state), and the same behaviour on Windows, macOS and Linux.

Each worker is fed the document's bytes over a pipe and answers a ``ValidationReport`` (or the ``RelaisError`` the
validator raised, rebuilt here). Budgets: a document over ``max_bytes`` is refused before it reaches a worker
(413 ``cda_too_large``); a validation over ``timeout`` kills its worker (422 ``cda_validation_timeout``; the next
validation gets a fresh worker). A worker that dies answers 503 ``validation_engine_failed`` and is replaced.

The verdict of a document already checked is kept (``VerdictCache``, keyed by the SHA-256 of its bytes, the last
``cache_entries`` documents): an LGC that sends the same CDA again (a retry, a resend to another destination)
gets the same report without a worker. Only reports are kept, never a refusal of the engine (timeout, crash).
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import pickle
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from agent.cda.validation import CdaValidator, ValidationReport
from agent.errors import InvalidInput, PayloadTooLarge, RelaisError, Unavailable
from agent.lifecycle import Lifecycle, cancel_and_wait
from agent.logs import get_logger

log = get_logger("cda")

_STOP_GRACE_SECONDS = 5.0
# Parsing (size-capped, linear) and compiling the kit's schematrons (kit files only): bounded, but seconds on a
# cold worker of a busy machine.
_PREPARE_BUDGET_SECONDS = 300.0
_PREPARED = ("prepared",)
_HASH_IN_THREAD_BYTES = 256 * 1024


def default_workers() -> int:
    """Workers when the configuration says 0 (automatic): two on a machine with two cores or more (about 60 notes
    per second there, against 35 with one), else one. Only one starts with the agent; the second starts the first
    time two documents wait together, so an agent that validates one document at a time holds one worker
    (about 270 MB), not two."""
    return min(2, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    workers: int = 0  # 0: default_workers()
    max_bytes: int = 20 * 1024 * 1024
    timeout_seconds: float = 30.0
    warm_up: bool = True
    cache_entries: int = 256  # verdicts kept (0: none); a report is a few KiB at most
    # A worker beyond the first leaves after this long unused (its ~270 MB given back: on a shared Remote Desktop
    # server every session's agent has its own); the next burst starts it again (a few seconds, its XSLT cached).
    extra_idle_seconds: float = 120.0


class VerdictCache:
    """The reports of the last documents checked, by the SHA-256 of their bytes (least recently used out)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._reports: OrderedDict[bytes, ValidationReport] = OrderedDict()
        self.hits = 0

    @staticmethod
    def key(cda: bytes) -> bytes:
        return hashlib.sha256(cda).digest()

    def get(self, key: bytes) -> ValidationReport | None:
        report = self._reports.get(key)
        if report is not None:
            self._reports.move_to_end(key)
            self.hits += 1
        return report

    def put(self, key: bytes, report: ValidationReport) -> None:
        if self.entries <= 0:
            return
        self._reports[key] = report
        self._reports.move_to_end(key)
        while len(self._reports) > self.entries:
            self._reports.popitem(last=False)

    def __len__(self) -> int:
        return len(self._reports)


# --- the worker's side ---------------------------------------------------------------------------------------


def _warm(validator: CdaValidator) -> None:
    try:
        validator.warm()
    except Exception as exc:
        log.warning("préparation des schématrons CI-SIS impossible : %s", exc)


def serve(conn: Connection, kit_dir: str, cache_dir: str | None, warm_up: bool) -> None:
    """A worker's main loop: one document's bytes in, one reply out, until the pipe closes."""
    validator = CdaValidator(Path(kit_dir), Path(cache_dir) if cache_dir else None)
    if warm_up:
        # In the background of the worker: the first document compiles only what it needs, as before.
        threading.Thread(target=_warm, args=(validator,), name="cda-warm-up", daemon=True).start()
    while True:
        try:
            cda = conn.recv_bytes()
        except (EOFError, OSError):
            return
        reply: tuple[Any, ...]
        try:
            root = validator.parse(cda)
            validator.prepare(root)
            conn.send(_PREPARED)  # the time budget starts now: what follows depends on the document
            reply = ("ok", validator.validate_root(root))
        except RelaisError as exc:
            reply = _relais_error(exc)
        except Exception as exc:  # any engine failure becomes an answer, never a dead worker
            reply = ("failed", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


def _relais_error(exc: RelaisError) -> tuple[Any, ...]:
    """The error as the agent will raise it: the exception itself when it survives pickling (its class, code,
    field errors), else its code and French message."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own object, checking that it travels
    except Exception:
        return ("error", exc.code, exc.message)
    return ("raise", exc)


# --- the agent's side ----------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, context: Any, kit_dir: Path, cache_dir: Path | None, warm_up: bool) -> None:
        ours, theirs = context.Pipe(duplex=True)
        self.process = context.Process(
            target=serve, args=(theirs, str(kit_dir), str(cache_dir) if cache_dir else None, warm_up),
            name="relais-cda-validation", daemon=True)
        self.process.start()
        theirs.close()
        self.conn: Connection = ours
        self.checking = False  # between the worker's "prepared" and its report: the timed part
        self.busy = False  # a document sent, its answer not read yet
        self.idle_since = time.monotonic()

    def call(self, cda: bytes, timeout: float) -> tuple[Any, ...] | None:
        """The worker's reply, or None when it did not answer within ``timeout`` seconds (blocking). The
        budget counts from the moment the worker has parsed the document and compiled its schematrons (a cold
        worker compiles for seconds, whatever the document)."""
        self.busy = True
        self.conn.send_bytes(cda)
        if not self.conn.poll(_PREPARE_BUDGET_SECONDS):
            return None
        reply: tuple[Any, ...] = self.conn.recv()
        if reply != _PREPARED:
            self.busy = False
            return reply  # refused before the checks (not XML, DOCTYPE, too large for the parser)
        self.checking = True
        try:
            if not self.conn.poll(timeout):
                return None
            reply = self.conn.recv()
        finally:
            self.checking = False
        self.busy = False
        return reply

    def kill(self) -> None:
        self.process.kill()
        self.process.join(_STOP_GRACE_SECONDS)  # dead: a thread still polling the pipe sees its end, then it closes
        self.conn.close()

    def close(self) -> None:
        """Polite stop: the worker sees the pipe close and returns; killed if it does not."""
        self.conn.close()
        self.process.join(_STOP_GRACE_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(_STOP_GRACE_SECONDS)


class ValidationPool(Lifecycle):
    """``await pool.validate(cda)``: the CI-SIS report of one document, computed in a worker process."""

    def __init__(self, kit_dir: Path, cache_dir: Path | None = None,
                 settings: PoolSettings | None = None) -> None:
        self.kit_dir = kit_dir
        self.cache_dir = cache_dir
        self.settings = settings or PoolSettings()
        self.workers = self.settings.workers or default_workers()
        self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker | None] | None = None
        self._all: set[_Worker] = set()
        self._closed = False
        self.replaced = 0  # workers killed (time budget, crash, cancellation) and replaced: /v1/status, tests
        self.retired = 0  # extra workers stopped after extra_idle_seconds unused
        self.verdicts = VerdictCache(self.settings.cache_entries)
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue()
        if self.settings.warm_up:
            # Start one worker now: it compiles the schematrons in its own background while the agent serves. The
            # others start when documents wait together (see _queue).
            self._release(await self._acquire())
        if self.workers > 1:
            self._reaper = asyncio.create_task(self._reap(), name="cda-worker-reaper")

    async def _reap(self) -> None:
        period = max(1.0, self.settings.extra_idle_seconds / 4)
        while True:
            await asyncio.sleep(period)
            await self.retire_idle(time.monotonic())

    async def retire_idle(self, now: float) -> int:
        """Stop the started workers beyond the most recently used one that have been idle ``extra_idle_seconds``
        at ``now`` (monotonic); their slots start a worker again on demand. Returns how many left."""
        idle = self._queue()
        slots: list[_Worker | None] = []
        while not idle.empty():
            slots.append(idle.get_nowait())
        # LIFO: the last slot is the next one taken; the first started one found from there is kept.
        kept_one = any(w is not None and w.busy for w in self._all)
        leaving: list[_Worker] = []
        for index in range(len(slots) - 1, -1, -1):
            worker = slots[index]
            if worker is None:
                continue
            if not kept_one:
                kept_one = True
            elif now - worker.idle_since >= self.settings.extra_idle_seconds:
                leaving.append(worker)
                self._all.discard(worker)
                slots[index] = None
        for slot in sorted(slots, key=lambda w: w is not None):  # free slots at the bottom, workers on top
            idle.put_nowait(slot)
        for worker in leaving:
            self.retired += 1
            await asyncio.to_thread(worker.close)
        return len(leaving)

    async def stop(self) -> None:
        # Idle workers leave when their pipe closes; one still running a document is killed (it holds nothing
        # worth keeping: the XSLT cache is written by atomic rename), so the agent stops at once.
        self._closed = True
        if self._reaper is not None:
            await cancel_and_wait(self._reaper)
        workers, self._all = list(self._all), set()
        for worker in workers:
            await asyncio.to_thread(worker.kill if worker.busy else worker.close)

    @property
    def checking(self) -> int:
        """How many workers are running a document's checks right now (tests wait on it)."""
        return sum(1 for worker in list(self._all) if worker.checking)

    def status(self) -> dict[str, Any]:
        return {"workers": self.workers, "running": len(self._all), "replaced": self.replaced, "retired": self.retired,
                "max_bytes": self.settings.max_bytes, "timeout_seconds": self.settings.timeout_seconds}

    async def validate(self, cda: bytes) -> ValidationReport:
        if len(cda) > self.settings.max_bytes:
            limit = self.settings.max_bytes / (1024 * 1024)
            raise PayloadTooLarge(
                f"Document CDA trop volumineux pour être validé : {len(cda) / (1024 * 1024):.1f} Mo, au plus "
                f"{limit:g} Mo (clé cda.max_document_mb).", code="cda_too_large")
        if self._closed:
            raise Unavailable("La validation CDA est arrêtée (l'agent s'arrête).", code="validation_engine_failed")
        # Hashing runs at about 1 GB/s: a large document is hashed off the event loop.
        key = VerdictCache.key(cda) if len(cda) <= _HASH_IN_THREAD_BYTES else await asyncio.to_thread(
            VerdictCache.key, cda)
        cached = self.verdicts.get(key)
        if cached is not None:
            return cached
        worker = await self._acquire()
        healthy = False
        try:
            reply = await asyncio.to_thread(worker.call, cda, self.settings.timeout_seconds)
            if reply is None:
                raise InvalidInput(
                    f"Le document CDA n'a pas pu être validé en {self.settings.timeout_seconds:g} s : il est "
                    "probablement malformé ou anormalement complexe. Il n'est pas accepté ; vérifiez-le ou "
                    "réessayez (clé cda.validation_timeout_seconds).", code="cda_validation_timeout")
            healthy = True
        except (EOFError, OSError) as exc:
            raise Unavailable("Le moteur de validation CDA s'est arrêté pendant la validation ; il redémarre, "
                              "réessayez.", code="validation_engine_failed") from exc
        finally:
            if healthy:
                self._release(worker)
            else:
                # Over budget, dead, or the caller gave up (cancelled): the worker may still be busy with this
                # document, so it is killed and its slot refilled on the next acquire.
                self.replaced += 1
                self._all.discard(worker)
                await asyncio.shield(asyncio.to_thread(worker.kill))
                self._release(None)
        report = _answer(reply)
        self.verdicts.put(key, report)
        return report

    # -- slots ---------------------------------------------------------------------------------------------------
    def _queue(self) -> asyncio.Queue[_Worker | None]:
        if self._idle is None:
            # A slot is a started worker or None (to start on demand): at most ``workers`` run at once. Last in,
            # first out: an idle started worker is always taken before a worker is started, so the second one
            # exists only once two documents were checked at the same time.
            self._idle = asyncio.LifoQueue()
            for _ in range(max(1, self.workers)):
                self._idle.put_nowait(None)
        return self._idle

    async def _acquire(self) -> _Worker:
        slot = await self._queue().get()
        if slot is not None and slot.process.is_alive():
            return slot
        if slot is not None:
            self._all.discard(slot)
            self.replaced += 1
            await asyncio.to_thread(slot.kill)
        try:
            worker = await asyncio.to_thread(_Worker, self._context, self.kit_dir, self.cache_dir,
                                             self.settings.warm_up)
        except BaseException:
            self._queue().put_nowait(None)
            raise
        self._all.add(worker)
        return worker

    def _release(self, worker: _Worker | None) -> None:
        if self._closed and worker is not None:
            worker.close()
            return
        if worker is not None:
            worker.idle_since = time.monotonic()
        self._queue().put_nowait(worker)


def _answer(reply: tuple[Any, ...]) -> ValidationReport:
    kind = reply[0]
    if kind == "ok":
        report: ValidationReport = reply[1]
        return report
    if kind == "raise" and isinstance(reply[1], RelaisError):
        raise reply[1]
    if kind == "error":
        raise RelaisError(reply[2], code=reply[1])
    raise Unavailable(f"Le moteur de validation CDA a échoué : {reply[1]}", code="validation_engine_failed")
