"""The documents service: build a CDA (N1 wrapper or N3 structured), and validate one with the CI-SIS rules.

What the API (``POST /v1/cda``, ``/v1/cda/validate``) and the queue (``POST /v1/orders``) call:

    build_document(kind, patient, author, data) -> BuiltDocument
    wrap_pdf(pdf, type_code, title, service_start, service_stop, patient, author) -> BuiltDocument
    validate(cda) -> ValidationReport              (blocking, in this process: tests, benchmarks)
    avalidate(cda) -> ValidationReport             (the agent's way: in a worker process, ``agent.cda.worker``)
    order_document(document, patient, author) -> bytes   (the queue's DocumentBuilder)
    cse_notice(body) -> str                        (the JSON of the CSE notice an order body makes due)

The builders get a ``BuildContext`` (``agent.cda.context``), never this service. Validation fails closed: without a
validator (no CI-SIS kit), an order's CDA is refused unless the configuration says ``cda.allow_unvalidated``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import date
from typing import Any

from agent.cda import n1
from agent.cda.builders import BUILDERS, KINDS
from agent.cda.context import BuildContext, BuiltDocument, uuid_oid
from agent.cda.header import PARIS, Author, add_author, parse_when, serialize
from agent.cda.vaccines import VaccineTable
from agent.cda.validation import CdaValidator, ValidationReport
from agent.cda.valuesets import ValueSets
from agent.cda.worker import ValidationPool
from agent.clock import Clock
from agent.domain import catalogue
from agent.domain.cps import CpsHolder
from agent.domain.encoding import decode_base64_field
from agent.errors import FieldError, InvalidInput, Unavailable
from agent.xml import safe

HL7 = "{urn:hl7-org:v3}"
__all__ = ["KINDS", "BuiltDocument", "CdaService"]


class CdaService:
    def __init__(
        self,
        *,
        clock: Clock,
        validator: CdaValidator | None = None,
        value_sets: ValueSets | None = None,
        vaccines: VaccineTable | None = None,
        allow_test_oids: bool = False,
        new_id: Callable[[], str] = uuid_oid,
        organisation: dict[str, Any] | None = None,
        cps_holder: Callable[[], CpsHolder | None] | None = None,
        allow_unvalidated: bool = False,
        cse_address: str = catalogue.CSE_MSS_ADDRESS,
        pool: ValidationPool | None = None,
    ) -> None:
        self.clock = clock
        self.cse_address = cse_address  # [mss] cse_address: where a CS9 / CS24 goes (LGC.CSE.15)
        self.validator = validator
        # With a pool, ``avalidate`` runs in its worker processes (the agent); without, in a thread of this one.
        self.pool = pool
        # The value sets come from the validator's kit unless given; none at all: coded answers are refused.
        if value_sets is None:
            value_sets = ValueSets(validator.kit_dir if validator is not None else None)
        self.context = BuildContext(clock=clock, value_sets=value_sets, vaccines=vaccines or VaccineTable.load(),
                                    new_id=new_id, organisation=organisation, cps_holder=cps_holder,
                                    allow_test_oids=allow_test_oids)
        self.allow_unvalidated = allow_unvalidated

    @property
    def validated(self) -> bool:
        """Whether every order's CDA is checked before it is accepted (what /v1/status and doctor say)."""
        return self.validator is not None

    # -- building -----------------------------------------------------------------------------------------------
    def build_document(self, kind: str, patient: Any, author: Any, data: Any) -> BuiltDocument:
        builder = BUILDERS.get(kind)
        if builder is None:
            raise InvalidInput.field("kind", f"Type de document inconnu : {kind!r} (attendu : {', '.join(KINDS)}).",
                                     code="unknown_kind")
        return builder(self.context, patient, author, data)

    def wrap_pdf(self, pdf: bytes, type_code: str, title: str, service_start: Any, service_stop: Any,
                 patient: Any, author: Any, *, pdf_field: str = "document.pdf_base64") -> BuiltDocument:
        """A PDF as CDA R2 N1 (XDS-SD) with the structuration minimale header."""
        return n1.wrap(self.context, pdf, type_code, title, service_start, service_stop, patient, author,
                       content_field=pdf_field)

    # -- send-orders --------------------------------------------------------------------------------------------
    def cse_notice(self, body: dict[str, Any], cda_root: Any = None) -> dict[str, Any] | None:
        """LGC.CSE.04: the certificat de santé an order's document makes due (kind, title, message), or None.
        ``cda_root``: the body's ready CDA, already parsed by the caller."""
        return cse_notice_json(cse_notice_for_order(body, cda_root, cse_address=self.cse_address))

    async def order_document(self, document: dict[str, Any], patient: dict[str, Any],
                             author: dict[str, Any], sender: dict[str, Any] | None = None) -> bytes:
        """The CDA of a ``POST /v1/orders`` document, built if needed, and refused (422 ``cda_invalid``, with
        the report) unless it passes the CI-SIS checks. The queue's ``DocumentBuilder``. ``sender``: who sends it
        when not its author; a document built here gets them as a second author block ([CDT] 2.1-900)."""
        if self.validator is None and not self.allow_unvalidated:
            raise Unavailable("Kit CI-SIS non configuré : le document ne peut pas être validé, il n'est donc pas "
                              "envoyé (relais kit install, ou cda.allow_unvalidated).", code="cda_kit_missing")
        if "cda_base64" in document:
            cda = decode_base64(document.get("cda_base64"), "document.cda_base64", "Le document CDA")
        elif "pdf_base64" in document or "content_base64" in document:
            content, field, declared = n1.read_content(document, "document.")
            built = await asyncio.to_thread(
                n1.wrap, self.context, content, str(document.get("type_code") or ""),
                str(document.get("title") or ""), document.get("service_start"), document.get("service_stop"),
                patient, author, content_field=field, media_type=declared or None)
            cda = built.cda
        elif "kind" in document:
            built = await self.abuild(str(document.get("kind")), patient, author, document.get("data"))
            cda = built.cda
        else:
            raise InvalidInput.field("document", "Document attendu : {cda_base64}, {pdf_base64, type_code, title, "
                                     "service_start} ou {kind, data}.")
        if sender and "cda_base64" not in document and str(sender.get("id", "")) != str(author.get("rpps", "")):
            cda = await asyncio.to_thread(self._with_sender, cda, author, sender)
        if self.validator is not None:
            report = await self.avalidate(cda)
            if not report.valid:
                raise invalid_cda(report)
        return cda

    # -- validation ---------------------------------------------------------------------------------------------
    def validate(self, cda: bytes) -> ValidationReport:
        if self.validator is None:
            raise Unavailable("Validation CDA indisponible : le kit CI-SIS n'est pas configuré (cda.kit_dir).",
                              code="cda_kit_missing")
        return self.validator.validate(cda)

    async def avalidate(self, cda: bytes) -> ValidationReport:
        if self.pool is not None:
            return await self.pool.validate(cda)
        return await asyncio.to_thread(self.validate, cda)

    def _with_sender(self, cda: bytes, author: dict[str, Any], sender: dict[str, Any]) -> bytes:
        """The built CDA with the sender as a further author, in the author's structure unless the sender names
        one (the structure must be an author's organisation: EX_2.1-1140)."""
        sender_id = str(sender.get("id", ""))
        if not re.fullmatch(r"\d{11}", sender_id):
            raise InvalidInput.field("sender.id", "L'agent ne peut ajouter comme auteur qu'un expéditeur identifié "
                                                  "par son RPPS (11 chiffres) ; sinon, envoyez un CDA qui le "
                                                  "cite parmi ses auteurs.")
        data = {"rpps": sender_id, "family": sender.get("family"), "given": sender.get("given"),
                "organisation": sender.get("organisation") or self.context.complete_author(author).get("organisation"),
                **({"profession_code": _j01(str(sender["profession_code"]), str(sender.get("specialty_code") or ""))}
                   if sender.get("profession_code") else {})}
        try:
            co_author = Author.read(data, self.context.value_sets)
        except InvalidInput as exc:
            raise InvalidInput("Expéditeur incomplet.", errors=[FieldError(f"sender{e.field[len('author'):]}",
                                                                             e.message) for e in exc.errors],
                               code=exc.code) from exc
        doc = safe.parse(cda, what="CDA")
        add_author(doc, co_author)
        return serialize(doc)

    async def abuild(self, kind: str, patient: Any, author: Any, data: Any) -> BuiltDocument:
        return await asyncio.to_thread(self.build_document, kind, patient, author, data)


