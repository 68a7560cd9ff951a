"""The send-order use cases, one owner for each, whatever door they come by (API, CLI, tray, dashboard, a peer):
submit, read, cancel, send now, retry, pause; and accepting an order another workstation forwards.

``submit`` is the whole "create an order" sequence: the destinations' rules (MSSanté recipients and masking), the
document (built and validated by the documents part), the intake checks (identity, destinations, delay), the
feeding gate (the patient's opposition), the durable insert, the event, and the certificat de santé notice. It
answers once the order is committed and fsynced (``Database.write``), never later: the sending happens in the
executor, in the background (invariants 1 and 6).

The queue never imports the parts it uses: each comes in as a small protocol below, built by the composition
root. Every change publishes ``order.updated`` (ids and states only).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.clock import Clock, rfc3339
from agent.domain.orders import CANCELLABLE, DeliveryState, NewOrder
from agent.domain.policy import Actor, FeedingGate, TraceEvent, TraceRecorder
from agent.errors import Conflict, InvalidInput
from agent.logs import get_logger
from agent.queue.events import OrderEvents
from agent.queue.executor import QueueExecutor
from agent.queue.intake import Intake, body_hash
from agent.store import orders as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database
from agent.xml.cda_header import ReadyCda, parse_cda_header, read_ready_cda

log = get_logger("queue")


class DocumentSource(Protocol):
    """The documents part: the CDA of an order's ``document`` (built when needed, always validated)."""

    async def order_document(self, document: dict[str, Any], patient: dict[str, Any],
                             author: dict[str, Any]) -> bytes: ...

    def cse_notice(self, body: dict[str, Any], cda_root: Any = None) -> dict[str, Any] | None:
        """LGC.CSE.04: the certificat de santé this document makes due (kind, title, message), or None.
        ``cda_root``: the body's ready CDA, already parsed."""
        ...


class ForwardedOrders(Protocol):
    """The routing part: orders this workstation handed to the one holding the author's CPS."""

    async def cancel_forwarded(self, order_id: str) -> str: ...

    async def annotate(self, data: dict[str, Any]) -> dict[str, Any]: ...


class DestinationRules(Protocol):
    """The body with its automatic recipients, checked; ``cda_root``: the body's ready CDA, already parsed."""

    def __call__(self, body: dict[str, Any], *, cda_root: Any = None) -> dict[str, Any]: ...


Annotator = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]  # adds a part's view to an order's JSON


@dataclass(frozen=True, slots=True)
class Submitted:
    order: repo.OrderView
    created: bool  # False: the same client_ref and body were already stored (the stored order is answered)
    cse_due: dict[str, Any] | None = None


