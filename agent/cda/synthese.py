"""Synthèse médicale (CI-SIS IPS-FR 2024.01, type 60591-5): the five sections the volet requires.

``data`` (every list may be empty; the section then says so in its text and carries no entry):
    problems     [{"code", "display", "system"?, "since"?, "kind"?}]  problèmes actifs
    allergies    [{"display", "code"?, "system"?, "since"?, "type"?}]  allergies et intolérances (the agent)
    treatments   [{"name", "cis"?, "atc"?, "atc_display"?, "since"?}]  traitements en cours
    procedures   [{"code", "display", "date", "system"?}]              antécédents chirurgicaux
    devices      [{"display", "code"?, "system"?, "since"?}]           dispositifs médicaux
    vital_signs  {"measured_at", "weight_g"?, "height_cm"?, "head_cm"?}  optional
    title        default "Synthèse médicale"

Codes: the ones the content profile checks against a value set come from that value set of the kit: a problem's
``kind`` (JDV_ProblemCodes_CISIS, default "interprétation diagnostique"), an allergy's ``type``
(JDV_TypeEvenementIndesirablePrevisible_CISIS, default "propension aux réactions indésirables"), the treatment's
DRUG (JDV_HL7_ActSubstanceAdministrationCode_CISIS); each may be ``"code"`` or ``{"code", "display"?}`` and a code
outside its value set is a 422 naming the field. The LGC's own codes belong to open terminologies no value set
lists; ``system`` may name one of those the field allows (by name or OID, ``agent.cda.valuesets.TERMINOLOGIES``),
anything else is a 422 on ``...system``: problems CIM-10 (default), CISP-2, OrphaCodes, SNOMED CT; allergies'
agent SNOMED CT (default), ATC; procedures CCAM; devices EMDN; treatments CIS, with ATC as ``atc``.
Section and document codes are LOINC codes the templates fix.
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
from agent.cda.valuesets import Concept, ValueSets, open_code, terminology
from agent.errors import InvalidInput

LOINC = "2.16.840.1.113883.6.1"  # section and document codes: fixed by the templates
JDV_PROBLEM_KIND = "JDV_ProblemCodes_CISIS"
JDV_ALLERGY_TYPE = "JDV_TypeEvenementIndesirablePrevisible_CISIS"
JDV_ADMINISTRATION = "JDV_HL7_ActSubstanceAdministrationCode_CISIS"
PROBLEM_KIND = "282291009"  # interprétation diagnostique
ALLERGY_TYPE = "420134006"  # propension aux réactions indésirables
DRUG = "DRUG"
PROBLEM_SYSTEMS = ("CIM-10", "CISP-2", "OrphaCodes", "SNOMED CT")
ALLERGEN_SYSTEMS = ("SNOMED CT", "ATC")
PROCEDURE_SYSTEMS = ("CCAM",)
DEVICE_SYSTEMS = ("EMDN",)
NewId = Callable[[], str]


@dataclass(frozen=True)
class Item:
    display: str
    coded: Concept | None = None
    since: str = ""  # AAAAMMJJ
    kind: Concept | None = None  # the problem's kind, the allergy's type (from the kit's value sets)
    cis: Concept | None = None
    atc: Concept | None = None


Entries = list[tuple[str, dict[str, Any]]]


def _entries(data: dict[str, Any], key: str, label: str, display_key: str = "display") -> Entries:
    raw = data.get(key, [])
    if not isinstance(raw, list):
        raise InvalidInput.field(f"data.{key}", f"{label} : une liste est attendue.")
    out = []
    for index, entry in enumerate(raw):
        path = f"data.{key}[{index}]"
        if (not isinstance(entry, dict) or not isinstance(entry.get(display_key), str)
                or not entry[display_key].strip()):
            raise InvalidInput.field(f"{path}.{display_key}", f"{label} : libellé obligatoire.")
        out.append((path, entry))
    return out


def _since(entry: dict[str, Any], path: str, key: str = "since") -> str:
    when = entry.get(key)
    return parse_when(when, f"{path}.{key}").astimezone(PARIS).strftime("%Y%m%d") if when else ""


def _coded(entry: dict[str, Any], path: str, label: str, allowed: tuple[str, ...], *,
           required: bool) -> Concept | None:
    code = entry.get("code")
    if code is None or code == "":
        if required:
            raise InvalidInput.field(f"{path}.code", f"{label} : code obligatoire.", code="code_required")
        if entry.get("system"):
            raise InvalidInput.field(f"{path}.system", f"{label} : un système de codes sans code.",
                                     code="code_required")
        return None
    return open_code(code, entry["display"] if "display" in entry else entry.get("name", ""), entry.get("system"),
                     allowed, path)


def _problems_of(data: dict[str, Any], codes: ValueSets) -> list[Item]:
    items = []
    for path, entry in _entries(data, "problems", "Problème"):
        kind = codes.concept(JDV_PROBLEM_KIND, entry.get("kind") or PROBLEM_KIND, f"{path}.kind")
        items.append(Item(entry["display"], _coded(entry, path, "Problème", PROBLEM_SYSTEMS, required=True),
                          _since(entry, path), kind=kind))
    return items


def _allergies_of(data: dict[str, Any], codes: ValueSets) -> list[Item]:
    items = []
    for path, entry in _entries(data, "allergies", "Allergie"):
        kind = codes.concept(JDV_ALLERGY_TYPE, entry.get("type") or ALLERGY_TYPE, f"{path}.type")
        items.append(Item(entry["display"], _coded(entry, path, "Allergie", ALLERGEN_SYSTEMS, required=False),
                          _since(entry, path), kind=kind))
    return items


def _treatments_of(data: dict[str, Any]) -> list[Item]:
    items = []
    for path, entry in _entries(data, "treatments", "Traitement", display_key="name"):
        if entry.get("system"):  # the product code is CIS (``cis``, or ``code``); ATC goes in ``atc``
            terminology(entry["system"], ("CIS",), f"{path}.system")
        key = "cis" if entry.get("cis") else "code"
        cis = (open_code(entry[key], entry["name"], None, ("CIS",), path, code_field=f"{path}.{key}")
               if entry.get(key) else None)
        atc_code = entry.get("atc")
        atc_display = entry.get("atc_display") or (entry["name"] if cis is None else atc_code)
        atc = (open_code(atc_code, str(atc_display), None, ("ATC",), path, code_field=f"{path}.atc")
               if atc_code else None)
        items.append(Item(entry["name"], cis, _since(entry, path), cis=cis, atc=atc))
    return items


def _procedures_of(data: dict[str, Any]) -> list[Item]:
    return [Item(entry["display"], _coded(entry, path, "Acte", PROCEDURE_SYSTEMS, required=True),
                 _since(entry, path, "date")) for path, entry in _entries(data, "procedures", "Acte")]


def _devices_of(data: dict[str, Any]) -> list[Item]:
    return [Item(entry["display"], _coded(entry, path, "Dispositif", DEVICE_SYSTEMS, required=False),
                 _since(entry, path)) for path, entry in _entries(data, "devices", "Dispositif")]


def build(ctx: BuildContext, patient: Any, author: Any, data: dict[str, Any]) -> BuiltDocument:
    data = data_object(data)
    codes = ctx.value_sets
    problems = _problems_of(data, codes)
    allergies = _allergies_of(data, codes)
    treatments = _treatments_of(data)
    procedures = _procedures_of(data)
    devices = _devices_of(data)
    drug = codes.fixed(JDV_ADMINISTRATION, DRUG) if treatments else None
    vitals = data.get("vital_signs")
    measures = read_measures(vitals, "data.vital_signs", codes) if vitals is not None else []
    when: datetime | None = (parse_when(vitals.get("measured_at"), "data.vital_signs.measured_at")
                             if isinstance(vitals, dict) and measures else None)
    who, by = ctx.read_people(patient, author)
    now = ctx.clock.now()
    kind = ctx.document_type("60591-5")
    header = Header(
        unique_id=ctx.new_id(), set_id=ctx.new_id(), code=kind.code, code_system=kind.system,
        display=kind.display, title=document_title(data, kind.display), created=now,
        service_start=now, service_stop=None,
        confidentiality=ctx.confidentiality(),
        template_ids=(("2.16.840.1.113883.10.22.1.1", None), ("1.2.250.1.213.1.1.1.51", "2024.01")),
    )
    doc = header.build(who, by)
    body = el(el(doc, "component"), "structuredBody")
    ids = ctx.new_id
    _problems(body, problems, ids)
    _allergies(body, allergies, ids)
    _treatments(body, treatments, ids, drug)
    _procedures(body, procedures, ids)
    _devices(body, devices, ids)
    if when is not None:
        vital_signs_section(body, measures, when, ids)
    return ctx.built("synthese_medicale", header, serialize(doc))


def _code(parent: etree._Element, tag: str, concept: Concept, display: str = "") -> etree._Element:
    """``concept`` as a coded element (display: the LGC's words when given, else the kit's)."""
    return el(parent, tag, code=concept.code, displayName=display or concept.display, codeSystem=concept.system)


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
        assert item.kind is not None and item.coded is not None
        _code(observation, "code", item.kind)
        el(el(observation, "text"), "reference", value=f"#pb-{index}")
        el(observation, "statusCode", code="completed")
        _low(observation, item.since, typed=False)
        value = el(observation, "value", xsi_type="CD", code=item.coded.code, displayName=item.display,
                   codeSystem=item.coded.system)
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
        assert item.kind is not None
        _code(observation, "code", item.kind)
        el(el(observation, "text"), "reference", value=f"#al-{index}")
        el(observation, "statusCode", code="completed")
        _low(observation, item.since)
        value = el(observation, "value", xsi_type="CD")
        el(el(value, "originalText"), "reference", value=f"#al-{index}")
        entity = el(el(el(observation, "participant", typeCode="CSM"), "participantRole", classCode="MANU"),
                    "playingEntity", classCode="MMAT")
        code = (_code(entity, "code", item.coded, item.display) if item.coded is not None
                else el(entity, "code", nullFlavor="NA"))
        el(el(code, "originalText"), "reference", value=f"#al-{index}")
        el(entity, "name", item.display)


def _treatments(body: etree._Element, items: list[Item], ids: NewId, drug: Concept | None) -> None:
    section = _section(body, ("2.16.840.1.113883.10.20.1.8", "1.3.6.1.4.1.19376.1.5.3.1.3.19",
                              "1.2.250.1.213.1.1.2.143"), "10160-0", "Historique de la prise médicamenteuse",
                       "Traitements", ids, [i.display for i in items], "Aucun traitement en cours.", "med")
    for index, item in enumerate(items, 1):
        sa = el(el(section, "entry", typeCode="DRIV"), "substanceAdministration", classCode="SBADM", moodCode="EVN")
        _templates(sa, "2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.7", "1.2.250.1.213.1.1.3.42",
                   "1.3.6.1.4.1.19376.1.5.3.1.4.7.1", "1.2.250.1.213.1.1.3.42.3")
        el(sa, "id", root=ids())
        assert drug is not None
        _code(sa, "code", drug)
        el(el(sa, "text"), "reference", value=f"#med-{index}")
        el(sa, "statusCode", code="completed")
        period = el(sa, "effectiveTime", xsi_type="IVL_TS")
        el(period, "low", **({"value": item.since} if item.since else {"nullFlavor": "UNK"}))
        el(period, "high", nullFlavor="UNK")
        product = el(el(sa, "consumable"), "manufacturedProduct", classCode="MANU")
        _templates(product, "2.16.840.1.113883.10.20.1.53", "1.3.6.1.4.1.19376.1.5.3.1.4.7.2",
                   "1.2.250.1.213.1.1.3.43")
        material = el(product, "manufacturedMaterial")
        # The product is coded in CIS or not at all (E_produitDeSante_fr); ATC is a translation, with or without.
        cis, atc = item.cis, item.atc
        code = _code(material, "code", cis) if cis is not None else el(material, "code", nullFlavor="NA")
        el(el(code, "originalText"), "reference", value=f"#med-{index}")
        if atc is not None:
            _code(code, "translation", atc)
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
        assert item.coded is not None
        code = _code(procedure, "code", item.coded, item.display)
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
        code = (_code(device, "code", item.coded, item.display) if item.coded is not None
                else el(device, "code", nullFlavor="UNK"))
        el(el(code, "originalText"), "reference", value=f"#dm-{index}")