def _j01(profession: str, specialty: str) -> str:
    """The CDA author code (JDV_J01, "G15_<profession>[/<savoir-faire>]") of a TRE_G15 profession code."""
    return f"G15_{profession}/{specialty}" if specialty else f"G15_{profession}"


def cse_notice_for_cda(cda: bytes, exam: str | None = None, root: Any = None, *,
                       cse_address: str = catalogue.CSE_MSS_ADDRESS) -> catalogue.CseNotice | None:
    """LGC.CSE.04 for a document about to be sent: is a certificat de santé due because of it?

    Reads the type code, the service start and the patient's birth date from the CDA header (hardened parse).
    The queue calls this once an order is stored; ``POST /v1/cda`` answers it as ``cse_due``.
    """
    if root is None:
        root = safe.parse(cda, what="CDA")
    code = root.find(f"{HL7}code")
    type_code = code.get("code", "") if code is not None else ""
    if type_code != "59283-2":
        return None
    birth = root.find(f"{HL7}recordTarget/{HL7}patientRole/{HL7}patient/{HL7}birthTime")
    low = root.find(f"{HL7}documentationOf/{HL7}serviceEvent/{HL7}effectiveTime/{HL7}low")
    try:
        born = date(*_ymd(birth.get("value", "") if birth is not None else ""))
        examined = date(*_ymd(low.get("value", "") if low is not None else ""))
    except ValueError:
        return None
    return catalogue.cse_due_for(type_code, born, examined, exam, cse_address=cse_address)