class OrderService:
    def __init__(self, *, db: Database, cipher: ContentCipher, clock: Clock, intake: Intake,
                 executor: QueueExecutor, events: OrderEvents, documents: DocumentSource,
                 rules: DestinationRules, feeding: FeedingGate, traces: TraceRecorder,
                 forwarding: ForwardedOrders | None = None, annotators: Sequence[Annotator] = (),
                 workstation: str = "") -> None:
        self.db = db
        self.cipher = cipher
        self.clock = clock
        self.intake = intake
        self.executor = executor
        self.events = events
        self.documents = documents
        self.rules = rules
        self.feeding = feeding
        self.traces = traces
        self.forwarding = forwarding
        self.annotators = tuple(annotators)
        self.workstation = workstation

    # --- submit ------------------------------------------------------------------------------------------

    async def submit(self, body: dict[str, Any], client_name: str) -> Submitted:
        """Check and store; the same client_ref with the same body returns the stored order (created=False);
        with another body, Conflict ``client_ref_conflict``."""
        client_ref = body.get("client_ref")
        if isinstance(client_ref, str):
            existing = await self.db.read(lambda c: repo.find_by_client_ref(c, client_ref))
            if existing is not None and existing.body_hash == body_hash(body):
                return Submitted(existing, False)  # fast path; the insert re-checks under the writer's lock
        # A ready CDA is decoded and parsed once here, for the destinations' rules, the header and the CSE
        # notice (its validation runs in the documents part's worker, on the bytes).
        ready = await _read_ready(body.get("document"))
        root = ready.root if ready is not None else None
        prepared = self.rules(body, cda_root=root)
        document = prepared.get("document")
        if not isinstance(document, dict):
            raise InvalidInput.field("document", "Le document est obligatoire (objet document).")
        patient, author = prepared.get("patient"), prepared.get("author")
        cda = await self.documents.order_document(document, patient if isinstance(patient, dict) else {},
                                                  author if isinstance(author, dict) else {})
        if ready is not None and ready.cda != cda:
            ready = root = None  # not the document the checks were given: read what was validated
        header = parse_cda_header(cda, root) if root is not None else None
        new = self.intake.check(prepared, cda, client_name, header=header, fingerprint=body_hash(body))
        if "dmp" in new.destinations:
            await self.feeding.check_feeding(new.ins)
        order, created = await self._insert(new)
        notice = self.documents.cse_notice(prepared, root)
        if created and notice is not None:
            self.events.publish_raw("cse.due", order_id=order.id, kind=notice["kind"], title=notice["title"],
                                    message=notice["message"])
        return Submitted(order, created, notice)

    async def check_forward(self, meta: dict[str, Any], payload: bytes, origin: str) -> None:
        """The checks a forwarded order gets here, the same as one from this workstation's LGC: the
        destinations' rules, the document's validation, the identity (QUAL for the DMP, the CDA's INS), the
        patient's opposition recorded on this workstation. The metadata must say what the payload says."""
        try:
            content = json.loads(payload)
            destinations = [str(d) for d in meta["destinations"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput("Ordre transmis incomplet.") from exc
        if not isinstance(content, dict):
            raise InvalidInput("Ordre transmis incomplet.")
        body: dict[str, Any] = {
            "patient": content.get("patient"), "author": content.get("author"),
            "document": {"cda_base64": content.get("cda_base64")},
            "visibility": content.get("visibility", {}),
            "destinations": {"dmp": "dmp" in destinations, "patient_mss": "patient_mss" in destinations,
                             "mss": [{"address": d.removeprefix("mss:")} for d in destinations
                                     if d.startswith("mss:")]},
            "delay_seconds": 0,
        }
        if isinstance(content.get("mss_message"), dict):
            body["mss_message"] = content["mss_message"]
        prepared = self.rules(body)
        cda = await self.documents.order_document(prepared["document"], body["patient"] or {}, body["author"] or {})
        new = self.intake.check(prepared, cda, f"poste:{origin}")
        claimed = {k: str(meta.get(k, "")) for k in ("ins", "ins_oid", "identity_status", "document_unique_id")}
        derived = {"ins": new.ins, "ins_oid": new.ins_oid, "identity_status": new.identity_status,
                   "document_unique_id": new.document_unique_id}
        if claimed != derived or set(new.destinations) != set(destinations):
            raise InvalidInput("L'ordre transmis ne correspond pas à son contenu.", code="forward_mismatch")
        if "dmp" in new.destinations:
            await self.feeding.check_feeding(new.ins)

    async def _insert(self, new: NewOrder) -> tuple[repo.OrderView, bool]:
        now_dt = self.clock.now()
        now, now_text = now_dt.timestamp(), rfc3339(now_dt)
        order, created = await self.db.write(lambda c: repo.insert_order(c, self.cipher, new, now, now_text))
        if created:
            log.info("envoi %s enregistré (%d destinataire(s), délai %d s)", order.id, len(order.deliveries),
                     new.delay_seconds)
            self.events.publish(order)
            self.executor.due_at(order.send_at)
        return order, created

    async def annotate(self, data: dict[str, Any]) -> dict[str, Any]:
        """An order's JSON with what each part adds (MSSanté Message-IDs and acknowledgements, routing)."""
        for annotator in self.annotators:
            data = await annotator(data)
        if self.forwarding is not None:
            data = await self.forwarding.annotate(data)
        return data

    # --- read --------------------------------------------------------------------------------------------

    async def get(self, order_id: str) -> repo.OrderView:
        return await self.db.read(lambda c: repo.require_order(c, order_id, with_attempts=True))

    async def list_orders(self, *, state: str | None = None, ins: str | None = None, author: str | None = None,
                          limit: int = 50, before_seq: int | None = None) -> list[repo.OrderView]:
        return await self.db.read(lambda c: repo.list_orders(c, state=state, ins=ins, author=author, limit=limit,
                                                             before_seq=before_seq))

    async def document(self, unique_id: str) -> list[tuple[repo.OrderView, repo.DeliveryView]]:
        return await self.db.read(lambda c: repo.document_status(c, unique_id))

    # --- act ---------------------------------------------------------------------------------------------

    async def cancel(self, order_id: str, client_name: str = "") -> repo.OrderView:
        before = await self.db.read(lambda c: repo.require_order(c, order_id))
        if self.forwarding is not None and any(d.state is DeliveryState.FORWARDED for d in before.deliveries):
            await self.forwarding.cancel_forwarded(order_id)  # the holder decides; its refusal reaches the user
            order = await self.db.read(lambda c: repo.require_order(c, order_id))
            await self.traces.record(self._trace_event("order.cancelled", order, client_name))
            return order
        await self._reconcile_before_cancel(before)
        now = self.clock.now().timestamp()
        event = self._trace_event("order.cancelled", before, client_name)

        def cancel(c: Any) -> repo.OrderView:
            order = repo.cancel_order(c, order_id, now)
            if before.state is not DeliveryState.CANCELLED:
                self.traces.record_in(c, event)  # the cancellation and its trace commit together
            return order

        order = await self.db.write(cancel)
        if before.state is not DeliveryState.CANCELLED:
            log.info("envoi %s annulé", order_id)
            self.events.publish(order)
        return order

    async def _reconcile_before_cancel(self, order: repo.OrderView) -> None:
        """A delivery whose earlier attempt may have reached its service is not called cancelled on a guess:
        the service is asked first. Found there: it is recorded sent and the cancel is refused (409
        already_sent); unreachable: 503, try again. The cancel's own transaction then re-checks the states, so
        a send that starts meanwhile still answers 409 already_sending."""
        for delivery in order.deliveries:
            if not delivery.uncertain or delivery.state not in CANCELLABLE:
                continue
            entry = await self.executor.already_delivered(order, delivery)
            if entry is None:
                continue
            now = self.clock.now().timestamp()
            await self.db.write(functools.partial(_mark_reconciled, delivery_id=delivery.id, now=now,
                                                  entry=entry or None))
            self.events.publish(await self.db.read(lambda c: repo.require_order(c, order.id)))
            raise Conflict("Le document a déjà été reçu par le destinataire : il ne peut plus être annulé.",
                           code="already_sent")

    async def send_now(self, order_id: str) -> repo.OrderView:
        now = self.clock.now().timestamp()
        order = await self.db.write(lambda c: repo.release_order(c, order_id, now))
        self.events.publish(order)
        self.executor.wake()
        return order

    async def retry(self, order_id: str) -> repo.OrderView:
        now = self.clock.now().timestamp()
        order = await self.db.write(lambda c: repo.retry_order(c, order_id, now))
        self.events.publish(order)
        self.executor.wake()
        return order

    async def set_paused(self, paused: bool, client_name: str) -> bool:
        await self.executor.set_paused(paused)
        log.info("envois %s par %s", "suspendus" if paused else "repris", client_name)
        self.events.publish_raw("queue.paused" if paused else "queue.resumed", client=client_name)
        return paused

    async def status(self) -> dict[str, Any]:
        counts = await self.db.read(repo.counts_by_state)
        return {"queue": {**counts, "offline": sorted(self.executor.offline), "paused": self.executor.paused}}

    def _trace_event(self, action: str, order: repo.OrderView, client_name: str) -> TraceEvent:
        return TraceEvent(action=action, actor=Actor(rpps=order.author_rpps, workstation=self.workstation,
                                                     client=client_name),
                          ins=order.ins, object=order.document_unique_id, details={"order_id": order.id})


_PARSE_IN_THREAD_BYTES = 256 * 1024  # a larger ready CDA is decoded and parsed off the event loop


async def _read_ready(document: Any) -> ReadyCda | None:
    raw = document.get("cda_base64") if isinstance(document, dict) else None
    if isinstance(raw, str) and len(raw) > _PARSE_IN_THREAD_BYTES:
        return await asyncio.to_thread(read_ready_cda, document)
    return read_ready_cda(document)


def _mark_reconciled(conn: Any, *, delivery_id: int, now: float, entry: str | None) -> None:
    repo.mark_sent(conn, delivery_id, None, now, entry, reconciled=True)
