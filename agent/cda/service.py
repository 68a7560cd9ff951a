"""The documents service: build a CDA (N1 wrapper or N3 structured), and validate one with the CI-SIS rules.

What the API (``POST /v1/cda``, ``/v1/cda/validate``) and the queue (``POST /v1/orders``) call:

    build_document(kind, patient, author, data) -> BuiltDocument
    wrap_pdf(pdf, type_code, title, service_start, service_stop, patient, author) -> BuiltDocument
    validate(cda) -> ValidationReport              (blocking: run it in a thread)
    avalidate(cda) -> ValidationReport             (the same, off the event loop)

Identifiers (document uniqueId, setId, section and entry ids) are OIDs under 2.25 made from random UUIDs: fixed
when the document is built, so a retried send carries the same uniqueId.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from agent.cda import vaccination
from agent.cda.header import PARIS, Author, Header, Patient, parse_when, serialize
from agent.cda.n1 import XDS_SD, build_n1
from agent.cda.vaccines import VaccineTable
from agent.cda.validation import CdaValidator, ValidationReport
from agent.clock import Clock
from agent.domain import catalogue
from agent.domain.cps import CpsHolder
from agent.domain.encoding import decode_base64_field
from agent.errors import FieldError, InvalidInput, Unavailable
from agent.xml import safe

HL7 = "{urn:hl7-org:v3}"

# TRE_G15 professions, for the author's code display when it comes from the CPS.
PROFESSIONS = {"10": "Médecin", "21": "Pharmacien", "40": "Chirurgien-dentiste", "50": "Sage-femme",
               "60": "Infirmier", "70": "Masseur-kinésithérapeute", "80": "Pédicure-podologue",
               "91": "Orthophoniste", "92": "Orthoptiste"}
KINDS = ("n1", "vaccination_note", "synthese_medicale", "cse_cs8", "cse_cs9", "cse_cs24", "mesures_enfant")


def uuid_oid() -> str:
    """An OID under 2.25 (ISO/IEC 9834-8: a UUID as an integer): unique without a registry."""
    return f"2.25.{uuid.uuid4().int}"


@dataclass(frozen=True)
class BuiltDocument:
    cda: bytes
    unique_id: str
    set_id: str
    kind: str
    type_code: str
    type_system: str
    type_display: str
    class_code: str
    class_display: str
    format_code: str
    format_system: str
    level: str
    title: str
    creation_time: datetime
    service_start: datetime
    service_stop: datetime | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cda_base64(self) -> str:
        return base64.b64encode(self.cda).decode("ascii")

    def metadata(self) -> dict[str, Any]:
        """The document's description for API answers and the queue (no content)."""
        return {
            "unique_id": self.unique_id, "set_id": self.set_id, "kind": self.kind, "level": self.level,
            "type_code": self.type_code, "type_system": self.type_system, "type_display": self.type_display,
            "class_code": self.class_code, "class_display": self.class_display,
            "format_code": self.format_code, "format_system": self.format_system, "title": self.title,
            "creation_time": self.creation_time.isoformat(), "service_start": self.service_start.isoformat(),
            "service_stop": self.service_stop.isoformat() if self.service_stop else None,
        }


