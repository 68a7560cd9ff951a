"""Structured (N3) documents beyond the note de vaccination: mesures de l'enfant, synthèse médicale, CSE.

Mesures de l'enfant (CSE-MDE 2023.01), ``data``:
    measured_at      ISO date (or date-time) of the measures (required)
    weight_g         weight in grams          (at least one of the three measures)
    height_cm        height in centimetres
    head_cm          head circumference in centimetres
    title            document title (default "Carnet de santé de l'enfant - Mesures de l'enfant")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lxml import etree

from agent.cda.header import PARIS, Header, el, parse_when, serialize
from agent.errors import InvalidInput

if TYPE_CHECKING:
    from agent.cda.service import BuiltDocument, CdaService

LOINC = "2.16.840.1.113883.6.1"
NewId = Callable[[], str]


def build(service: CdaService, kind: str, patient: dict[str, Any], author: dict[str, Any],
          data: dict[str, Any]) -> BuiltDocument:
    if not isinstance(data, dict):
        raise InvalidInput.field("data", "Objet data attendu.")
    if kind == "mesures_enfant":
        return _mesures_enfant(service, patient, author, data)
    if kind == "synthese_medicale":
        from agent.cda.synthese import build as build_synthese

        return build_synthese(service, patient, author, data)
    if kind in ("cse_cs8", "cse_cs9", "cse_cs24"):
        from agent.cda.cse import build as build_cse

        return build_cse(service, kind, patient, author, data)
    raise InvalidInput.field("kind", f"Le document {kind!r} n'est pas encore produit par cet agent.",
                             code="kind_not_available")


# -- vital signs (shared by mesures de l'enfant and the synthèse) -------------------------------------------------

@dataclass(frozen=True)
class Measure:
    code: str
    display: str
    value: float
    unit: str

    @property
    def text(self) -> str:
        number = f"{self.value:g}"
        return f"{number} {self.unit}"


MEASURES = {  # data key -> (LOINC, display, UCUM unit)
    "weight_g": ("29463-7", "Poids", "g"),
    "height_cm": ("8302-2", "Taille", "cm"),
    "head_cm": ("8287-5", "Périmètre crânien", "cm"),
}


def read_measures(data: dict[str, Any], path: str) -> list[Measure]:
    measures: list[Measure] = []
    for key, (code, display, unit) in MEASURES.items():
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1_000_000:
            raise InvalidInput.field(f"{path}.{key}", f"{display} : un nombre positif est attendu ({unit}).")
        measures.append(Measure(code, display, float(value), unit))
    return measures


def vital_signs_section(parent: etree._Element, measures: list[Measure], when: datetime, new_id: NewId) -> None:
    section = el(el(parent, "component"), "section")
    for root in ("2.16.840.1.113883.10.20.1.16", "1.3.6.1.4.1.19376.1.5.3.1.3.25",
                 "1.3.6.1.4.1.19376.1.5.3.1.1.5.3.2", "1.2.250.1.213.1.1.2.75"):
        el(section, "templateId", root=root)
    el(section, "id", root=new_id())
    el(section, "code", code="8716-3", displayName="Signes vitaux", codeSystem=LOINC)
    el(section, "title", "Signes vitaux")
    table = el(el(section, "text"), "table", border="0")
    el(el(el(table, "thead"), "tr"), "th", "Mesures", colspan="2")
    body = el(table, "tbody")
    for index, measure in enumerate(measures, 1):
        row = el(body, "tr")
        el(row, "td", measure.display)
        el(el(row, "td"), "content", measure.text, ID=f"vs-{index}")
    organizer = el(el(section, "entry"), "organizer", classCode="CLUSTER", moodCode="EVN")
    for root in ("2.16.840.1.113883.10.20.1.32", "2.16.840.1.113883.10.20.1.35",
                 "1.3.6.1.4.1.19376.1.5.3.1.4.13.1", "1.2.250.1.213.1.1.3.49"):
        el(organizer, "templateId", root=root)
    el(organizer, "id", root=new_id())
    el(organizer, "code", code="85353-1", displayName="Signes vitaux", codeSystem=LOINC)
    el(organizer, "statusCode", code="completed")
    el(organizer, "effectiveTime", value=when.astimezone(PARIS).strftime("%Y%m%d"))
    for index, measure in enumerate(measures, 1):
        observation = el(el(organizer, "component", typeCode="COMP"), "observation", classCode="OBS",
                         moodCode="EVN")
        for root in ("2.16.840.1.113883.10.20.1.31", "1.3.6.1.4.1.19376.1.5.3.1.4.13",
                     "1.3.6.1.4.1.19376.1.5.3.1.4.13.2", "1.2.250.1.213.1.1.3.50"):
            el(observation, "templateId", root=root)
        el(observation, "id", root=new_id())
        el(observation, "code", code=measure.code, displayName=measure.display, codeSystem=LOINC)
        el(el(observation, "text"), "reference", value=f"#vs-{index}")
        el(observation, "statusCode", code="completed")
        el(observation, "effectiveTime", value=when.astimezone(PARIS).strftime("%Y%m%d"))
        el(observation, "value", xsi_type="PQ", value=f"{measure.value:g}", unit=measure.unit)


# -- mesures de l'enfant --------------------------------------------------------------------------------------------

def _mesures_enfant(service: CdaService, patient: dict[str, Any], author: dict[str, Any],
                    data: dict[str, Any]) -> BuiltDocument:
    when = parse_when(data.get("measured_at"), "data.measured_at")
    measures = read_measures(data, "data")
    if not measures:
        raise InvalidInput.field("data", "Au moins une mesure : weight_g, height_cm ou head_cm.")
    title = str(data.get("title") or "Carnet de santé de l'enfant - Mesures de l'enfant")
    who, by = service.read_people(patient, author)
    header = Header(
        unique_id=service.new_id(), set_id=service.new_id(), code="29274-8", code_system=LOINC,
        display="Mesures de signes vitaux", title=title, created=service.clock.now(), service_start=when,
        service_stop=None, event_code=("29274-8", LOINC, "Mesures de signes vitaux"),
        template_ids=(("1.3.6.1.4.1.19376.1.5.3.1.1.1", None), ("1.2.250.1.213.1.1.1.5", None),
                      ("1.2.250.1.213.1.1.1.5.4", "2023.01")),
    )
    doc = header.build(who, by)
    vital_signs_section(el(el(doc, "component"), "structuredBody"), measures, when, service.new_id)
    return service.built("mesures_enfant", header, serialize(doc))
