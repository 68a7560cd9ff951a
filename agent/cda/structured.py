"""Mesures de l'enfant, and the vital-signs section it shares with the synthèse médicale and the certificates.

Measures are coded from the kit's JDV_SignesVitaux_CISIS (LOINC), the value set the content profile checks.

Mesures de l'enfant (CSE-MDE 2023.01), ``data``:
    measured_at      ISO date (or date-time) of the measures (required)
    weight_g         weight in grams          (at least one of the three measures)
    height_cm        height in centimetres
    head_cm          head circumference in centimetres
    title            document title (default "Carnet de santé de l'enfant - Mesures de l'enfant")
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from agent.cda.context import BuildContext, BuiltDocument, data_object
from agent.cda.header import PARIS, Header, el, parse_when, serialize
from agent.cda.valuesets import ValueSets
from agent.errors import InvalidInput

LOINC = "2.16.840.1.113883.6.1"
JDV_VITAL_SIGNS = "JDV_SignesVitaux_CISIS"
NewId = Callable[[], str]


# -- vital signs (shared by mesures de l'enfant and the synthèse) -------------------------------------------------

@dataclass(frozen=True)
class Measure:
    code: str
    display: str
    value: float
    unit: str
    system: str = LOINC

    @property
    def text(self) -> str:
        number = f"{self.value:g}"
        return f"{number} {self.unit}"


MEASURES = {  # data key -> (code in JDV_SignesVitaux_CISIS, UCUM unit, largest plausible value)
    "weight_g": ("29463-7", "g", 500_000),
    "height_cm": ("8302-2", "cm", 300),
    "head_cm": ("8287-5", "cm", 100),
}


def read_measures(data: Any, path: str, codes: ValueSets) -> list[Measure]:
    if not isinstance(data, dict):
        raise InvalidInput.field(path, "Objet attendu : {weight_g, height_cm, head_cm}.")
    measures: list[Measure] = []
    for key, (code, unit, largest) in MEASURES.items():
        value = data.get(key)
        if value is None:
            continue
        concept = codes.concept(JDV_VITAL_SIGNS, code, f"{path}.{key}")
        assert concept is not None
        if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
                or not 0 < value <= largest):
            raise InvalidInput.field(f"{path}.{key}", f"{concept.display} : un nombre positif est attendu ({unit}, "
                                     f"{largest} au plus).")
        measures.append(Measure(concept.code, concept.display, round(float(value), 3), unit, concept.system))
    return measures


def measure(codes: ValueSets, code: str, value: float, unit: str, field: str) -> Measure:
    """A measure coded from JDV_SignesVitaux_CISIS (Apgar scores...)."""
    concept = codes.concept(JDV_VITAL_SIGNS, code, field)
    assert concept is not None
    return Measure(concept.code, concept.display, value, unit, concept.system)


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
        el(observation, "code", code=measure.code, displayName=measure.display, codeSystem=measure.system)
        el(el(observation, "text"), "reference", value=f"#vs-{index}")
        el(observation, "statusCode", code="completed")
        el(observation, "effectiveTime", value=when.astimezone(PARIS).strftime("%Y%m%d"))
        el(observation, "value", xsi_type="PQ", value=f"{measure.value:g}", unit=measure.unit)


# -- mesures de l'enfant --------------------------------------------------------------------------------------------

def build(ctx: BuildContext, patient: Any, author: Any, data: dict[str, Any]) -> BuiltDocument:
    data = data_object(data)
    when = parse_when(data.get("measured_at"), "data.measured_at")
    measures = read_measures(data, "data", ctx.value_sets)
    if not measures:
        raise InvalidInput.field("data", "Au moins une mesure : weight_g, height_cm ou head_cm.")
    title = document_title(data, "Carnet de santé de l'enfant - Mesures de l'enfant")
    who, by = ctx.read_people(patient, author)
    kind = ctx.document_type("29274-8")
    header = Header(
        unique_id=ctx.new_id(), set_id=ctx.new_id(), code=kind.code, code_system=kind.system,
        display=kind.display, title=title, created=ctx.clock.now(), service_start=when,
        service_stop=None, event_code=(kind.code, kind.system, kind.display),
        confidentiality=ctx.confidentiality(),
        template_ids=(("1.3.6.1.4.1.19376.1.5.3.1.1.1", None), ("1.2.250.1.213.1.1.1.5", None),
                      ("1.2.250.1.213.1.1.1.5.4", "2023.01")),
    )
    doc = header.build(who, by)
    vital_signs_section(el(el(doc, "component"), "structuredBody"), measures, when, ctx.new_id)
    return ctx.built("mesures_enfant", header, serialize(doc))


def document_title(data: dict[str, Any], default: str) -> str:
    """``data.title`` (one line, 250 characters at most) or the volet's title."""
    title = data.get("title")
    if title is None or title == "":
        return default
    if not isinstance(title, str) or not title.strip() or len(title) > 250:
        raise InvalidInput.field("data.title", "Titre : un texte de 250 caractères au plus.")
    return " ".join(title.split())
