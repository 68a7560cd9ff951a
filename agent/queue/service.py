"""The send-order service the API and the CLI call: create, read, cancel, send now, retry; events and status.

Creating an order answers once the order is committed and fsynced (``Database.write``), never later: the
sending happens in the executor, in the background (invariants 1 and 6). Every change publishes
``order.updated`` with ids and states only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agent.clock import Clock, rfc3339
from agent.domain.orders import CANCELLABLE, DeliveryState
from agent.domain.policy import Actor, FeedingGate, NoTraces, TraceEvent, TraceRecorder
from agent.errors import Conflict
from agent.events import EventBus
from agent.logs import get_logger, redact
from agent.queue.executor import QueueExecutor
from agent.queue.intake import Intake, decode_cda
from agent.store import orders as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database

log = get_logger("queue")

# The documents part plugs in here: builds the CDA from {pdf_base64...} or {kind, data} documents.
DocumentBuilder = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], Awaitable[bytes]]


class OrderService:
    def __init__(self, db: Database, cipher: ContentCipher, bus: EventBus, clock: Clock, intake: Intake, *,
                 feeding_gate: FeedingGate | None = None, traces: TraceRecorder | None = None,
                 workstation: str = "", document_builder: DocumentBuilder | None = None) -> None:
        self.db = db
        self.cipher = cipher
        self.bus = bus
        self.clock = clock
        self.intake = intake
        self.feeding_gate = feeding_gate
        self.traces: TraceRecorder = traces or NoTraces()
        self.workstation = workstation
        self.document_builder = document_builder
        self.executor: QueueExecutor | None = None
        self.card_watch: asyncio.Task[None] | None = None  # wakes the executor when a CPS arrives
        # Set by the routing part: cancels an order this workstation forwarded, at the peer that holds it.
        self.forwarded_cancel: Callable[[str], Awaitable[object]] | None = None

    # --- API actions -------------------------------------------------------------------------------------

    async def create(self, body: dict[str, Any], client_name: str) -> tuple[repo.OrderView, bool]:
        """Validate and store; (order, created). The same client_ref with the same body returns the stored
        order (created=False); with another body, Conflict ``client_ref_conflict``."""
        client_ref = body.get("client_ref")
        if isinstance(client_ref, str):
            existing = await self.db.read(lambda c: repo.find_by_client_ref(c, client_ref))
            if existing is not None:
                from agent.queue.intake import body_hash

                if existing.body_hash == body_hash(body):
                    return existing, False  # fast path; the write below re-checks under the writer's lock
        document = body.get("document")
        if not isinstance(document, dict):
            from agent.errors import InvalidInput

            raise InvalidInput.field("document", "Le document est obligatoire (objet document).")
        # The documents part, when wired, builds {pdf_base64...}/{kind, data} and validates every CDA.
        if self.document_builder is None:
            cda = decode_cda(document)
        else:
            cda = await self.document_builder(document, body.get("patient") or {}, body.get("author") or {})
        new = self.intake.check(body, cda, client_name)
        if "dmp" in new.destinations and self.feeding_gate is not None:
            await self.feeding_gate.check_feeding(new.ins)
        now_dt = self.clock.now()
        now, now_text = now_dt.timestamp(), rfc3339(now_dt)
        order, created = await self.db.write(lambda c: repo.insert_order(c, self.cipher, new, now, now_text))
        if created:
            log.info("envoi %s enregistré (%d destinataire(s), délai %d s)", order.id, len(order.deliveries),
                     new.delay_seconds)
            self.publish(order)
            if self.executor is not None:
                self.executor.due_at(order.send_at)
        return order, created

    async def get(self, order_id: str) -> repo.OrderView:
        return await self.db.read(lambda c: repo.require_order(c, order_id, with_attempts=True))

    async def list_orders(self, *, state: str | None = None, ins: str | None = None, author: str | None = None,
                   limit: int = 50, before_seq: int | None = None) -> list[repo.OrderView]:
        return await self.db.read(lambda c: repo.list_orders(c, state=state, ins=ins, author=author, limit=limit,
                                                             before_seq=before_seq))

    async def cancel(self, order_id: str, client_name: str = "") -> repo.OrderView:
        now = self.clock.now().timestamp()
        before = await self.db.read(lambda c: repo.require_order(c, order_id))
        if self.forwarded_cancel is not None and any(d.state is DeliveryState.FORWARDED for d in before.deliveries):
            await self.forwarded_cancel(order_id)  # the holder decides; its refusal (409, 503) reaches the user
            order = await self.db.read(lambda c: repo.require_order(c, order_id))
            await self._trace("order.cancelled", order, client_name)
            return order
        await self._reconcile_before_cancel(before)
        order = await self.db.write(lambda c: repo.cancel_order(c, order_id, now))
        if before.state is not DeliveryState.CANCELLED:
            log.info("envoi %s annulé", order_id)
            self.publish(order)
            await self._trace("order.cancelled", order, client_name)
        return order

    async def _reconcile_before_cancel(self, order: repo.OrderView) -> None:
        """A delivery whose earlier attempt may have reached its service is not called cancelled on a guess:
        the service is asked first. Found there: it is recorded sent and the cancel is refused (409
        already_sent); unreachable: 503, try again. The cancel's own transaction then re-checks the states, so
        a send that starts meanwhile still answers 409 already_sending."""
        if self.executor is None:
            return
        for delivery in order.deliveries:
            if not delivery.uncertain or delivery.state not in CANCELLABLE:
                continue
            entry = await self.executor.already_delivered(order, delivery)
            if entry is None:
                continue
            await self._record_found(order.id, delivery.id, entry or None)
            raise Conflict("Le document a déjà été reçu par le destinataire : il ne peut plus être annulé.",
                           code="already_sent")

    async def _record_found(self, order_id: str, delivery_id: int, entry_uuid: str | None) -> None:
        now = self.clock.now().timestamp()
        await self.db.write(lambda c: repo.mark_sent(c, delivery_id, None, now, entry_uuid, reconciled=True))
        self.publish(await self.db.read(lambda c: repo.require_order(c, order_id)))

    async def send_now(self, order_id: str) -> repo.OrderView:
        now = self.clock.now().timestamp()
        order = await self.db.write(lambda c: repo.release_order(c, order_id, now))
        self.publish(order)
        self._wake()
        return order

    async def retry(self, order_id: str) -> repo.OrderView:
        now = self.clock.now().timestamp()
        order = await self.db.write(lambda c: repo.retry_order(c, order_id, now))
        self.publish(order)
        self._wake()
        return order

    async def document(self, unique_id: str) -> list[tuple[repo.OrderView, repo.DeliveryView]]:
        return await self.db.read(lambda c: repo.document_status(c, unique_id))

    # --- events and status -------------------------------------------------------------------------------

    def publish(self, order: repo.OrderView) -> None:
        # The French reason of a failure is for the doctor's notification; it names no patient.
        reason = next((d.last_error for d in order.deliveries if d.state is DeliveryState.FAILED and d.last_error),
                      None)
        self.bus.publish("order.updated", id=order.id, state=order.state.value, type_code=order.type_code,
                         deliveries=[{"destination": d.destination, "state": d.state.value} for d in order.deliveries],
                         **({"reason": redact(reason)} if reason else {}))

    async def on_executor_change(self, order_ids: list[str]) -> None:
        def load(c: Any) -> list[repo.OrderView]:
            return [o for o in (repo.load_order(c, i) for i in order_ids) if o is not None]

        for order in await self.db.read(load):
            self.publish(order)

    async def status(self) -> dict[str, Any]:
        counts = await self.db.read(repo.counts_by_state)
        offline = sorted(self.executor.offline) if self.executor else []
        paused = self.executor.paused if self.executor else False
        return {"queue": {**counts, "offline": offline, "paused": paused}}

    async def set_paused(self, paused: bool, client_name: str) -> bool:
        if self.executor is None:
            raise Conflict("La file d'envoi n'est pas active sur cet agent.", code="queue_inactive")
        await self.executor.set_paused(paused)
        log.info("envois %s par %s", "suspendus" if paused else "repris", client_name)
        self.bus.publish("queue.paused" if paused else "queue.resumed", client=client_name)
        return paused

    async def stop(self) -> None:
        if self.card_watch is not None:
            self.card_watch.cancel()
            await asyncio.gather(self.card_watch, return_exceptions=True)
            self.card_watch = None
        if self.executor is not None:
            await self.executor.stop()
            self.executor = None

    def _wake(self) -> None:
        if self.executor is not None:
            self.executor.wake()

    async def _trace(self, action: str, order: repo.OrderView, client_name: str) -> None:
        try:
            await self.traces.record(TraceEvent(
                action=action, actor=Actor(rpps=order.author_rpps, workstation=self.workstation, client=client_name),
                ins=order.ins, object=order.document_unique_id, details={"order_id": order.id}))
        except Exception:
            log.exception("trace %s non enregistrée", action)