class CdaService:
    def __init__(
        self,
        *,
        clock: Clock,
        validator: CdaValidator | None = None,
        vaccines: VaccineTable | None = None,
        allow_test_oids: bool = False,
        new_id: Callable[[], str] = uuid_oid,
        organisation: dict[str, Any] | None = None,
        cps_holder: Callable[[], CpsHolder | None] | None = None,
    ) -> None:
        self.clock = clock
        self.validator = validator
        self.vaccines = vaccines or VaccineTable.load()
        self.allow_test_oids = allow_test_oids
        self.new_id = new_id
        self.organisation = organisation
        self.cps_holder = cps_holder

    # -- building -----------------------------------------------------------------------------------------------
    def build_document(self, kind: str, patient: dict[str, Any], author: dict[str, Any],
                       data: dict[str, Any]) -> BuiltDocument:
        if kind == "n1":
            if not isinstance(data, dict):
                raise InvalidInput.field("data", "Objet data attendu.")
            pdf = decode_pdf(data.get("pdf_base64"), "data.pdf_base64")
            return self.wrap_pdf(pdf, str(data.get("type_code") or ""), str(data.get("title") or ""),
                                 data.get("service_start"), data.get("service_stop"), patient, author,
                                 pdf_field="data.pdf_base64")
        if kind == "vaccination_note":
            return self._vaccination(patient, author, data)
        if kind in KINDS:
            from agent.cda import structured

            return structured.build(self, kind, patient, author, data)
        raise InvalidInput.field("kind", f"Type de document inconnu : {kind!r} (attendu : {', '.join(KINDS)}).",
                                 code="unknown_kind")

    def wrap_pdf(self, pdf: bytes, type_code: str, title: str, service_start: Any, service_stop: Any,
                 patient: dict[str, Any], author: dict[str, Any], *,
                 pdf_field: str = "document.pdf_base64") -> BuiltDocument:
        """A PDF as CDA R2 N1 (XDS-SD) with the structuration minimale header."""
        entry = catalogue.n1_type(type_code) or catalogue.by_type_code(type_code)
        if entry is None:
            raise InvalidInput.field("type_code", f"Type de document {type_code!r} absent du catalogue Ségur "
                                     "(JDV_J07).", code="unknown_type_code")
        if not title or len(title) > 250:
            raise InvalidInput.field("title", "Titre du document obligatoire (250 caractères au plus).")
        start = parse_when(service_start, "service_start")
        stop = parse_when(service_stop, "service_stop") if service_stop else None
        if stop is not None and stop < start:
            raise InvalidInput.field("service_stop", "La fin de l'acte précède son début.")
        who, by = self.read_people(patient, author)
        now = self.clock.now()
        header = Header(
            unique_id=self.new_id(), set_id=self.new_id(), code=entry.type_code, code_system=entry.type_system,
            display=entry.title, title=title, created=now, service_start=start, service_stop=stop,
            template_ids=((XDS_SD, None),),
        )
        doc = build_n1(header, who, by, pdf, pdf_field=pdf_field)
        return BuiltDocument(
            serialize(doc), header.unique_id, header.set_id, "n1", entry.type_code, entry.type_system, entry.title,
            entry.class_code, entry.class_display, catalogue.FORMAT_N1_PDF, catalogue.OID_FORMAT_CODES_IHE,
            catalogue.Level.N1.value, title, now, start, stop,
        )

    def _vaccination(self, patient: dict[str, Any], author: dict[str, Any], data: dict[str, Any]) -> BuiltDocument:
        given = vaccination.VaccinationInput.read(data, self.vaccines)
        who, by = self.read_people(patient, author)
        now = self.clock.now()
        header = vaccination.header_for(self.new_id(), self.new_id(), now, given)
        doc = header.build(who, by)
        vaccination.add_body(doc, given, by, [self.new_id(), self.new_id()])
        return self.built("vaccination_note", header, serialize(doc))

    def built(self, kind: str, header: Header, cda: bytes, **extra: Any) -> BuiltDocument:
        entry = catalogue.by_kind(kind)
        assert entry is not None, kind
        return BuiltDocument(
            cda, header.unique_id, header.set_id, kind, entry.type_code, entry.type_system, entry.title,
            entry.class_code, entry.class_display, entry.format_code, entry.format_system, entry.level.value,
            header.title, header.created, header.service_start, header.service_stop, dict(extra),
        )

    def read_people(self, patient: dict[str, Any], author: dict[str, Any]) -> tuple[Patient, Author]:
        return Patient.read(patient, allow_test_oids=self.allow_test_oids), Author.read(self.complete_author(author))

    def complete_author(self, author: dict[str, Any]) -> dict[str, Any]:
        """What the LGC left out of the author, from the inserted CPS (same RPPS) and the configured practice:
        an order may say only ``{"rpps": ...}``."""
        if not isinstance(author, dict):
            return author
        filled = dict(author)
        holder = self.cps_holder() if self.cps_holder is not None else None
        if holder is not None and holder.rpps and filled.get("rpps", holder.rpps) == holder.rpps:
            filled.setdefault("rpps", holder.rpps)
            filled.setdefault("family", holder.family_name)
            filled.setdefault("given", holder.given_name)
            if holder.profession and "profession_code" not in filled:
                code = f"G15_{holder.profession}" + (f"/{holder.specialty}" if holder.specialty else "")
                filled["profession_code"] = code
                filled["profession_display"] = PROFESSIONS.get(holder.profession, "Professionnel de santé")
        if "organisation" not in filled and self.organisation:
            filled["organisation"] = dict(self.organisation)
        return filled

    # -- send-orders --------------------------------------------------------------------------------------------
    def cse_notice(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """LGC.CSE.04: the certificat de santé an order's document makes due (kind, title, message), or None."""
        return cse_notice_json(cse_notice_for_order(body))

    async def order_document(self, document: dict[str, Any], patient: dict[str, Any],
                             author: dict[str, Any]) -> bytes:
        """The CDA of a ``POST /v1/orders`` document, built if needed, and refused (422 ``cda_invalid``, with
        the report) unless it passes the CI-SIS checks. The queue's ``DocumentBuilder``."""
        if "cda_base64" in document:
            cda = decode_base64(document.get("cda_base64"), "document.cda_base64", "Le document CDA")
        elif "pdf_base64" in document:
            pdf = decode_pdf(document.get("pdf_base64"), "document.pdf_base64")
            built = await asyncio.to_thread(
                self.wrap_pdf, pdf, str(document.get("type_code") or ""), str(document.get("title") or ""),
                document.get("service_start"), document.get("service_stop"), patient, author)
            cda = built.cda
        elif "kind" in document:
            data = document.get("data")
            built = await self.abuild(str(document.get("kind")), patient, author, data if isinstance(data, dict)
                                      else {})
            cda = built.cda
        else:
            raise InvalidInput.field("document", "Document attendu : {cda_base64}, {pdf_base64, type_code, title, "
                                     "service_start} ou {kind, data}.")
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
        return await asyncio.to_thread(self.validate, cda)

    async def abuild(self, kind: str, patient: dict[str, Any], author: dict[str, Any],
                     data: dict[str, Any]) -> BuiltDocument:
        return await asyncio.to_thread(self.build_document, kind, patient, author, data)


def cse_notice_for_cda(cda: bytes, exam: str | None = None) -> catalogue.CseNotice | None:
    """LGC.CSE.04 for a document about to be sent: is a certificat de santé due because of it?

    Reads the type code, the service start and the patient's birth date from the CDA header (hardened parse).
    The queue calls this once an order is stored; ``POST /v1/cda`` answers it as ``cse_due``.
    """
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
    return catalogue.cse_due_for(type_code, born, examined, exam)


def cse_notice_for_order(body: dict[str, Any]) -> catalogue.CseNotice | None:
    """LGC.CSE.04 for a ``POST /v1/orders`` body: a CR d'examen de l'enfant sent as a PDF (type code, the
    patient's birth date, service start) or as a ready CDA (read from its header). Never raises: a body the
    queue refuses simply has no notice."""
    document = body.get("document")
    if not isinstance(document, dict):
        return None
    exam = document.get("exam") if isinstance(document.get("exam"), str) else None
    try:
        if "cda_base64" in document:
            return cse_notice_for_cda(decode_base64(document.get("cda_base64"), "document.cda_base64", "CDA"),
                                      exam)
        if document.get("type_code") != "59283-2":
            return None
        patient = body.get("patient")
        born = date.fromisoformat(str(patient.get("birth_date") if isinstance(patient, dict) else ""))
        examined = parse_when(document.get("service_start"), "document.service_start").astimezone(PARIS).date()
    except (InvalidInput, ValueError):
        return None
    return catalogue.cse_due_for("59283-2", born, examined, exam)


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
