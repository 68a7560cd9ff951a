"""The order executor: releases due deliveries, sends them, retries, waits for the network, reconciles.

The store is the truth, not a timer in memory. The loop re-reads the next due time from the database every
time it wakes (an order arrives, a send ends, a user acts) and at least every ``recheck_seconds``, and compares
it with the wall clock: after a restart, a machine sleep or a clock change, whatever is due is released at the
next pass, and nothing is ever lost because a process-local timer died with its process.

Exactly once (invariant 3): a delivery is marked ``sending`` (with its attempt) in a committed transaction
before the request leaves; after a crash, a timeout or any transient failure that may have reached the service,
the next attempt first asks the service (``find``, TD3.1 by uniqueId) and records ``sent`` if it is there.
The identifiers were fixed at creation, so a ``DuplicateUniqueId`` answer also means delivered. A refusal is
not taken as final on the spot either: the service is asked first whether it holds the document after all.

Retry policy: transient trouble (5xx, TLS, timeouts, unreadable answers) is retried for as long as it lasts
(``max_attempts`` 0), each delivery with its own capped, jittered backoff; and the failing *service* is paused
as a whole (``service_pause_seconds``): while it fails, one delivery at a time tries it, after a wait that doubles
up to ``backoff_cap_seconds``, so a thousand waiting orders cost one request per interval, not a thousand.

This module never logs patient data or document content: ids and states only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.clock import Clock, ClockJump, ClockWatch
from agent.connectivity import ConnectivityTracker
from agent.domain.delivery import DeliveryGateway, DeliveryJob, Lookup
from agent.domain.orders import Event, attempts_exhausted, backoff_seconds, service_pause_seconds
from agent.domain.policy import Actor, TraceEvent, TraceRecorder
from agent.errors import (
    DuplicateUniqueId,
    InvalidInput,
    PermanentRemoteError,
    RefusedBeforeSending,
    RelaisError,
    ServiceUnreachable,
    StoreError,
    TransientRemoteError,
    Unavailable,
)
from agent.events import EventBus
from agent.lifecycle import Lifecycle
from agent.logs import get_logger
from agent.queue.events import OrderEvents, QueueWaker
from agent.store import orders as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database

log = get_logger("queue")


class ServiceMessage(str):
    """An attempt's French message that also carries the service's own code and text of the refusal (PRE_ERR: the
    DMP's registry error, SOAP fault or HL7v3 acknowledgement), kept on the delivery beside it. A plain ``str``
    everywhere else, so an attempt's outcome keeps its shape."""

    remote: tuple[str, str] | None = None


def said(error: RelaisError, message: str | None = None) -> str:
    """``message`` (default the error's) with the service's code and text the error carries (``dmp_code``,
    ``dmp_text``), if any."""
    text = ServiceMessage(error.message if message is None else message)
    code = error.extra.get("dmp_code")
    if code:
        text.remote = (str(code), str(error.extra.get("dmp_text") or ""))
    return text


@dataclass(frozen=True, kw_only=True)
class QueueSettings:
    delay_seconds: int = 900
    max_attempts: int = 0  # transient failures in a row before a delivery fails; 0: never
    backoff_base_seconds: float = 30.0
    backoff_cap_seconds: float = 900.0
    probe_interval_seconds: float = 30.0
    concurrency: int = 4
    attempt_timeout_seconds: float = 90.0
    recheck_seconds: float = 5.0
    retention_days: int = 30
    workstation: str = ""


class QueueExecutor(Lifecycle):
    def __init__(self, db: Database, cipher: ContentCipher, gateways: Mapping[str, DeliveryGateway],
                 settings: QueueSettings, clock: Clock, *, events: OrderEvents, traces: TraceRecorder,
                 connectivity: ConnectivityTracker, waker: QueueWaker | None = None, bus: EventBus | None = None,
                 rand: Callable[[], float] = random.random,
                 card_check: Callable[[str], str | None] = lambda rpps: None,
                 card_free: Callable[[repo.Claim], bool] = lambda claim: False,
                 clock_watch: ClockWatch | None = None) -> None:
        self._db = db
        self._cipher = cipher
        self._gateways = dict(gateways)
        self.settings = settings
        self._clock = clock
        self._rand = rand
        self._card_check = card_check  # why the author's CPS cannot sign here (French), or None
        self._card_free = card_free  # a delivery no CPS takes part in (a delegate's send in indirect mode)
        self._events = events
        self._traces = traces
        self._connectivity = connectivity
        self._bus = bus  # a CPS inserted or logged in: orders waiting for it are looked at at once
        self._wakeup = waker or QueueWaker()
        self.clock_watch = clock_watch or ClockWatch(clock)  # a wall clock jump is seen before a pass releases
        self._task: asyncio.Task[None] | None = None
        self._card_watch: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}  # deliveries whose request is under way (the slots)
        self._inflight_kind: dict[int, str] = {}
        self._claiming = 0  # free slots a claim being written may fill (not yet in ``_inflight``)
        # A service in trouble (transient failures in a row): how many, when the count last grew (monotonic), and
        # when one delivery may try it again. Kept in memory: after a restart the first attempts find out again.
        self._trouble: dict[str, int] = {}
        self._trouble_marked: dict[str, float] = {}
        self._trouble_until: dict[str, float] = {}
        self._trouble_since: dict[str, float] = {}  # when the trouble began (Unix time): who already tried since
        self._tasks: set[asyncio.Task[None]] = set()  # every delivery task, until its outcome is on disk
        # Outcomes the store refused to record (full or read-only disk): kept and written at each pass, so a
        # delivery never stays "sending" until a restart once the disk accepts writes again.
        self._unrecorded: dict[int, tuple[repo.Claim, tuple[Event, str | None, str, str, bool]]] = {}
        self.offline: set[str] = set()
        self._next_probe: dict[str, float] = {}
        self._next_retention = 0.0
        self._wake_at = 0.0  # when the loop plans to look again (Unix time)
        self._cards_due = 0.0  # monotonic time of the next look at orders waiting for a card
        # The doctor paused sending (tray or dashboard): nothing new leaves; delays still run, cancel still works.
        self.paused = False
        self._stopping = False  # stop() was called: nothing new is claimed (a finishing send takes no next one)

    # --- life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        await self.recover()
        self._task = asyncio.create_task(self._run(), name="relais-queue")
        if self._bus is not None:
            self._card_watch = asyncio.create_task(self._watch_cards(self._bus), name="relais-queue-cards")

    async def _watch_cards(self, bus: EventBus) -> None:
        subscription = bus.subscribe()
        try:
            async for event in subscription:
                if event.type in ("card.inserted", "cps.login", "psc.login"):  # the author can sign or act
                    self.cards_changed()
        finally:
            subscription.close()

    async def recover(self) -> None:
        """Rebuild the in-memory view from the store: interrupted sends back to ready (to reconcile), and
        which services were unreachable when the agent stopped."""
        now = self._now()
        recovered = await self._db.write(lambda c: repo.recover_sending(c, now))
        if recovered:
            log.info("reprise : %d envoi(s) interrompu(s) seront vérifiés auprès du service avant tout renvoi",
                     len(recovered))
        for kind in self._gateways:
            if await self._db.read(lambda c, k=kind: repo.has_waiting_network(c, k)):  # type: ignore[misc]
                self.offline.add(kind)
        self.paused = await self._db.read(repo.is_paused)
        await self._changed(recovered)

    async def set_paused(self, paused: bool) -> None:
        """Pause or resume sending; the choice is stored, so a restart keeps it."""
        await self._db.write(lambda c: repo.set_paused(c, paused))
        self.paused = paused
        if not paused:
            self._wakeup.wake()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking work; sends in flight get ``grace`` seconds, then are cancelled (they stay ``sending``
        on disk and are reconciled at the next start)."""
        self._stopping = True
        for task in (self._task, self._card_watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._card_watch = None
        pending = list(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    def wake(self) -> None:
        """Something changed in the store (send-now, retry, a send ended): look again now."""
        self._wakeup.wake()

    def cards_changed(self) -> None:
        """A CPS was inserted or logged in: orders waiting for a card are looked at now."""
        self._cards_due = 0.0
        self._wakeup.wake()

    def due_at(self, when: float) -> None:
        """A new order falls due at ``when`` (Unix time): wake now only if the loop would sleep past it, so a
        burst of deferred orders costs no pass each."""
        if when < self._wake_at:
            self._wakeup.wake()

    # --- the loop ----------------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            self._wake_at = math.inf  # while it looks, anything new must make it look again
            try:
                await self._pass()
                timeout = await self._sleep_for()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("passe de la file d'envoi en erreur ; nouvelle tentative")
                timeout = self.settings.recheck_seconds
            self._wake_at = self._now() + timeout
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # not wait_for: see agent/events.py
                    await self._wakeup.wait()

    async def run_once(self) -> None:
        """One pass, and wait for the sends it started (tests and benchmarks drive the executor with it)."""
        await self._pass()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _pass(self) -> None:
        if self._unrecorded:
            await self._record_pending()
        jump = self.clock_watch.check()
        if jump is not None:
            await self._clock_jumped(jump)
        now = self._now()
        offline = set(self.offline)
        due = await self._db.read(repo.next_due)
        if due is not None and due <= now:  # a write (and its commit) only when something is due
            released = await self._db.write(lambda c: repo.release_due(c, now, offline))
            await self._changed(released)
        if self._clock.monotonic() >= self._cards_due:
            # Not at every pass: a card that looks present but cannot sign must not spin the loop.
            self._cards_due = self._clock.monotonic() + self.settings.recheck_seconds
            await self._check_cards()
        for kind in list(self.offline):
            if self._clock.monotonic() >= self._next_probe.get(kind, 0.0):
                await self._probe(kind)
        await self._dispatch()
        if self._clock.monotonic() >= self._next_retention:
            self._next_retention = self._clock.monotonic() + 3600.0
            await self.erase_expired()

    async def _sleep_for(self) -> float:
        due = await self._db.read(repo.next_due)
        timeout = self.settings.recheck_seconds
        if due is not None:
            timeout = min(timeout, max(0.0, due - self._now()))
        for kind in self.offline:
            timeout = min(timeout, max(0.0, self._next_probe.get(kind, 0.0) - self._clock.monotonic()))
        for kind in self._trouble:
            timeout = min(timeout, max(0.0, self._trouble_until.get(kind, 0.0) - self._clock.monotonic()))
        return timeout

    def troubled(self) -> dict[str, float]:
        """Services paused after transient failures: kind -> seconds before one delivery tries again."""
        mono = self._clock.monotonic()
        return {kind: max(0.0, self._trouble_until.get(kind, 0.0) - mono) for kind in self._trouble}

    def _free_slots(self) -> int:
        return self.settings.concurrency - len(self._inflight) - self._claiming

    async def _dispatch(self) -> None:
        free = self._free_slots()
        claim = self._claimer(free, self._now(), busy=set(self._inflight_kind.values()))
        if claim is None:
            return
        mono = self._clock.monotonic()
        self._claiming += free
        try:
            claims, views = await self._db.write(_with_views(claim))
        finally:
            self._claiming -= free
        for claim_ in claims:  # started in the order claimed (creation order), before anything else may run
            self._start(claim_, mono)
        self._publish(views)

    def _claimer(self, free: int, now: float, *, busy: set[str]) -> Callable[[Any], list[repo.Claim]] | None:
        """The transaction step that takes up to ``free`` ready deliveries (None when nothing may be taken):
        healthy services first; a service in trouble gets one delivery at a time, once its pause is over (a cap
        on the rate of requests); ``busy``: services with a request under way."""
        if self.paused or self._stopping or free <= 0:
            return None
        mono = self._clock.monotonic()
        healthy = [k for k in self._gateways if k not in self.offline and k not in self._trouble]
        trying = [k for k in self._gateways if k in self._trouble and k not in self.offline and k not in busy
                  and mono >= self._trouble_until.get(k, 0.0)]
        if not (healthy or trying):
            return None

        def claim(c: Any) -> list[repo.Claim]:
            taken = repo.claim_ready(c, self._cipher, healthy, free, now) if healthy else []
            for kind in trying:
                if len(taken) < free:
                    repo.promote_oldest_retrying(c, kind, self._trouble_since.get(kind, now), now)
                    taken += repo.claim_ready(c, self._cipher, [kind], 1, now)
            return taken

        return claim

    def _start(self, claim: repo.Claim, mono: float) -> None:
        if claim.kind in self._trouble:
            self._trouble_until[claim.kind] = math.inf  # until this attempt's outcome says more
        task = asyncio.create_task(self._deliver(claim, mono))
        self._inflight[claim.delivery_id] = task
        self._inflight_kind[claim.delivery_id] = claim.kind
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _service_outcome(self, kind: str, event: Event, started: float) -> bool:
        """What an attempt says about its service: transient trouble pauses it (longer each time), an answer
        (sent, or refused for a reason of its own) ends the pause. Attempts already under way when the count
        last grew do not make it grow again: one bad moment seen by four parallel sends is one failure."""
        if event is Event.TRANSIENT:
            mono = self._clock.monotonic()
            if kind not in self._trouble or started >= self._trouble_marked.get(kind, -math.inf):
                self._trouble[kind] = self._trouble.get(kind, 0) + 1
                self._trouble_marked[kind] = mono
                if self._trouble[kind] == 1:
                    self._trouble_since[kind] = self._now()
                    log.warning("service %s en erreur : envois espacés jusqu'à son rétablissement", kind)
            pause = service_pause_seconds(self._trouble[kind], base=self.settings.backoff_base_seconds,
                                          cap=self.settings.backoff_cap_seconds, rand=self._rand)
            self._trouble_until[kind] = mono + pause
        elif event in (Event.DELIVERED, Event.PERMANENT):
            self._trouble_marked.pop(kind, None)
            self._trouble_until.pop(kind, None)
            self._trouble_since.pop(kind, None)
            if self._trouble.pop(kind, None) is not None:
                log.info("service %s de nouveau en état de marche", kind)
                return True
        return False

    # --- one delivery ------------------------------------------------------------------------------------

    async def _deliver(self, claim: repo.Claim, started: float) -> None:
        lookup = Lookup(claim.ins, claim.ins_oid, claim.document_unique_id, claim.submission_set_unique_id,
                        claim.order_id, claim.destination)
        gateway = self._gateways[claim.kind]
        # A cancellation (agent stopping) leaves the delivery "sending" on disk: the next start reconciles it.
        try:
            outcome = await self._attempt(claim, lookup, gateway)
            if outcome[0] is Event.TRANSIENT and attempts_exhausted(claim.round_attempts, self.settings.max_attempts):
                outcome = await self._last_look(claim, lookup, gateway, outcome)
        except asyncio.CancelledError:
            self._release_slot(claim)
            raise
        except Exception:
            log.exception("envoi %s (%s) : erreur inattendue", claim.order_id, claim.destination)
            outcome = (Event.TRANSIENT, None, "internal_error",
                       "Erreur interne de l'agent pendant l'envoi ; nouvel essai prévu.", True)
        recovered = self._service_outcome(claim.kind, outcome[0], started)
        # The slot stays this delivery's until its outcome is on disk: the same commit takes the next ready
        # delivery for it, and for any other free slot (one fsynced commit per order while the queue drains, not
        # one to record and one to claim). The loop need not look again after such a commit: it saw every ready
        # delivery it could take; whatever becomes ready later wakes the loop itself.
        refilled = False
        try:
            refilled = await self._record(claim, *outcome, recovered=recovered)
        except Exception:  # the store failed: kept, and recorded at the next pass that can write
            log.exception("envoi %s (%s) : résultat non enregistré ; nouvel essai à la prochaine passe",
                          claim.order_id, claim.destination)
            self._unrecorded[claim.delivery_id] = (claim, outcome)
        finally:
            self._release_slot(claim, wake=not refilled)

    def _start_all(self, claims: list[repo.Claim]) -> None:
        """Start the sends just claimed at once, in the order claimed: another send ending meanwhile must not
        start a newer one first."""
        mono = self._clock.monotonic()
        for claim_ in claims:
            self._start(claim_, mono)

    def _release_slot(self, claim: repo.Claim, *, wake: bool = True) -> None:
        self._inflight.pop(claim.delivery_id, None)
        self._inflight_kind.pop(claim.delivery_id, None)
        if wake:
            self.wake()

    async def _clock_jumped(self, jump: ClockJump) -> None:
        """Every running delay keeps its length across the jump (issue 23 #15), and the jump is said."""
        now = self._now()
        moved = await self._db.write(lambda c: repo.shift_due(c, jump.seconds, now))
        log.warning("horloge du poste déplacée de %+.0f s : %d envoi(s) gardent leur délai", jump.seconds, len(moved))
        if self._bus is not None:
            self._bus.publish("clock.jumped", **jump.as_dict())
        await self._changed(moved)

    async def _record_pending(self) -> None:
        """Write the outcomes the store refused earlier (the disk was full), oldest first."""
        for delivery_id, (claim, outcome) in list(self._unrecorded.items()):
            try:  # its slot was freed when the write failed: this write claims nothing (the pass dispatches)
                await self._record(claim, *outcome, claim_next=False)
            except StoreError:
                return  # the disk still refuses: the next pass tries again
            except Exception:  # the delivery moved on meanwhile: nothing left to record
                log.exception("envoi %s (%s) : résultat abandonné", claim.order_id, claim.destination)
            del self._unrecorded[delivery_id]

    async def _attempt(self, claim: repo.Claim, lookup: Lookup, gateway: DeliveryGateway
                       ) -> tuple[Event, str | None, str, str, bool]:
        """(event, entry uuid, error code, French message, still uncertain)."""
        card_problem = None if self._card_free(claim) else self._card_check(claim.author_rpps)
        if card_problem is not None:
            return Event.CARD_MISSING, None, "cps_not_here", card_problem, claim.needs_reconcile
        timeout = self.settings.attempt_timeout_seconds
        try:
            if claim.needs_reconcile:
                async with asyncio.timeout(timeout):
                    found = await gateway.find(lookup)
                if found is not None:
                    log.info("envoi %s (%s) : déjà reçu par le service, non renvoyé", claim.order_id,
                             claim.destination)
                    return Event.DELIVERED, found.entry_uuid, "reconciled", "", False
            job = DeliveryJob.from_payload(claim.order_id, claim.destination, claim.author_rpps, lookup,
                                           claim.payload)
            async with asyncio.timeout(timeout):
                receipt = await gateway.deliver(job)
            return Event.DELIVERED, receipt.entry_uuid, "", "", False
        except DuplicateUniqueId:
            log.info("envoi %s (%s) : identifiant déjà enregistré, considéré comme remis", claim.order_id,
                     claim.destination)
            return Event.DELIVERED, None, "reconciled", "", False
        except ServiceUnreachable as exc:
            # Refused or unresolved connections never carried the request; a dropped one may have.
            return Event.OFFLINE, None, exc.code, exc.message, exc.maybe_delivered
        except TimeoutError:
            return (Event.TRANSIENT, None, "remote_timeout",
                    "Le service n'a pas répondu à temps ; l'envoi sera vérifié puis retenté.", True)
        except TransientRemoteError as exc:
            return Event.TRANSIENT, None, exc.code, said(exc), True
        except (PermanentRemoteError, InvalidInput) as exc:
            # InvalidInput: the client found the document unsendable (metadata outside the DMP's value sets).
            return await self._settle_refusal(claim, lookup, gateway, exc)
        except Unavailable as exc:  # the signer (CPS) is missing or not logged in
            return Event.CARD_MISSING, None, exc.code, exc.message, True

    async def _last_look(self, claim: repo.Claim, lookup: Lookup, gateway: DeliveryGateway,
                         outcome: tuple[Event, str | None, str, str, bool]
                         ) -> tuple[Event, str | None, str, str, bool]:
        """Out of attempts (a configured ``max_attempts``): one look-up before the delivery is called failed."""
        try:
            async with asyncio.timeout(self.settings.attempt_timeout_seconds):
                found = await gateway.find(lookup)
        except (RelaisError, TimeoutError):
            return outcome
        if found is None:
            return outcome
        log.info("envoi %s (%s) : déjà reçu par le service, non renvoyé", claim.order_id, claim.destination)
        return Event.DELIVERED, found.entry_uuid, "reconciled", "", False

    async def _settle_refusal(self, claim: repo.Claim, lookup: Lookup, gateway: DeliveryGateway,
                              refusal: PermanentRemoteError | InvalidInput
                              ) -> tuple[Event, str | None, str, str, bool]:
        """A refusal is not called a failure before the service is asked whether it holds the document anyway
        (it may have stored it, then answered an error; or an earlier attempt got there). Found: delivered.
        Cannot ask now: a transient failure, asked again before anything is resent. Still "uncertain" when
        failed: a retry by the user asks first too. A refusal of the client or of a rule of this agent (nothing
        left: ``InvalidInput``, ``RefusedBeforeSending``) is not asked about: no search the CNDA would count as
        misuse (EX_3.1-1090), and an earlier uncertain attempt was already looked up before this one."""
        if isinstance(refusal, (InvalidInput, RefusedBeforeSending)):
            return Event.PERMANENT, None, refusal.code, said(refusal), False
        try:
            async with asyncio.timeout(self.settings.attempt_timeout_seconds):
                found = await gateway.find(lookup)
        except (TransientRemoteError, TimeoutError):
            return (Event.TRANSIENT, None, refusal.code,
                    said(refusal, f"{refusal.message} Le service n'a pas pu confirmer qu'il ne l'a pas reçu : "
                                  "nouvel essai prévu."), True)
        except (PermanentRemoteError, InvalidInput, Unavailable):
            found = None
        if found is not None:
            log.info("envoi %s (%s) : refusé mais déjà reçu par le service", claim.order_id, claim.destination)
            return Event.DELIVERED, found.entry_uuid, "reconciled", "", False
        return Event.PERMANENT, None, refusal.code, said(refusal), True

    async def _record(self, claim: repo.Claim, event: Event, entry_uuid: str | None, code: str, message: str,
                      uncertain: bool, *, claim_next: bool = True, recovered: bool = False) -> bool:
        """Record an attempt's outcome (and its trace) in one transaction; after a delivery or a refusal, the
        same transaction claims the next ready deliveries for the slot this one frees and any other free slot, and
        reads the orders it changed for their ``order.updated`` (no second trip to the store). ``recovered``: this
        answer ended the service's trouble, so its deliveries waiting out a backoff are ready again, to leave in
        creation order (the claim takes the oldest). True when the claim ran: the loop has nothing to look at."""
        now = self._now()
        due: float | None = None
        remote = message.remote if isinstance(message, ServiceMessage) else None
        if event is Event.TRANSIENT and attempts_exhausted(claim.round_attempts, self.settings.max_attempts):
            event = Event.PERMANENT
            message = f"Échec après {claim.round_attempts} tentatives : {message}"
        elif event is Event.TRANSIENT:
            due = now + backoff_seconds(claim.round_attempts, base=self.settings.backoff_base_seconds,
                                        cap=self.settings.backoff_cap_seconds, rand=self._rand)
        others = {k for d, k in self._inflight_kind.items() if d != claim.delivery_id}
        extra = max(0, self._free_slots()) if claim_next else 0  # free slots besides this delivery's own
        take_next = self._claimer(1 + extra, now, busy=others) \
            if claim_next and event in (Event.DELIVERED, Event.PERMANENT) else None
        released: list[str] = []

        def then(c: Any) -> tuple[list[repo.Claim], list[repo.OrderView]]:
            if recovered:
                released[:] = repo.release_retrying(c, claim.kind, now)
            claims = take_next(c) if take_next is not None else []
            return claims, _views(c, [claim.order_id, *released, *(t.order_id for t in claims)])

        record: Callable[[Any], tuple[list[repo.Claim], list[repo.OrderView]]]
        if event is Event.DELIVERED:
            reconciled = code == "reconciled"
            sent = self._trace_event("order.sent", claim, "ok")

            def record(c: Any) -> tuple[list[repo.Claim], list[repo.OrderView]]:
                repo.mark_sent(c, claim.delivery_id, claim.attempt, now, entry_uuid, reconciled=reconciled)
                self._traces.record_in(c, sent)  # the trace commits with the state it records, or neither does
                return then(c)
        else:
            # Doubt is sticky: an attempt that surely did not reach the service (a refused connection) cannot
            # clear the doubt an earlier attempt left (a timeout after the service stored the document).
            uncertain = uncertain or claim.needs_reconcile
            failed = self._trace_event("order.failed", claim, "error", code=code) \
                if event is Event.PERMANENT else None

            def record(c: Any) -> tuple[list[repo.Claim], list[repo.OrderView]]:
                repo.mark_failed_attempt(c, claim.delivery_id, claim.attempt, now, event, code, message, due_at=due,
                                         uncertain=uncertain, remote=remote)
                if failed is not None:
                    self._traces.record_in(c, failed)
                return then(c)

        claiming = extra if take_next is not None else 0
        self._claiming += claiming
        try:
            following, views = await self._db.write(record)
        finally:
            self._claiming -= claiming
        self._start_all(following)
        if event is Event.DELIVERED:
            log.info("envoi %s (%s) remis", claim.order_id, claim.destination)
        else:
            log.info("envoi %s (%s) : %s (%s)", claim.order_id, claim.destination, event.value, code)
        self._publish(views)
        if event is Event.OFFLINE:
            await self._went_offline(claim.kind)
        return take_next is not None

    async def _went_offline(self, kind: str) -> None:
        if kind not in self.offline:
            log.warning("service %s injoignable : les envois attendent le retour du réseau", kind)
            self.offline.add(kind)
        self._connectivity.report(kind, False)
        self._next_probe[kind] = self._clock.monotonic() + self.settings.probe_interval_seconds
        now = self._now()
        parked = await self._db.write(lambda c: repo.park_ready(c, kind, now))
        await self._changed(parked)

    async def _probe(self, kind: str) -> None:
        """Ask the service about the oldest waiting delivery: an answer means the network is back (and
        reconciles that delivery on the way); then every waiting delivery is released, oldest first."""
        self._next_probe[kind] = self._clock.monotonic() + self.settings.probe_interval_seconds
        target = await self._db.read(lambda c: repo.oldest_waiting_network(c, kind))
        if target is None:
            self.offline.discard(kind)
            return
        delivery_id, ins, oid, unique_id = target
        try:
            async with asyncio.timeout(self.settings.attempt_timeout_seconds):
                found = await self._gateways[kind].find(Lookup(ins, oid, unique_id, ""))
        except (TransientRemoteError, TimeoutError, Unavailable):
            return  # still unreachable, or no professional to ask as: try again later
        except Exception:
            log.exception("sonde de connectivité %s", kind)
            found = None
        now = self._now()
        if found is not None:
            await self._db.write(lambda c: repo.mark_sent(c, delivery_id, None, now, found.entry_uuid,
                                                          reconciled=True))
        released = await self._db.write(lambda c: repo.release_waiting_network(c, kind, now))
        self.offline.discard(kind)
        log.info("service %s de nouveau joignable : %d envoi(s) repris", kind, len(released))
        self._connectivity.report(kind, True)
        await self._changed(released)

    async def already_delivered(self, order: repo.OrderView, delivery: repo.DeliveryView) -> str | None:
        """Ask the service whether an earlier, ambiguous attempt of this delivery got through (before a cancel
        is allowed): its entry id when it did, None when it did not. Unavailable (503) when it cannot say."""
        gateway = self._gateways.get(delivery.kind)
        if gateway is None:
            return None
        lookup = Lookup(order.ins, order.ins_oid, order.document_unique_id, order.submission_set_unique_id,
                        order.id, delivery.destination)
        try:
            async with asyncio.timeout(self.settings.attempt_timeout_seconds):
                found = await gateway.find(lookup)
        except (TransientRemoteError, TimeoutError, Unavailable) as exc:
            raise Unavailable("Un envoi précédent a peut-être atteint le destinataire et il ne répond pas pour "
                              "le confirmer : réessayez l'annulation plus tard.", code="cancel_unverified") from exc
        if found is None:
            return None
        return found.entry_uuid or ""

    async def _check_cards(self) -> None:
        waiting = await self._db.read(repo.waiting_card)
        here: dict[str, bool] = {}  # one look at the cards per author, however many orders wait for them
        for _, rpps in waiting:
            if rpps not in here:
                here[rpps] = self._card_check(rpps) is None
        back = [delivery_id for delivery_id, rpps in waiting if here[rpps]]
        if back:
            now = self._now()
            released = await self._db.write(lambda c: repo.release_waiting_card(c, back, now))
            await self._changed(released)

    async def erase_expired(self) -> int:
        """The retention clean-up, in small batches, each its own short write: the writes waiting meanwhile
        (creates, sends) go between two batches instead of waiting for the whole clean-up."""
        now = self._now()
        cutoff = now - self.settings.retention_days * 86400
        total = 0
        cursor: int | None = 0
        while cursor is not None:
            erased, cursor = await self._db.write(
                functools.partial(repo.erase_expired_batch, cutoff=cutoff, now=now, after_seq=cursor))
            total += erased
        if total:
            log.info("conservation écoulée : contenu de %d document(s) effacé", total)
        return total

    async def _changed(self, order_ids: list[str]) -> None:
        await self._events.changed(order_ids)

    def _publish(self, views: list[repo.OrderView]) -> None:
        for view in views:
            self._events.publish(view)

    def _trace_event(self, action: str, claim: repo.Claim, outcome: str, **details: str) -> TraceEvent:
        return TraceEvent(action=action, actor=Actor(rpps=claim.author_rpps, workstation=self.settings.workstation,
                                                     client="queue"),
                          ins=claim.ins, object=claim.document_unique_id, outcome=outcome,
                          details={"order_id": claim.order_id, "destination": claim.destination,
                                   **_replacement_of(claim), **details})


def _views(conn: Any, order_ids: list[str]) -> list[repo.OrderView]:
    """The orders a write changed, read in that write's transaction, for their ``order.updated``."""
    return [o for o in (repo.load_order(conn, i) for i in dict.fromkeys(order_ids)) if o is not None]


def _with_views(claim: Callable[[Any], list[repo.Claim]]
                ) -> Callable[[Any], tuple[list[repo.Claim], list[repo.OrderView]]]:
    def step(conn: Any) -> tuple[list[repo.Claim], list[repo.OrderView]]:
        claims = claim(conn)
        return claims, _views(conn, sorted({c.order_id for c in claims}))
    return step


def _replacement_of(claim: repo.Claim) -> dict[str, str]:
    """A DMP replacement's trace names the version it replaces (TD2.1b; a uniqueId or entryUUID, no patient data)."""
    if claim.destination != "dmp" or b'"replaces"' not in claim.payload:
        return {}
    try:
        replaces = json.loads(claim.payload).get("replaces")
    except ValueError:
        return {}
    return {"replaces": replaces} if isinstance(replaces, str) and replaces else {}
