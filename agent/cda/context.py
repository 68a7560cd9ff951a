"""What every CDA builder gets: the build context (clock, identifiers, value sets, vaccines, practice defaults, CPS
holder lookup) and what it returns (``BuiltDocument``).

The builders (``n1``, ``vaccination``, ``structured``, ``synthese``, ``cse``, ``cse8``) take a ``BuildContext``,
never the documents service: they stay pure functions of their input and this context, and the package has no
import cycle. ``agent.cda.builders`` maps each kind to its builder.

The document's type code (``ClinicalDocument/code``) is read from the kit's JDV_J07_XdsTypeCode_CISIS, the value
set the structuration minimale checks it against (``document_type``): its system and display are the kit's.

Identifiers (document uniqueId, setId, section and entry ids) are OIDs under 2.25 made from random UUIDs: fixed
when the document is built, so a retried send carries the same uniqueId.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.cda.header import JDV_PROFESSION, Author, Header, Patient
from agent.cda.vaccines import VaccineTable
from agent.cda.valuesets import Concept, ValueSets
from agent.clock import Clock
from agent.domain import catalogue
from agent.domain.cps import CpsHolder
from agent.errors import InvalidInput

JDV_DOCUMENT_TYPE = "JDV_J07_XdsTypeCode_CISIS"
JDV_CONFIDENTIALITY = "JDV_J08_XdsConfidentialityCode_CISIS"


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


@dataclass(frozen=True)
class BuildContext:
    clock: Clock
    value_sets: ValueSets
    vaccines: VaccineTable
    new_id: Callable[[], str] = uuid_oid
    organisation: dict[str, Any] | None = None  # the practice, when a request names none
    cps_holder: Callable[[], CpsHolder | None] | None = None
    allow_test_oids: bool = False

    def read_people(self, patient: Any, author: Any) -> tuple[Patient, Author]:
        return (Patient.read(patient, self.value_sets, allow_test_oids=self.allow_test_oids),
                Author.read(self.complete_author(author), self.value_sets))

    def complete_author(self, author: Any) -> Any:
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
                filled["profession_code"] = self._cps_profession(holder)
        if "organisation" not in filled and self.organisation:
            filled["organisation"] = dict(self.organisation)
        return filled

    def _cps_profession(self, holder: CpsHolder) -> str:
        """The card's profession and specialty as a JDV_J01 code; the profession alone when the pair is not in
        the value set (a specialty the DMP does not list)."""
        code = f"G15_{holder.profession}"
        if holder.specialty:
            with_specialty = f"{code}/{holder.specialty}"
            try:
                if self.value_sets.get(JDV_PROFESSION).find(with_specialty) is not None:
                    return with_specialty
            except InvalidInput:
                pass
        return code

    def document_type(self, code: str) -> Concept:
        """The document type ``code`` as the kit's JDV_J07_XdsTypeCode_CISIS writes it (503 without it, as for
        every coded part of a document: the patient's sex already needs the kit)."""
        return self.value_sets.fixed(JDV_DOCUMENT_TYPE, code)

    def confidentiality(self, code: str = "N") -> Concept:
        """The document's confidentiality (N: normal) as the kit's JDV_J08_XdsConfidentialityCode_CISIS writes it."""
        return self.value_sets.fixed(JDV_CONFIDENTIALITY, code)

    def built(self, kind: str, header: Header, cda: bytes, **extra: Any) -> BuiltDocument:
        entry = catalogue.by_kind(kind)
        assert entry is not None, kind
        return BuiltDocument(
            cda, header.unique_id, header.set_id, kind, entry.type_code, entry.type_system, entry.title,
            entry.class_code, entry.class_display, entry.format_code, entry.format_system, entry.level.value,
            header.title, header.created, header.service_start, header.service_stop, dict(extra),
        )


Builder = Callable[[BuildContext, Any, Any, dict[str, Any]], BuiltDocument]


def data_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput.field("data", "Objet data attendu.")
    return data
