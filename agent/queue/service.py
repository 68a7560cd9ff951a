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
import base64
import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.clock import Clock, rfc3339
from agent.domain import dmp_rules
from agent.domain.orders import CANCELLABLE, DeliveryState, NewOrder
from agent.domain.policy import Actor, FeedingGate, TraceEvent, TraceRecorder
from agent.errors import Conflict, InvalidInput, NotFound
from agent.logs import get_logger
from agent.queue.events import OrderEvents
from agent.queue.executor import QueueExecutor
from agent.queue.intake import Intake, body_hash
from agent.store import order_display
from agent.store import orders as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database
from agent.store.dmp_documents import last_visibility
from agent.store.ins_provenance import insi_oid
from agent.store.preferences import delay_override
from agent.xml.cda_header import CdaHeader, ReadyCda, parse_cda_header, read_ready_cda

log = get_logger("queue")
FEEDING_OPPOSITION = "opposition-alimentation"  # the patient's opposition (consent book), not a test-book code


class DocumentSource(Protocol):
    """The documents part: the CDA of an order's ``document`` (built when needed, always validated)."""

    async def order_document(self, document: dict[str, Any], patient: dict[str, Any],
                             author: dict[str, Any], sender: dict[str, Any] | None = None) -> bytes: ...

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
        patient, author, sender = prepared.get("patient"), prepared.get("author"), prepared.get("sender")
        cda = await self.documents.order_document(document, patient if isinstance(patient, dict) else {},
                                                  author if isinstance(author, dict) else {},
                                                  sender if isinstance(sender, dict) else None)
        if ready is not None and ready.cda != cda:
            ready = root = None  # not the document the checks were given: read what was validated
        header = parse_cda_header(cda, root) if root is not None else None
        new = await self._checked(prepared, cda, client_name, fingerprint=body_hash(body), header=header)
        if "dmp" in new.destinations:
            await self._feeding(new, prepared, client_name)
            await self._replacement(new, prepared, client_name)
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
        if isinstance(content.get("sender"), dict):
            body["sender"] = content["sender"]
        if content.get("replaces"):
            body["replaces"] = content["replaces"]
        prepared = self.rules(body)
        cda = await self.documents.order_document(prepared["document"], body["patient"] or {}, body["author"] or {})
        new = await self._checked(prepared, cda, f"poste:{origin}", forwarded=True)
        # The author too: the holder signs with that author's CPS, so the order must be the author's own.
        claimed = {k: str(meta.get(k, "")) for k in ("ins", "ins_oid", "identity_status", "document_unique_id")}
        claimed["author_rpps"] = str(meta.get("author_rpps", ""))[-11:]
        derived = {"ins": new.ins, "ins_oid": new.ins_oid, "identity_status": new.identity_status,
                   "document_unique_id": new.document_unique_id, "author_rpps": new.author_rpps[-11:]}
        if claimed != derived or set(new.destinations) != set(destinations):
            raise InvalidInput("L'ordre transmis ne correspond pas à son contenu.", code="forward_mismatch")
        if "dmp" in new.destinations:
            await self._feeding(new, body, f"poste:{origin}")
            # A replacement's checks ran on the origin, which knows what it sent (the previous version may have
            # left from there); the holder looks the previous version up in the DMP just before the send.

    async def _feeding(self, new: NewOrder, body: dict[str, Any], client_name: str) -> None:
        """The patient's opposition to feeding their DMP; a refusal is traced (the rule: the opposition the
        patient expressed, recorded in the consent book)."""
        try:
            await self.feeding.check_feeding(new.ins)
        except InvalidInput as opposed:
            opposed.extra.setdefault("rule", FEEDING_OPPOSITION)
            await self._trace_refusal(opposed, body, client_name)
            raise

    async def _replacement(self, new: NewOrder, body: dict[str, Any], client_name: str) -> None:
        """TD2.1b (RPLC, [CDT] 2.1-140): the version replaced is one this practice fed to this patient's DMP and
        that left (EX_2.1-1130: the software finds what it fed); a document once visible to the patient or the
        legal representatives is never hidden from them again by a replacement (MEMENTO "MASQUAGE", EX_3.3-1040/
        1045, 409 naming the field). The visibility compared is the one TD3.3a/b last set from this workstation,
        else the one the previous version was sent with. The DMP is asked (ObjectRef) just before the send."""
        content = json.loads(new.payload)
        reference = content.get("replaces")
        if not reference:
            return
        try:
            found = await self.db.read(lambda c: repo.fed_version(c, reference))
            if found is None or found[0].ins != new.ins:
                raise dmp_rules.refusal("replaces", "Document à remplacer inconnu : ce poste n'a envoyé aucun "
                                                    "document de cet identifiant au DMP de ce patient.",
                                        code="replaced_document_unknown", rule=dmp_rules.RULE_UNIQUE_ID)
            previous, delivery = found
            if delivery.state is not DeliveryState.SENT:
                raise Conflict("Le document à remplacer n'est pas (encore) dans le DMP : son envoi n'a pas abouti. "
                               "Annulez ou retirez cet envoi et créez-en un nouveau plutôt qu'un remplacement.",
                               code="replaced_document_not_sent", field="replaces", rule=dmp_rules.RULE_REPLACEMENT,
                               state=delivery.state.value)
            changed = await self.db.read(lambda c: last_visibility(c, previous.document_unique_id))
            shown = (await self.readable([previous])).get(previous.id, {})
            before = dmp_rules.Flags.of(changed if changed is not None else shown.get("visibility") or {})
            after = dmp_rules.Flags.of(content.get("visibility") or {})
            dmp_rules.check_visibility_change(before, after, prefix="visibility.")
        except (InvalidInput, Conflict) as refused:
            await self._trace_refusal(refused, body, client_name)
            raise

    async def _checked(self, body: dict[str, Any], cda: bytes, client_name: str,
                       fingerprint: str | None = None, *, forwarded: bool = False,
                       header: CdaHeader | None = None) -> NewOrder:
        """The intake's checks, then the DMP's identity rule (EX_GEN-1530, [CDT] 0.2-080): an order for the DMP
        names an INS this workstation obtained through INSi, never a NIA. A refusal under one of the test book's
        rules is traced with the rule (CONF.14) before it reaches the caller: nothing of it was sent."""
        try:
            # The doctor's own cancellation delay (dashboard settings), for an order that does not set one.
            delay = None if forwarded or "delay_seconds" in body else await self.db.read(delay_override)
            new = self.intake.check(body, cda, client_name, header=header, fingerprint=fingerprint,
                                    default_delay=delay)
            if "dmp" in new.destinations:
                obtained = await self.db.read(lambda c: insi_oid(c, new.ins))
                if obtained is None and forwarded:
                    # The INSi call was made on the origin workstation, a paired peer of the practice, whose
                    # submit applied this rule before forwarding: its record stays there. Every other rule
                    # (NIA, QUAL, the document's) applies here again.
                    obtained = new.ins_oid
                dmp_rules.check_identity(new.ins, new.ins_oid, obtained)
        except InvalidInput as refused:
            if "rule" in refused.extra:
                await self._trace_refusal(refused, body, client_name)
            raise
        return new

    async def _trace_refusal(self, refused: InvalidInput | Conflict, body: dict[str, Any], client_name: str) -> None:
        patient, author = body.get("patient"), body.get("author")
        ins = patient.get("ins") if isinstance(patient, dict) else None
        rpps = author.get("rpps") if isinstance(author, dict) else None
        await self.traces.record(TraceEvent(
            action="dmp.refused", actor=Actor(rpps=str(rpps)[-11:] if isinstance(rpps, str) else None,
                                              workstation=self.workstation, client=client_name),
            ins=ins if isinstance(ins, str) else None, outcome="refused",
            details={"rule": refused.extra["rule"], "code": refused.code,
                     "operation": "replacement" if body.get("replaces") else "order"}))

    async def _insert(self, new: NewOrder) -> tuple[repo.OrderView, bool]:
        now_dt = self.clock.now()
        now, now_text = now_dt.timestamp(), rfc3339(now_dt)
        summary = order_display.summary_of(new.payload)

        def insert(c: Any) -> tuple[repo.OrderView, bool]:
            order, created = repo.insert_order(c, self.cipher, new, now, now_text)
            if created:  # what the queue shows the doctor, sealed, committed with the order
                order_display.put(c, self.cipher, order.id, summary, now_text)
            return order, created

        order, created = await self.db.write(insert)
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

    async def readable(self, orders: Sequence[repo.OrderView]) -> dict[str, dict[str, Any]]:
        """What the doctor reads of these orders (title, patient's name and birth date, author, visibility)."""
        ids = [o.id for o in orders]
        return await self.db.read(lambda c: order_display.read_many(c, self.cipher, ids)) if ids else {}

    # --- read --------------------------------------------------------------------------------------------

    async def get(self, order_id: str) -> repo.OrderView:
        return await self.db.read(lambda c: repo.require_order(c, order_id, with_attempts=True))

    async def list_orders(self, *, state: str | None = None, ins: str | None = None, author: str | None = None,
                          limit: int = 50, before_seq: int | None = None) -> list[repo.OrderView]:
        return await self.db.read(lambda c: repo.list_orders(c, state=state, ins=ins, author=author, limit=limit,
                                                             before_seq=before_seq))

    async def document(self, unique_id: str) -> list[tuple[repo.OrderView, repo.DeliveryView]]:
        return await self.db.read(lambda c: repo.document_status(c, unique_id))

    async def order_cda(self, order_id: str) -> bytes:
        """The CDA an order carries (to show it: ``GET /v1/cda/render?order=``); 404 once its content is erased."""
        def read(conn: Any) -> bytes | None:
            repo.require_order(conn, order_id)
            return repo.open_payload(conn, self.cipher, order_id)

        payload = await self.db.read(read)
        if payload is None:
            raise NotFound("Le contenu de cet envoi a été effacé (durée de conservation écoulée).",
                           code="content_destroyed")
        return base64.b64decode(json.loads(payload)["cda_base64"])

    # --- act ---------------------------------------------------------------------------------------------

    async def cancel(self, order_id: str, client_name: str = "") -> repo.OrderView:
        before = await self.db.read(lambda c: repo.require_order(c, order_id))
        if self.forwarding is not None and any(d.state is DeliveryState.FORWARDED for d in before.deliveries):
            # The holder decides; its refusal reaches the user. A holder that never acknowledged the forward and
            # does not answer gives the order back ("recalled"): it is then cancelled here like a local one.
            if await self.forwarding.cancel_forwarded(order_id) != "recalled":
                order = await self.db.read(lambda c: repo.require_order(c, order_id))
                await self.traces.record(self._trace_event("order.cancelled", order, client_name))
                return order
            before = await self.db.read(lambda c: repo.require_order(c, order_id))
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

    async def dismiss(self, order_id: str, client_name: str = "") -> repo.OrderView:
        """"Retirer" a failed send: its failed deliveries are cancelled (the others are untouched), traced in
        the same transaction. As for a cancel, a failure that may have reached its service is checked first."""
        before = await self.db.read(lambda c: repo.require_order(c, order_id))
        await self._reconcile_before_cancel(before, only=DeliveryState.FAILED)
        now = self.clock.now().timestamp()
        event = self._trace_event("order.dismissed", before, client_name)

        def dismiss(c: Any) -> repo.OrderView:
            order = repo.dismiss_failed(c, order_id, now)
            self.traces.record_in(c, event)
            return order

        order = await self.db.write(dismiss)
        log.info("envoi %s : échec retiré", order_id)
        self.events.publish(order)
        return order

    async def _reconcile_before_cancel(self, order: repo.OrderView, only: DeliveryState | None = None) -> None:
        """A delivery whose earlier attempt may have reached its service is not called cancelled on a guess:
        the service is asked first. Found there: it is recorded sent and the cancel is refused (409
        already_sent); unreachable: 503, try again. The cancel's own transaction then re-checks the states, so
        a send that starts meanwhile still answers 409 already_sending."""
        for delivery in order.deliveries:
            if not delivery.uncertain or delivery.state not in CANCELLABLE or only not in (None, delivery.state):
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

    async def retry_failed(self, client_name: str = "") -> list[str]:
        """"Réessayer tout": every failed delivery goes back to ready; the ids of the orders concerned."""
        now = self.clock.now().timestamp()
        order_ids = await self.db.write(lambda c: repo.retry_failed(c, now))
        if order_ids:
            log.info("%d envoi(s) en échec relancé(s) par %s", len(order_ids), client_name or "?")
            await self.events.changed(order_ids)
            self.executor.wake()
        return order_ids

    async def set_paused(self, paused: bool, client_name: str) -> bool:
        await self.executor.set_paused(paused)
        log.info("envois %s par %s", "suspendus" if paused else "repris", client_name)
        self.events.publish_raw("queue.paused" if paused else "queue.resumed", client=client_name)
        return paused

    async def status(self) -> dict[str, Any]:
        counts = await self.db.read(repo.counts_by_state)
        # "troubled": services answering errors (5xx, TLS, timeouts), tried again one delivery at a time.
        return {"queue": {**counts, "offline": sorted(self.executor.offline),
                          "troubled": sorted(self.executor.troubled()), "paused": self.executor.paused}}

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
