"""Test helpers for the send-order queue: a minimal CDA, order bodies, and an in-memory DMP gateway.

``MemoryDmp`` is a protocol-level fake of ``DeliveryGateway`` (no mock.patch): it stores what it receives by
document uniqueId, can be told to fail the way the real service does, and counts every submission, so a test
can check "sent exactly once" the way the simulator would.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.clock import FrozenClock
from agent.connectivity import ConnectivityTracker
from agent.domain.delivery import DeliveryJob, Lookup, Receipt
from agent.domain.ins import OID_INS_NIR, compute_key
from agent.domain.orders import DeliveryState
from agent.domain.policy import TraceEvent
from agent.errors import DuplicateUniqueId, PermanentRemoteError, ServiceUnreachable, TransientRemoteError
from agent.events import EventBus
from agent.queue.events import OrderEvents
from agent.queue.executor import QueueExecutor, QueueSettings
from agent.queue.intake import Intake, decode_cda
from agent.queue.service import OrderService
from agent.store.crypto import ContentCipher
from agent.store.db import Database
from tests.support.ins import record_insi_answer


def ins_value(serial: int = 1) -> str:
    thirteen = f"27903512{15000 + serial:05d}"[:13]
    return f"{thirteen}{compute_key(thirteen):02d}"


def make_cda(unique_root: str | None = None, *, ins: str | None = None, oid: str = OID_INS_NIR,
             extra: str = "", type_code: str = "11488-4") -> bytes:
    root = unique_root or f"2.25.{uuid.uuid4().int}"
    ins = ins or ins_value()
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <id root="{root}"/>
  <code code="{type_code}" codeSystem="2.16.840.1.113883.6.1" displayName="Note de consultation"/>
  <title>Compte rendu {extra}</title>
  <effectiveTime value="20261207101500+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget><patientRole><id root="{oid}" extension="{ins}"/></patientRole></recordTarget>
  <author><time value="20261207101500+0100"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="810003456789"/>
  </assignedAuthor></author>
  <component><nonXMLBody><text>{extra}</text></nonXMLBody></component>
</ClinicalDocument>""".encode()


def order_body(*, client_ref: str | None = None, delay: int | None = 0, status: str = "QUAL",
               cda: bytes | None = None, ins: str | None = None, dmp: bool = True,
               mss: list[str] | None = None, rpps: str = "10003456789", oid: str = OID_INS_NIR) -> dict[str, Any]:
    ins = ins or ins_value()
    body: dict[str, Any] = {
        "patient": {"ins": ins, "oid": oid, "identity_status": status, "birth_name": "TEST",
                    "given_names": ["ALICE"], "sex": "F", "birth_date": "1979-03-15"},
        "author": {"rpps": rpps},
        "document": {"cda_base64": base64.b64encode(cda or make_cda(ins=ins, oid=oid)).decode()},
        "destinations": {"dmp": dmp, "mss": [{"address": a} for a in (mss or [])]},
    }
    if client_ref is not None:
        body["client_ref"] = client_ref
    if delay is not None:
        body["delay_seconds"] = delay
    return body


@dataclass
class MemoryDmp:
    """A DMP that keeps what it got; ``mode`` = "ok", "down", "error500", "refuse", "timeout_after_store",
    "refuse_after_store" (stores it, then answers a refusal), "all500" (look-ups fail too), "refuse_find500"
    (refuses, and look-ups fail)."""

    mode: str = "ok"
    stored: dict[str, str] = field(default_factory=dict)  # document uniqueId -> entryUUID
    submissions: list[str] = field(default_factory=list)  # every submission received, in order
    finds: int = 0
    calls: int = 0  # every deliver() call, answered or not (the rate at which the queue tries)
    fail_next: int = 0  # that many next submissions answer 500, then ok
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    entered: asyncio.Event | None = None
    release: asyncio.Event | None = None

    async def deliver(self, job: DeliveryJob) -> Receipt:
        self.calls += 1
        if self.entered is not None and self.release is not None:
            self.entered.set()
            await self.release.wait()
        if self.mode == "down":
            raise ServiceUnreachable("DMP injoignable", service="dmp", maybe_delivered=False)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise TransientRemoteError("Erreur 500 du DMP", service="dmp")
        if self.mode in ("error500", "all500"):
            raise TransientRemoteError("Erreur 500 du DMP", service="dmp")
        if self.mode in ("refuse", "refuse_find500"):
            raise PermanentRemoteError("Le DMP refuse le document : format non conforme.", service="dmp")
        self.submissions.append(job.lookup.document_unique_id)
        if job.lookup.document_unique_id in self.stored:
            raise DuplicateUniqueId("déjà enregistré", service="dmp")
        entry = f"urn:uuid:{uuid.UUID(int=next(self._ids))}"
        self.stored[job.lookup.document_unique_id] = entry
        if self.mode == "timeout_after_store":
            raise TransientRemoteError("Le DMP n'a pas répondu à temps", service="dmp")
        if self.mode == "refuse_after_store":
            raise PermanentRemoteError("Le DMP a refusé la requête : erreur interne.", service="dmp")
        return Receipt(entry)

    async def find(self, lookup: Lookup) -> Receipt | None:
        self.finds += 1
        if self.mode == "down":
            raise ServiceUnreachable("DMP injoignable", service="dmp", maybe_delivered=False)
        if self.mode in ("all500", "refuse_find500"):
            raise TransientRemoteError("Erreur 500 du DMP", service="dmp")
        entry = self.stored.get(lookup.document_unique_id)
        return Receipt(entry) if entry else None