def cse_notice_for_order(body: dict[str, Any], cda_root: Any = None, *,
                         cse_address: str = catalogue.CSE_MSS_ADDRESS) -> catalogue.CseNotice | None:
    """LGC.CSE.04 for a ``POST /v1/orders`` body: a CR d'examen de l'enfant sent as a PDF (type code, the
    patient's birth date, service start) or as a ready CDA (read from its header). Never raises: a body the
    queue refuses simply has no notice."""
    document = body.get("document")
    if not isinstance(document, dict):
        return None
    exam = document.get("exam") if isinstance(document.get("exam"), str) else None
    try:
        if "cda_base64" in document:
            if cda_root is not None:
                return cse_notice_for_cda(b"", exam, cda_root, cse_address=cse_address)
            return cse_notice_for_cda(decode_base64(document.get("cda_base64"), "document.cda_base64", "CDA"),
                                      exam, cse_address=cse_address)
        if document.get("type_code") != "59283-2":
            return None
        patient = body.get("patient")
        born = date.fromisoformat(str(patient.get("birth_date") if isinstance(patient, dict) else ""))
        examined = parse_when(document.get("service_start"), "document.service_start").astimezone(PARIS).date()
    except (InvalidInput, ValueError):
        return None
    return catalogue.cse_due_for("59283-2", born, examined, exam, cse_address=cse_address)


def cse_notice_json(notice: catalogue.CseNotice | None) -> dict[str, Any] | None:
    if notice is None:
        return None
    return {"kind": notice.kind, "exam": notice.exam, "title": notice.title, "message": notice.message,
            "mss_recipient": notice.mss_recipient}


def _ymd(value: str) -> tuple[int, int, int]:
    if len(value) < 8 or not value[:8].isdigit():
        raise ValueError(value)
    return int(value[:4]), int(value[4:6]), int(value[6:8])


def invalid_cda(report: ValidationReport) -> InvalidInput:
    """422 with each failing check as a field error (location, French text) and the whole report."""
    errors = [FieldError(f.location or f.source, f"[{f.source}] {f.message}") for f in report.errors[:50]]
    return InvalidInput(
        f"Le document CDA ne respecte pas les règles du CI-SIS ({len(report.errors)} erreur(s)) : le DMP le "
        "refuserait.", errors=errors, code="cda_invalid", validation=report.as_dict(),
    )


def decode_pdf(value: Any, field_name: str) -> bytes:
    return decode_base64(value, field_name, "Le PDF")


def decode_base64(value: Any, field_name: str, what: str) -> bytes:
    return decode_base64_field(value, field_name, f"{what} en base64 est obligatoire.")
