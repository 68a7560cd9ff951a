"""The frames journal: every raw request and answer exchanged with the DMP, INSi and MSSanté, kept for the CNDA.

Opt-in (``[frames] enabled`` or ``relais frames on``), because frames carry patient data. Each exchange is sealed
like a document (``ContentCipher``) and erased after ``[frames] retention_days``; nothing of it goes to the logs.
The transports hold this journal as their ``FrameTap`` (``agent/frames.py``); the store is the timer: the erasing
pass runs at start and every ``sweep_seconds``, and also re-reads the switch and the test code that ``relais
frames`` writes into the store, so a running agent follows them within ``refresh_seconds``.

The transaction of each exchange is named as the CNDA's book names it (TD2.1, TD0.2, INSi rechercher...) from the
SOAP action; the test code (``relais frames test-code 2.1-010``) names the case being played.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from agent.clock import Clock, rfc3339
from agent.dmp import hl7v3
from agent.dmp.soap import ACTION_ITI18, ACTION_ITI41, ACTION_ITI43, ACTION_ITI57
from agent.frames import NO_EXCHANGE, Exchange
from agent.ins.soap import ACTION_TRAITS, ACTION_VITALE
from agent.lifecycle import Lifecycle
from agent.logs import get_logger
from agent.store import frames as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database

log = get_logger("frames")

TRANSACTIONS = {
    hl7v3.TD02_ACTION: "TD0.2",
    ACTION_ITI41: "TD2.1",
    ACTION_ITI18: "TD3.1",
    ACTION_ITI43: "TD3.2",
    ACTION_ITI57: "TD3.3",
    ACTION_TRAITS: "INSi rechercher (traits)",
    ACTION_VITALE: "INSi rechercher (carte Vitale)",
    "submission": "MSSanté envoi",
    "imap": "MSSanté lecture (IMAP)",
}


def transaction_of(service: str, action: str) -> str:
    """The CNDA's name of a transaction, from the SOAP action (the service's name when unknown)."""
    if action in TRANSACTIONS:
        return TRANSACTIONS[action]
    if service == "dmp" and action.startswith("urn:hl7-org:v3:PRPA_IN2013"):
        return "TD0.3"  # the TD0.3 interaction is configuration ([dmp] td03_interaction)
    return f"{service} {action.rsplit(':', 1)[-1]}".strip()


def outcome_of(status: int | str, data: bytes) -> str:
    """A short outcome: the HTTP status (or SMTP code, or IMAP's last completion) and whether the answer is a fault
    or a failure."""
    if isinstance(status, int):
        head = f"HTTP {status}"
    else:
        head = f"SMTP {status}" if status.isdigit() else (status or "réponse")
    if b"Fault>" in data or b":Fault " in data:
        return f"{head} fault"
    if b"ResponseStatusType:Failure" in data:
        return f"{head} échec"
    if b"ResponseStatusType:PartialSuccess" in data:
        return f"{head} succès partiel"
    return head


@dataclass(frozen=True, slots=True)
class FramesSettings:
    enabled: bool = False
    retention_days: float = 3.0
    test_code: str = ""
    refresh_seconds: float = 5.0
    sweep_seconds: float = 3600.0


class _Recorded:
    def __init__(self, journal: FramesJournal, frame_id: str) -> None:
        self._journal = journal
        self._id = frame_id

    def answered(self, data: bytes, *, status: int | str = "", content_type: str = "") -> None:
        try:
            self._journal._answered(self._id, data, status, content_type)
        except Exception as exc:
            log.warning("trame non conservée : %s", type(exc).__name__)


class FramesJournal(Lifecycle):
    """A ``FrameTap``: ``exchange()`` may be called from any thread (SMTP runs in a worker thread)."""

    def __init__(self, db: Database, cipher: ContentCipher, clock: Clock, settings: FramesSettings) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self.settings = settings
        self.enabled = settings.enabled
        self.test_code = settings.test_code
        self._override: str | None = None  # set by `relais homologation run` for the case it plays
        self._pending: set[Future[Any]] = set()  # writes handed to the store, from any thread
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- the tap ---------------------------------------------------------------------------------------------

    def exchange(self, service: str, action: str, request: bytes, *, content_type: str = "") -> Exchange:
        if not self.enabled:
            return NO_EXCHANGE
        frame_id = uuid.uuid4().hex
        now = self._clock.now()
        at, at_text = now.timestamp(), rfc3339(now)
        transaction = transaction_of(service, action)
        code = self.current_test_code
        self._track(self._db.submit(lambda c: repo.insert_request(
            c, self._cipher, frame_id=frame_id, at=at, at_text=at_text, service=service, action=action,
            transaction=transaction, test_code=code, request=bytes(request), content_type=content_type)))
        return _Recorded(self, frame_id)

    def _answered(self, frame_id: str, data: bytes, status: int | str, content_type: str) -> None:
        now = self._clock.now()
        outcome = outcome_of(status, data)
        self._track(self._db.submit(lambda c: repo.record_answer(
            c, self._cipher, frame_id=frame_id, at=now.timestamp(), at_text=rfc3339(now), response=bytes(data),
            content_type=content_type, outcome=outcome)))

    def _track(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        if future.exception() is not None:
            # The kind of error only: the frame itself never reaches the logs.
            log.warning("trame non conservée : %s", type(future.exception()).__name__)

    async def flush(self) -> None:
        """Wait until every frame handed over so far is on disk."""
        with self._lock:
            pending = list(self._pending)
        if pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)

    # --- switch and test code ----------------------------------------------------------------------------------

    @property
    def current_test_code(self) -> str:
        return self._override if self._override is not None else self.test_code

    @contextmanager
    def playing(self, code: str) -> Iterator[None]:
        """Frames exchanged inside are filed under ``code`` (the run of the homologation kit)."""
        previous, self._override = self._override, code
        try:
            yield
        finally:
            self._override = previous

    async def set_enabled(self, enabled: bool) -> None:
        await self._db.write(lambda c: repo.write_setting(c, repo.ENABLED_KEY, "1" if enabled else "0"))
        self.enabled = enabled

    async def set_test_code(self, code: str) -> None:
        await self._db.write(lambda c: repo.write_setting(c, repo.TEST_CODE_KEY, code))
        self.test_code = code

    async def refresh(self) -> None:
        """Follow what ``relais frames`` wrote in the store (the configuration decides what was never set)."""
        enabled, code = await self._db.read(repo.read_settings)
        self.enabled = self.settings.enabled if enabled is None else enabled
        self.test_code = self.settings.test_code if code is None else code

    # --- retention ---------------------------------------------------------------------------------------------

    async def erase_expired(self) -> int:
        cutoff = self._clock.now().timestamp() - self.settings.retention_days * 86400
        erased = await self._db.write(lambda c: repo.erase_before(c, cutoff))
        if erased:
            log.info("conservation des trames écoulée : %d échange(s) effacé(s)", erased)
        return erased

    async def start(self) -> None:
        await self.refresh()
        await self.erase_expired()
        self._task = asyncio.create_task(self._run(), name="relais-frames")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        next_sweep = self._clock.monotonic() + self.settings.sweep_seconds
        while True:
            await asyncio.sleep(self.settings.refresh_seconds)
            try:
                await self.refresh()
                if self._clock.monotonic() >= next_sweep:
                    next_sweep = self._clock.monotonic() + self.settings.sweep_seconds
                    await self.erase_expired()
            except Exception as exc:
                log.warning("journal des trames : %s", type(exc).__name__)

    async def status(self) -> dict[str, Any]:
        total, oldest = await self._db.read(repo.count)
        return {"frames": {"enabled": self.enabled, "test_code": self.current_test_code, "count": total,
                           "oldest": oldest, "retention_days": self.settings.retention_days}}
