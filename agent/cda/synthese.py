"""Synthèse médicale (CI-SIS IPS-FR 2024.01, type 60591-5): the five sections the volet requires.

``data`` (every list may be empty; the section then says so in its text and carries no entry):
    problems     [{"code", "display", "system"?, "since"?}]          problèmes actifs (CIM-10 by default)
    allergies    [{"display", "code"?, "system"?, "since"?}]          allergies et intolérances (the agent)
    treatments   [{"name", "cis"?, "atc"?, "atc_display"?, "since"?}]  traitements en cours
    procedures   [{"code", "display", "date", "system"?}]              antécédents chirurgicaux (CCAM by default)
    devices      [{"display", "code"?, "system"?, "since"?}]           dispositifs médicaux (EMDN when coded)
    vital_signs  {"measured_at", "weight_g"?, "height_cm"?, "head_cm"?}  optional
    title        default "Synthèse médicale"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from agent.cda.context import BuildContext, BuiltDocument, data_object
from agent.cda.header import PARIS, Header, el, parse_when, serialize
from agent.cda.structured import document_title, read_measures, vital_signs_section
from agent.errors import InvalidInput

LOINC = "2.16.840.1.113883.6.1"
SNOMED = "2.16.840.1.113883.6.96"
CIM10 = "2.16.840.1.113883.6.3"
CCAM = "1.2.250.1.215.300.1"
EMDN = "1.2.250.1.213.2.68"
CIS = "1.2.250.1.213.2.3.1"
ATC = "2.16.840.1.113883.6.73"
NewId = Callable[[], str]


@dataclass(frozen=True)
class Item:
    display: str
    code: str = ""
    system: str = ""
    since: str = ""  # AAAAMMJJ
    extra: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str:
        return dict(self.extra).get(key, "")


def _items(data: dict[str, Any], key: str, *, label: str, need_code: bool = False, default_system: str = "",
           display_key: str = "display", date_key: str = "since", extras: tuple[str, ...] = ()) -> list[Item]:
    raw = data.get(key, [])
    if not isinstance(raw, list):
        raise InvalidInput.field(f"data.{key}", f"{label} : une liste est attendue.")
    items: list[Item] = []
    for index, entry in enumerate(raw):
        path = f"data.{key}[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get(display_key), str) or not entry[display_key]:
            raise InvalidInput.field(f"{path}.{display_key}", f"{label} : libellé obligatoire.")
        code = str(entry.get("code") or "")
        if need_code and not code:
            raise InvalidInput.field(f"{path}.code", f"{label} : code obligatoire.")
        when = entry.get(date_key)
        since = parse_when(when, f"{path}.{date_key}").astimezone(PARIS).strftime("%Y%m%d") if when else ""
        items.append(Item(entry[display_key], code, str(entry.get("system") or default_system) if code else "", since,
                          tuple((k, str(entry[k])) for k in extras if entry.get(k))))
    return items


def build(ctx: BuildContext, patient: Any, author: Any, data: dict[str, Any]) -> BuiltDocument:
    data = data_object(data)
    problems = _items(data, "problems", label="Problème", need_code=True, default_system=CIM10)
    allergies = _items(data, "allergies", label="Allergie", default_system=SNOMED)
    treatments = _items(data, "treatments", label="Traitement", display_key="name", default_system=CIS,
                        extras=("cis", "atc", "atc_display"))
    procedures = _items(data, "procedures", label="Acte", need_code=True, default_system=CCAM, date_key="date")
    devices = _items(data, "devices", label="Dispositif", default_system=EMDN)
    vitals = data.get("vital_signs")
    measures = read_measures(vitals, "data.vital_signs", ctx.value_sets) if vitals is not None else []
    when: datetime | None = (parse_when(vitals.get("measured_at"), "data.vital_signs.measured_at")
                             if isinstance(vitals, dict) and measures else None)
    who, by = ctx.read_people(patient, author)
    now = ctx.clock.now()
    header = Header(
        unique_id=ctx.new_id(), set_id=ctx.new_id(), code="60591-5", code_system=LOINC,
        display="Synthèse médicale", title=document_title(data, "Synthèse médicale"), created=now,
        service_start=now, service_stop=None,
        template_ids=(("2.16.840.1.113883.10.22.1.1", None), ("1.2.250.1.213.1.1.1.51", "2024.01")),
    )
    doc = header.build(who, by)
    body = el(el(doc, "component"), "structuredBody")
    ids = ctx.new_id
    _problems(body, problems, ids)
    _allergies(body, allergies, ids)
    _treatments(body, treatments, ids)
    _procedures(body, procedures, ids)
    _devices(body, devices, ids)
    if when is not None:
        vital_signs_section(body, measures, when, ids)
    return ctx.built("synthese_medicale", header, serialize(doc))


def _section(body: etree._Element, templates: tuple[str, ...], code: str, display: str, title: str,
             ids: NewId, rows: list[str], empty: str, prefix: str) -> etree._Element:
    section = el(el(body, "component"), "section")
    for root in templates:
        el(section, "templateId", root=root)
    el(section, "id", root=ids())
    el(section, "code", code=code, displayName=display, codeSystem=LOINC)
    el(section, "title", title)
    text = el(section, "text")
    if not rows:
        el(text, "paragraph", empty)
    else:
        items = el(text, "list")
        for index, row in enumerate(rows, 1):
            el(el(items, "item"), "content", row, ID=f"{prefix}-{index}")
    return section


def _templates(parent: etree._Element, *roots: str) -> None:
    for root in roots:
        el(parent, "templateId", root=root)


def _low(parent: etree._Element, since: str, *, typed: bool = True) -> None:
    period = el(parent, "effectiveTime", xsi_type="IVL_TS") if typed else el(parent, "effectiveTime")
    if since:
        el(period, "low", value=since)
    else:
        el(period, "low", nullFlavor="UNK")


def _concern(section: etree._Element, kind_template: str, ids: NewId, since: str) -> etree._Element:
    act = el(el(section, "entry"), "act", classCode="ACT", moodCode="EVN")
    _templates(act, "2.16.840.1.113883.10.20.1.27", "1.3.6.1.4.1.19376.1.5.3.1.4.5.1", kind_template,
               "1.2.250.1.213.1.1.3.39" if kind_template.endswith("5.2") else "1.2.250.1.213.1.1.3.40")
    el(act, "id", root=ids())
    el(act, "code", nullFlavor="NA")
    el(act, "statusCode", code="active")
    _low(act, since)
    return el(act, "entryRelationship", typeCode="SUBJ", inversionInd="false")


def _problems(body: etree._Element, items: list[Item], ids: NewId) -> None:
    section = _section(body, ("2.16.840.1.113883.10.20.1.11", "1.3.6.1.4.1.19376.1.5.3.1.3.6",
                              "1.2.250.1.213.1.1.2.132"), "11450-4", "Liste des problèmes actifs",
                       "Problèmes actifs", ids, [i.display for i in items], "Aucun problème actif connu.", "pb")
    for index, item in enumerate(items, 1):
        relation = _concern(section, "1.3.6.1.4.1.19376.1.5.3.1.4.5.2", ids, item.since)
        observation = el(relation, "observation", classCode="OBS", moodCode="EVN", negationInd="false")
        _templates(observation, "2.16.840.1.113883.10.20.1.28", "1.3.6.1.4.1.19376.1.5.3.1.4.5",
                   "1.2.250.1.213.1.1.3.37")
        el(observation, "id", root=ids())
        el(observation, "code", code="282291009", displayName="interprétation diagnostique", codeSystem=SNOMED)
        el(el(observation, "text"), "reference", value=f"#pb-{index}")
        el(observation, "statusCode", code="completed")
        _low(observation, item.since, typed=False)
        value = el(observation, "value", xsi_type="CD", code=item.code, displayName=item.display,
                   codeSystem=item.system)
        el(el(value, "originalText"), "reference", value=f"#pb-{index}")


def _allergies(body: etree._Element, items: list[Item], ids: NewId) -> None:
    section = _section(body, ("2.16.840.1.113883.10.20.1.2", "1.3.6.1.4.1.19376.1.5.3.1.3.13",
                              "1.2.250.1.213.1.1.2.137"), "48765-2", "Allergies et hypersensibilités",
                       "Allergies, hypersensibilités non allergiques, intolérances", ids,
                       [i.display for i in items], "Aucune allergie ni intolérance connue.", "al")
    for index, item in enumerate(items, 1):
        relation = _concern(section, "1.3.6.1.4.1.19376.1.5.3.1.4.5.3", ids, item.since)
        observation = el(relation, "observation", classCode="OBS", moodCode="EVN", negationInd="false")
        _templates(observation, "2.16.840.1.113883.10.20.1.18", "2.16.840.1.113883.10.20.1.28",
                   "1.3.6.1.4.1.19376.1.5.3.1.4.5", "1.3.6.1.4.1.19376.1.5.3.1.4.6", "1.2.250.1.213.1.1.3.41")
        el(observation, "id", root=ids())
        el(observation, "code", code="420134006", displayName="propension aux réactions indésirables",
           codeSystem=SNOMED)
        el(el(observation, "text"), "reference", value=f"#al-{index}")
        el(observation, "statusCode", code="completed")
        _low(observation, item.since)
        value = el(observation, "value", xsi_type="CD")
        el(el(value, "originalText"), "reference", value=f"#al-{index}")
        entity = el(el(el(observation, "participant", typeCode="CSM"), "participantRole", classCode="MANU"),
                    "playingEntity", classCode="MMAT")
        code = (el(entity, "code", code=item.code, displayName=item.display, codeSystem=item.system) if item.code
                else el(entity, "code", nullFlavor="NA"))
        el(el(code, "originalText"), "reference", value=f"#al-{index}")
        el(entity, "name", item.display)


def _treatments(body: etree._Element, items: list[Item], ids: NewId) -> None:
    section = _section(body, ("2.16.840.1.113883.10.20.1.8", "1.3.6.1.4.1.19376.1.5.3.1.3.19",
                              "1.2.250.1.213.1.1.2.143"), "10160-0", "Historique de la prise médicamenteuse",
                       "Traitements", ids, [i.display for i in items], "Aucun traitement en cours.", "med")
    for index, item in enumerate(items, 1):
        sa = el(el(section, "entry", typeCode="DRIV"), "substanceAdministration", classCode="SBADM", moodCode="EVN")
        _templates(sa, "2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.7", "1.2.250.1.213.1.1.3.42",
                   "1.3.6.1.4.1.19376.1.5.3.1.4.7.1", "1.2.250.1.213.1.1.3.42.3")
        el(sa, "id", root=ids())
        el(sa, "code", code="DRUG", displayName="Médicament", codeSystem="2.16.840.1.113883.5.4")
        el(el(sa, "text"), "reference", value=f"#med-{index}")
        el(sa, "statusCode", code="completed")
        period = el(sa, "effectiveTime", xsi_type="IVL_TS")
        el(period, "low", **({"value": item.since} if item.since else {"nullFlavor": "UNK"}))
        el(period, "high", nullFlavor="UNK")
        product = el(el(sa, "consumable"), "manufacturedProduct", classCode="MANU")
        _templates(product, "2.16.840.1.113883.10.20.1.53", "1.3.6.1.4.1.19376.1.5.3.1.4.7.2",
                   "1.2.250.1.213.1.1.3.43")
        material = el(product, "manufacturedMaterial")
        cis, atc = item.get("cis") or item.code, item.get("atc")
        if cis:
            code = el(material, "code", code=cis, displayName=item.display, codeSystem=CIS)
        elif atc:
            code = el(material, "code", code=atc, displayName=item.get("atc_display") or item.display,
                      codeSystem=ATC)
        else:
            code = el(material, "code", nullFlavor="UNK")
        el(el(code, "originalText"), "reference", value=f"#med-{index}")
        if cis and atc:
            el(code, "translation", code=atc, displayName=item.get("atc_display") or atc, codeSystem=ATC)
        el(material, "name", item.display)


def _procedures(body: etree._Element, items: list[Item], ids: NewId) -> None:
    section = _section(body, ("2.16.840.1.113883.10.20.1.12", "1.3.6.1.4.1.19376.1.5.3.1.3.11",
                              "1.3.6.1.4.1.19376.1.5.3.1.3.12", "1.2.250.1.213.1.1.2.136"), "47519-4",
                       "Historique des actes", "Historique des actes", ids, [i.display for i in items],
                       "Aucun antécédent chirurgical connu.", "acte")
    for index, item in enumerate(items, 1):
        procedure = el(el(section, "entry"), "procedure", classCode="PROC", moodCode="EVN")
        _templates(procedure, "1.3.6.1.4.1.19376.1.5.3.1.4.19", "2.16.840.1.113883.10.20.1.29",
                   "1.2.250.1.213.1.1.3.62")
        el(procedure, "id", root=ids())
        code = el(procedure, "code", code=item.code, displayName=item.display, codeSystem=item.system)
        el(el(code, "originalText"), "reference", value=f"#acte-{index}")
        el(el(procedure, "text"), "reference", value=f"#acte-{index}")
        el(procedure, "statusCode", code="completed")
        el(procedure, "effectiveTime", **({"value": item.since} if item.since else {"nullFlavor": "UNK"}))


def _devices(body: etree._Element, items: list[Item], ids: NewId) -> None:
    section = _section(body, ("2.16.840.1.11383.10.20.1.7", "1.3.6.1.4.1.19376.1.5.3.1.1.5.3.5",
                              "1.2.250.1.213.1.1.2.1"), "46264-8", "Dispositifs médicaux", "Dispositifs médicaux",
                       ids, [i.display for i in items], "Aucun dispositif médical connu.", "dm")
    for index, item in enumerate(items, 1):
        supply = el(el(section, "entry"), "supply", classCode="SPLY", moodCode="EVN")
        _templates(supply, "2.16.840.1.113883.10.20.1.34", "1.2.250.1.213.1.1.3.20")
        el(supply, "id", root=ids())
        el(el(supply, "text"), "reference", value=f"#dm-{index}")
        _low(supply, item.since)
        role = el(el(supply, "participant", typeCode="DEV"), "participantRole", classCode="MANU")
        el(role, "id", nullFlavor="UNK")
        device = el(role, "playingDevice", classCode="DEV", determinerCode="INSTANCE")
        code = (el(device, "code", code=item.code, displayName=item.display, codeSystem=item.system) if item.code
                else el(device, "code", nullFlavor="UNK"))
        el(el(code, "originalText"), "reference", value=f"#dm-{index}")