class Traces:
    """The trace seam, collecting what the queue records (in its transactions or not)."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []

    async def record(self, event: TraceEvent) -> None:
        self.events.append(event)

    def record_in(self, conn: Any, event: TraceEvent) -> None:
        self.events.append(event)


class PlainDocuments:
    """The documents part for queue tests: the order's CDA as given (validation is the CDA part's own tests)."""

    async def order_document(self, document: dict[str, Any], patient: dict[str, Any],
                             author: dict[str, Any], sender: dict[str, Any] | None = None) -> bytes:
        return decode_cda(document)

    def cse_notice(self, body: dict[str, Any], cda_root: Any = None) -> dict[str, Any] | None:
        return None


class NoOpposition:
    """No patient opposed feeding their DMP (the rights part has its own tests)."""

    async def check_feeding(self, ins: str) -> None:
        return None


class Harness:
    """A queue over a real store file with an injected gateway; ``restart`` reopens it as a new agent would."""

    def __init__(self, path: Path, clock: FrozenClock, dmp: Any, *, allow_test_oids: bool = False,
                 gateways: dict[str, Any] | None = None, grace: float = 5.0, **settings: Any) -> None:
        self.path = path
        self.clock = clock
        self.dmp = dmp
        self.gateways = gateways if gateways is not None else {"dmp": dmp}
        self.grace = grace  # how long stop() lets sends in flight finish (short: a crash)
        self.master = os.urandom(32)
        self.settings = QueueSettings(**{"backoff_base_seconds": 10.0, "backoff_cap_seconds": 300.0,
                                         "probe_interval_seconds": 30.0, **settings})
        self.rand_value = 0.5
        self.cps_here = True
        self.traces = Traces()
        self.db: Database | None = None
        self.allow_test_oids = allow_test_oids

    async def start(self) -> OrderService:
        self.db = Database(self.path)
        self.db.open()
        cipher = ContentCipher(self.master)
        self.bus = EventBus(self.clock)
        events = OrderEvents(self.db, self.bus)
        self.executor = QueueExecutor(self.db, cipher, self.gateways, self.settings, self.clock,
                                      events=events, traces=self.traces,
                                      connectivity=ConnectivityTracker(self.bus, self.clock),
                                      rand=lambda: self.rand_value,
                                      card_check=lambda rpps: None if self.cps_here else "CPS absente",
                                      bus=self.bus)
        self.service = OrderService(
            db=self.db, cipher=cipher, clock=self.clock,
            intake=Intake(allow_test_oids=self.allow_test_oids, default_delay=900), executor=self.executor,
            events=events, documents=PlainDocuments(), rules=lambda body, cda_root=None: body, feeding=NoOpposition(),
            traces=self.traces)
        await self.executor.recover()
        return self.service

    async def create(self, body: dict[str, Any], client: str, *, insi: bool = True) -> tuple[Any, bool]:
        """Submit an order; ``insi``: its INS was obtained through INSi first, as the DMP requires."""
        patient = body.get("patient")
        if insi and isinstance(patient, dict) and isinstance(patient.get("ins"), str) and self.db is not None:
            await record_insi_answer(self.db, patient["ins"], str(patient.get("oid", "")))
        submitted = await self.service.submit(body, client)
        return submitted.order, submitted.created

    async def restart(self) -> OrderService:
        await self.stop()
        return await self.start()

    async def stop(self) -> None:
        if self.db is not None:
            await self.executor.stop(grace=self.grace)
            self.db.close()
            self.db = None

    async def run(self) -> None:
        await self.executor.run_once()

    async def state(self, order_id: str) -> DeliveryState:
        return (await self.service.get(order_id)).deliveries[0].state


def kit_cda(reference: Path, person: Any, example: str = "VAC-NOTE_2023.01.xml") -> tuple[bytes, str]:
    """An ANS example document of the CI-SIS kit given to a test patient (a fresh document id): a CDA that passes
    the validation a real order gets. Returns the document and its unique id."""
    from relais_sandbox.dmp import reidentify  # the simulators' helper; tests may use them

    data = (reference / "ci-sis" / "ExemplesCDA" / example).read_bytes()
    return reidentify(data, person.ins, person.oid, person.birth_name, person.first_given_name, person.sex,
                      person.birth_date, f"2.25.{uuid.uuid4().int}")


class TransactionCounter:
    """Counts, from now on, the transactions asked of ``db.write`` (each is fsynced at most once; the store may
    group concurrent ones into one commit)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self._write = db.write
        db.write = self._counted  # type: ignore[method-assign]

    async def _counted(self, fn: Any) -> Any:
        self.count += 1
        return await self._write(fn)
