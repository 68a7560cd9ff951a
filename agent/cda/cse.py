"""Certificats de santé de l'enfant du 9e et du 24e mois (CI-SIS CSE-CS9 and CSE-CS24 2025.01), shared helpers.

``data`` (coded answers are {"code", "display"?} or a bare code, looked up in the value set the volet's schematron
checks that element against, the ``JDV_*`` constants below; the code system and display come from it):
    exam_date          ISO date of the examination (required)
    parents            [{"relation": "MTH"|"FTH"|..., "profession": {code, display} (PCS-INSEE), "birth_date"?,
                         "family"?, "given"?, "activity"?: {code, display}}]  (at least one, one birth date)
    premature          CS24: born before 33 weeks (true/false, required)
    childcare          true/false: is the child looked after outside the family (required)
    childcare_type     {code, display} (JDV_TypeGarde)
    children_at_home   number of children living at home
    breastfeeding_exclusive_weeks, breastfeeding_mixed_weeks
    screens            {code, display} exposure to screens (required for CS24; JDV_EnfantExposeAuxEcrans)
    domestic_accidents [{code, display}] causes (CIM-11, JDV_CauseAccidentDom); empty or absent: no accident
    history            [{code, display}] other antécédents (JDV_AntecedentsCSE9 / CSE24)
    measures           {"weight_g"?, "height_cm"?, "head_cm"?} (at least one)
    neurodevelopment   {code, display} repérage des troubles du neurodéveloppement (required)
    development        [{code, display, value: true/false or number, unit?}] other milestones (MED-200...)
    vaccinations       [{"atc", "display", "rank"?, "date"?}] (JDV_VaccinCSE9 / CSE24)
    treatments         [{"atc", "display"}] médicaments administrés
    care_plan          [{code, display}] orientations (JDV_Rencontre_CS9_CS24)

The CS8 (8th day: pregnancy, delivery and newborn) has its own input, documented in ``agent.cda.cse8``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from lxml import etree

from agent.cda.context import BuildContext, BuiltDocument, data_object
from agent.cda.header import Header, el, name_error, parse_when, serialize
from agent.cda.structured import NewId, document_title, read_measures, vital_signs_section
from agent.cda.vaccination import JDV_IMMUNIZATION
from agent.cda.valuesets import TERMINOLOGIES, Concept, ValueSets
from agent.errors import InvalidInput

LOINC = "2.16.840.1.113883.6.1"
TA_ASIP = "1.2.250.1.213.1.1.4.322"  # the volets' question codes (observation/code): fixed by the templates
ATC = TERMINOLOGIES["ATC"].oid
# The value sets each coded answer is checked against (the volets' schematrons name them).
JDV_RELATION = "JDV_HL7_PersonalRelationshipRoleType_CISIS"
JDV_PROFESSION = "JDV_Profession_CISIS"
JDV_ACTIVITY = "JDV_Activite_CISIS"
JDV_CHILDCARE = "JDV_TypeGarde_CISIS"
JDV_SCREENS = "JDV_EnfantExposeAuxEcrans_CS24_CISIS"
JDV_ACCIDENT_CAUSE = "JDV_CauseAccidentDom_CISIS"
JDV_NEURO = "JDV_ReperageTroubleNeurodeveloppement_CISIS"
# The only list of developmental milestones in the kit (CS24's); the CS9 takes its codes from it too.
JDV_DEVELOPMENT = "JDV_DeveloppementPsychomoteur_CS24_CISIS"
JDV_HISTORY = {"cse_cs9": "JDV_AntecedentsCSE9_CISIS", "cse_cs24": "JDV_AntecedentsCSE24_CISIS"}
JDV_VACCINES = {"cse_cs8": "JDV_VaccinCSE8_CISIS", "cse_cs9": "JDV_VaccinCSE9_CISIS",
                "cse_cs24": "JDV_VaccinCSE24_CISIS"}
JDV_CARE_PLAN = {"cse_cs8": "JDV_Rencontre_CS8_CISIS", "cse_cs9": "JDV_Rencontre_CS9_CS24_CISIS",
                 "cse_cs24": "JDV_Rencontre_CS9_CS24_CISIS"}
# Codes the templates fix, written as the kit's value set for that element writes them (``ValueSets.fixed``).
JDV_PROBLEM_KIND, PROBLEM_KIND = "JDV_ProblemCodes_CISIS", "282291009"  # interprétation diagnostique
JDV_ADMINISTRATION = "JDV_HL7_ActSubstanceAdministrationCode_CISIS"  # DRUG
JDV_ENCOUNTER, AMBULATORY = "JDV_HL7_ActEncounterCode_CISIS", "AMB"
VOLETS = {
    "cse_cs9": ("1.2.250.1.213.1.1.1.5.2", "Deuxième certificat de santé (à établir obligatoirement au cours du 9ème "
                "mois)"),
    "cse_cs24": ("1.2.250.1.213.1.1.1.5.3", "Troisième certificat de santé (à établir obligatoirement au cours du "
                 "24ème mois)"),
}
SOCIAL = ("2.16.840.1.113883.10.20.1.33", "1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.3.6.1.4.1.19376.1.5.3.1.4.13.4",
          "1.2.250.1.213.1.1.3.52")
SIMPLE_OBSERVATION = ("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48")


def answer(codes: ValueSets, name: str, data: dict[str, Any], key: str, path: str = "data", *,
           required: bool = False) -> Concept | None:
    """The coded answer ``data[key]`` ({code, display?} or a bare code) as a concept of the value set ``name``."""
    return codes.concept(name, data.get(key), f"{path}.{key}", required=required)


def relation(codes: ValueSets, parent: dict[str, Any], path: str) -> Concept:
    """The parent's relation to the child (HL7 PersonalRelationshipRoleType; MTH when not said)."""
    concept = codes.concept(JDV_RELATION, parent.get("relation") or "MTH", f"{path}.relation")
    assert concept is not None
    return concept


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidInput.field(f"data.{key}", "Liste d'objets attendue.")
    return value


def _day(value: Any, field: str) -> str:
    return parse_when(value, field).strftime("%Y%m%d")


def build_cs9(ctx: BuildContext, patient: Any, author: Any, data: dict[str, Any]) -> BuiltDocument:
    return _build(ctx, "cse_cs9", patient, author, data)


def build_cs24(ctx: BuildContext, patient: Any, author: Any, data: dict[str, Any]) -> BuiltDocument:
    return _build(ctx, "cse_cs24", patient, author, data)


def _build(ctx: BuildContext, kind: str, patient: Any, author: Any, data: dict[str, Any]) -> BuiltDocument:
    data = data_object(data)
    codes = ctx.value_sets
    template, title = VOLETS[kind]
    exam = parse_when(data.get("exam_date"), "data.exam_date")
    parents = _list(data, "parents")
    if not parents:
        raise InvalidInput.field("data.parents", "Au moins un parent, avec sa date de naissance.")
    if not isinstance(data.get("childcare"), bool):
        raise InvalidInput.field("data.childcare", "Garde de l'enfant (true/false) obligatoire.")
    screens = answer(codes, JDV_SCREENS, data, "screens", required=kind == "cse_cs24")
    neuro = answer(codes, JDV_NEURO, data, "neurodevelopment", required=True)
    measures = read_measures(data.get("measures") or {}, "data.measures", codes)
    if not measures:
        raise InvalidInput.field("data.measures", "Au moins une mesure : weight_g, height_cm ou head_cm.")

    who, by = ctx.read_people(patient, author)
    who, by = structured_addresses_only(who, by)
    certificate = ctx.document_type("CERT_DECL")
    header = Header(
        unique_id=ctx.new_id(), set_id=ctx.new_id(), code=certificate.code, code_system=certificate.system,
        display=certificate.display, title=document_title(data, title), created=ctx.clock.now(),
        service_start=exam, service_stop=None, event_code=("11429006", "2.16.840.1.113883.6.96", "consultation"),
        confidentiality=ctx.confidentiality(),
        template_ids=(("1.2.250.1.213.1.1.1.5", None), (template, "2025.01")),
    )
    doc = header.build(who, by)
    body = el(el(doc, "component"), "structuredBody")
    ids = ctx.new_id
    _habitus(body, codes, data, parents, screens, ids)
    _history(body, codes, kind, data, ids)
    vital_signs_section(body, measures, exam, ids)
    assert neuro is not None
    _development(body, codes, neuro, _list(data, "development"), ids)
    _vaccinations(body, codes, kind, _list(data, "vaccinations"), ids)
    _treatments(body, codes, _list(data, "treatments"), ids)
    _care_plan(body, codes, kind, _list(data, "care_plan"), ids)
    return ctx.built(kind, header, serialize(doc))


def structured_addresses_only(who: Any, by: Any) -> tuple[Any, Any]:
    """The CSE volets want structured addresses (CI-SISAddr): an address of free lines only is left out."""
    if who.address is not None and not who.address.structured:
        who = replace(who, address=None)
    org = by.organisation
    if org.address is not None and not org.address.structured:
        by = replace(by, organisation=replace(org, address=None))
    return who, by


def _section(body: etree._Element, templates: tuple[str, ...], code: str, display: str, title: str,
             ids: NewId, rows: list[tuple[str, str]], empty: str) -> etree._Element:
    section = el(el(body, "component"), "section")
    for root in templates:
        el(section, "templateId", root=root)
    el(section, "id", root=ids())
    el(section, "code", code=code, displayName=display, codeSystem=LOINC)
    el(section, "title", title)
    text = el(section, "text")
    if rows:
        items = el(text, "list")
        for anchor, row in rows:
            el(el(items, "item"), "content", row, ID=anchor)
    else:
        el(text, "paragraph", empty)
    return section


def _value(observation: etree._Element, value: Any, unit: str = "") -> None:
    if isinstance(value, bool):
        el(observation, "value", xsi_type="BL", value="true" if value else "false")
    elif isinstance(value, int | float):
        if unit:
            el(observation, "value", xsi_type="PQ", value=f"{value:g}", unit=unit)
        else:
            el(observation, "value", xsi_type="INT", value=str(int(value)))
    elif isinstance(value, Concept):
        el(observation, "value", xsi_type="CD", code=value.code, displayName=value.display, codeSystem=value.system)
    else:
        el(observation, "value", xsi_type="CD", nullFlavor="UNK")


def related_subject(parent: etree._Element, role: Concept, family: str, given: str, birth: str) -> None:
    """The subject of an observation about a relative (IHE Related Subject): relation, name, birth date."""
    subject = el(parent, "subject", typeCode="SBJ")
    el(subject, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.15.2")
    el(subject, "templateId", root="1.2.250.1.213.1.1.3.60")
    related = el(subject, "relatedSubject", classCode="PRS")
    el(related, "code", code=role.code, displayName=role.display, codeSystem=role.system)
    person = el(related, "subject")
    if family or given:
        name = el(person, "name")
        if family:
            el(name, "family", family)
        if given:
            el(name, "given", given)
    if birth:
        el(person, "birthTime", value=birth)


def person_name(parent: dict[str, Any], path: str) -> tuple[str, str]:
    family, given = parent.get("family"), parent.get("given")
    for key, value in (("family", family), ("given", given)):
        if value is not None and (not isinstance(value, str) or len(value) > 200):
            raise InvalidInput.field(f"{path}.{key}", "Un texte de 200 caractères au plus.")
        if isinstance(value, str) and name_error(" ".join(value.split())):
            raise InvalidInput.field(f"{path}.{key}", name_error(" ".join(value.split())))
    return " ".join((family or "").split()), " ".join((given or "").split())


@dataclass(frozen=True)
class Relative:
    role: Concept
    family: str
    given: str
    birth: str  # AAAAMMJJ or ""

    @classmethod
    def read(cls, codes: ValueSets, parent: dict[str, Any], path: str) -> Relative:
        family, given = person_name(parent, path)
        birth = _day(parent["birth_date"], f"{path}.birth_date") if parent.get("birth_date") else ""
        return cls(relation(codes, parent, path), family, given, birth)

    def write(self, parent: etree._Element) -> None:
        related_subject(parent, self.role, self.family, self.given, self.birth)


def _social(section: etree._Element, qualifier: tuple[str, str], value: Any, anchor: str, ids: NewId, *,
            unit: str = "", subject: Relative | None = None, direct: bool = False) -> None:
    """A social-history observation: "Autre élément social" qualified by ``qualifier``, or (``direct``) coded
    with ``qualifier`` itself (a LOINC code such as 74013-4 alcohol)."""
    observation = el(el(section, "entry"), "observation", classCode="OBS", moodCode="EVN")
    for root in SOCIAL:
        el(observation, "templateId", root=root)
    el(observation, "id", root=ids())
    if direct:
        el(observation, "code", code=qualifier[0], displayName=qualifier[1], codeSystem=LOINC)
    else:
        code = el(observation, "code", code="11345-6", displayName="Autre élément social", codeSystem=LOINC)
        el(el(code, "qualifier"), "value", code=qualifier[0], displayName=qualifier[1], codeSystem=TA_ASIP)
    el(el(observation, "text"), "reference", value=f"#{anchor}")
    el(observation, "statusCode", code="completed")
    el(observation, "effectiveTime", nullFlavor="NA")
    _value(observation, value, unit)
    if subject is not None:
        subject.write(observation)


Fact = tuple[tuple[str, str], Any, str, str, Relative | None]


def parent_facts(codes: ValueSets, parents: list[dict[str, Any]]) -> tuple[list[Fact], list[tuple[str, str]]]:
    """Each parent's profession (carrying the parent's identity and birth date, as the volets want) and
    activity, with their narrative rows."""
    facts: list[Fact] = []
    rows: list[tuple[str, str]] = []
    for index, parent in enumerate(parents):
        path = f"data.parents[{index}]"
        who = Relative.read(codes, parent, path)
        profession = answer(codes, JDV_PROFESSION, parent, "profession", path, required=True)
        activity = answer(codes, JDV_ACTIVITY, parent, "activity", path)
        assert profession is not None
        facts.append((("ORG-099", "Profession"), profession, f"parent-{index}", "", who))
        rows.append((f"parent-{index}", f"{who.role.display} : {profession.display}"))
        if activity:
            facts.append((("ORG-075", "Activité professionnelle"), activity, f"parent-{index}-act", "", None))
            rows.append((f"parent-{index}-act", f"{who.role.display}, activité : {activity.display}"))
    return facts, rows


def _habitus(body: etree._Element, codes: ValueSets, data: dict[str, Any], parents: list[dict[str, Any]],
             screens: Concept | None, ids: NewId) -> None:
    if not any(parent.get("birth_date") for parent in parents):
        raise InvalidInput.field("data.parents[0].birth_date", "Date de naissance d'au moins un parent obligatoire.")
    facts, rows = parent_facts(codes, parents)
    children = data.get("children_at_home")
    if children is not None:
        if isinstance(children, bool) or not isinstance(children, int) or not 0 <= children <= 30:
            raise InvalidInput.field("data.children_at_home", "Nombre d'enfants au foyer : un entier de 0 à 30.")
        facts.append((("85722-7", "Nombre d'enfants vivant au foyer"), children, "foyer", "", None))
        rows.append(("foyer", f"Enfants au foyer : {children}"))
    facts.append((("PAT-058", "Faites-vous actuellement garder votre enfant ?"), bool(data["childcare"]), "garde",
                  "", None))
    rows.append(("garde", "Enfant gardé : " + ("oui" if data["childcare"] else "non")))
    childcare_type = answer(codes, JDV_CHILDCARE, data, "childcare_type")
    if childcare_type:
        facts.append((("PAT-048", "Type de garde de l'enfant"), childcare_type, "garde-type", "", None))
        rows.append(("garde-type", f"Type de garde : {childcare_type.display}"))
    for key, qualifier, label in (
        ("breastfeeding_exclusive_weeks", ("PAT-059", "Durée de l'alimentation au lait maternel exclusif (à partir "
                                                      "de la naissance)"), "Allaitement exclusif"),
        ("breastfeeding_mixed_weeks", ("PAT-060", "Durée de l'alimentation mixte (à partir de la naissance)"),
         "Alimentation mixte"),
    ):
        weeks = data.get(key)
        if weeks is None:
            continue
        if isinstance(weeks, bool) or not isinstance(weeks, int | float) or not 0 <= weeks <= 200:
            raise InvalidInput.field(f"data.{key}", "Durée en semaines : un nombre de 0 à 200.")
        facts.append((qualifier, weeks, key, "wk", None))
        rows.append((key, f"{label} : {weeks:g} semaines"))
    if screens:
        facts.append((("MED-1275", "Exposition aux écrans"), screens, "ecrans", "", None))
        rows.append(("ecrans", f"Exposition aux écrans : {screens.display}"))
    section = _section(body, HABITUS, "29762-2", "Habitus, Mode de vie", "Habitus, mode de vie", ids, rows, "")
    for qualifier, value, anchor, unit, subject in facts:
        _social(section, qualifier, value, anchor, ids, unit=unit, subject=subject)


HABITUS = ("2.16.840.1.113883.10.20.1.15", "1.3.6.1.4.1.19376.1.5.3.1.3.16", "1.3.6.1.4.1.19376.1.5.3.1.3.16.1",
           "1.2.250.1.213.1.1.2.141")
ACCIDENT = {"cse_cs9": "MED-186", "cse_cs24": "MED-185"}  # Accident domestique avant le 9e / depuis le 9e mois
PREMATURE = "MED-183"  # Prématurité inférieure à 33 semaines


def _history(body: etree._Element, codes: ValueSets, kind: str, data: dict[str, Any], ids: NewId) -> None:
    """Antécédents: the volet's domestic-accident question is always answered (negated when none), then the
    other antécédents of the list."""
    jdv = JDV_HISTORY[kind]
    items = _list(data, "history")
    causes = [c for i, item in enumerate(_list(data, "domestic_accidents"))
              if (c := codes.concept(JDV_ACCIDENT_CAUSE, item, f"data.domestic_accidents[{i}]")) is not None]
    accident = codes.concept(jdv, ACCIDENT[kind], "data.domestic_accidents")
    assert accident is not None
    facts: list[tuple[Concept, bool, list[Concept]]] = [(accident, bool(causes), causes)]
    if kind == "cse_cs24":
        # CS24 asks the prematurity question explicitly: answered yes or no, never left out.
        if not isinstance(data.get("premature"), bool):
            raise InvalidInput.field("data.premature", "Prématurité inférieure à 33 semaines (true/false) obligatoire.")
        premature = codes.concept(jdv, PREMATURE, "data.premature")
        assert premature is not None
        facts.append((premature, bool(data["premature"]), []))
    answered = {f[0].code for f in facts}
    for n, item in enumerate(items):
        concept = codes.concept(jdv, item, f"data.history[{n}]")
        if concept is not None and concept.code not in answered:
            facts.append((concept, True, []))
            answered.add(concept.code)
    rows = [(f"atcd-{i}", (f[0].display if f[1] else f"Pas d'{f[0].display.lower()}")
             + (" : " + ", ".join(c.display for c in f[2]) if f[2] else "")) for i, f in enumerate(facts)]
    section = _section(body, ("1.3.6.1.4.1.19376.1.5.3.1.3.8", "1.2.250.1.213.1.1.2.134"), "11348-0",
                       "Antécédents médicaux", "Antécédents médicaux", ids, rows, "")
    act = el(el(section, "entry"), "act", classCode="ACT", moodCode="EVN")
    for root in ("2.16.840.1.113883.10.20.1.27", "1.3.6.1.4.1.19376.1.5.3.1.4.5.1", "1.3.6.1.4.1.19376.1.5.3.1.4.5.2",
                 "1.2.250.1.213.1.1.3.39"):
        el(act, "templateId", root=root)
    el(act, "id", root=ids())
    el(act, "code", nullFlavor="NA")
    el(act, "statusCode", code="active")
    el(el(act, "effectiveTime"), "low", nullFlavor="UNK")
    for (concept, present, fact_causes), (anchor, _) in zip(facts, rows, strict=True):
        observation = el(el(act, "entryRelationship", typeCode="SUBJ", inversionInd="false"), "observation",
                         classCode="OBS", moodCode="EVN", negationInd="false" if present else "true")
        for root in ("2.16.840.1.113883.10.20.1.28", "1.3.6.1.4.1.19376.1.5.3.1.4.5", "1.2.250.1.213.1.1.3.37"):
            el(observation, "templateId", root=root)
        el(observation, "id", root=ids())
        _fixed(observation, "code", codes.fixed(JDV_PROBLEM_KIND, PROBLEM_KIND))
        el(el(observation, "text"), "reference", value=f"#{anchor}")
        el(observation, "statusCode", code="completed")
        el(el(observation, "effectiveTime"), "low", nullFlavor="UNK")
        value = el(observation, "value", xsi_type="CD", code=concept.code, displayName=concept.display,
                   codeSystem=concept.system)
        el(el(value, "originalText"), "reference", value=f"#{anchor}")
        for cause in fact_causes:
            caused = el(el(observation, "entryRelationship", typeCode="CAUS", inversionInd="true"), "observation",
                        classCode="OBS", moodCode="EVN", negationInd="false")
            for root in SIMPLE_OBSERVATION:
                el(caused, "templateId", root=root)
            el(caused, "id", root=ids())
            el(caused, "code", code=cause.code, displayName=cause.display, codeSystem=cause.system)
            el(el(caused, "text"), "reference", value=f"#{anchor}")
            el(caused, "statusCode", code="completed")
            el(el(caused, "effectiveTime"), "low", nullFlavor="UNK")
            el(caused, "value", xsi_type="BL", value="true")


def _development(body: etree._Element, codes: ValueSets, neuro: Concept, items: list[dict[str, Any]],
                 ids: NewId) -> None:
    facts: list[tuple[Concept, Any, str]] = [
        (Concept("MED-1274", TA_ASIP, "Repérage troubles du neurodéveloppement"), neuro, "")]
    for index, item in enumerate(items):
        path = f"data.development[{index}]"
        concept = codes.concept(JDV_DEVELOPMENT, item, path)
        value = item.get("value")
        if (concept is None or not isinstance(value, bool | int | float)
                or (isinstance(value, float) and not math.isfinite(value))):
            raise InvalidInput.field(f"{path}.value", "Valeur attendue : true/false ou nombre.")
        unit = item.get("unit") or ""
        if not isinstance(unit, str) or len(unit) > 20:
            raise InvalidInput.field(f"{path}.unit", "Unité UCUM attendue (20 caractères au plus).")
        facts.append((concept, value, unit))
    rows = [(f"dev-{i}", f"{f[0].display} : {f[1].display if isinstance(f[1], Concept) else f[1]}")
            for i, f in enumerate(facts)]
    section = _section(body, ("1.3.6.1.4.1.19376.1.7.3.1.1.13.4", "1.2.250.1.213.1.1.2.161"), "xx-MCH-PsychoMDev",
                       "Développement psychomoteur", "Développement psychomoteur", ids, rows, "")
    for (concept, value, unit), (anchor, _) in zip(facts, rows, strict=True):
        observation = el(el(section, "entry"), "observation", classCode="OBS", moodCode="EVN")
        for root in SIMPLE_OBSERVATION:
            el(observation, "templateId", root=root)
        el(observation, "id", root=ids())
        el(observation, "code", code=concept.code, displayName=concept.display, codeSystem=concept.system)
        el(el(observation, "text"), "reference", value=f"#{anchor}")
        el(observation, "statusCode", code="completed")
        el(observation, "effectiveTime", nullFlavor="NA")
        _value(observation, value, unit)


def _product(parent: etree._Element, drug: Concept, anchor: str) -> etree._Element:
    product = el(el(parent, "consumable", typeCode="CSM"), "manufacturedProduct")
    for root in ("2.16.840.1.113883.10.20.1.53", "1.3.6.1.4.1.19376.1.5.3.1.4.7.2", "1.2.250.1.213.1.1.3.43"):
        el(product, "templateId", root=root)
    material = el(product, "manufacturedMaterial")
    code = el(material, "code")
    el(el(code, "originalText"), "reference", value=f"#{anchor}")
    el(code, "translation", code=drug.code, displayName=drug.display, codeSystem=drug.system)
    el(material, "name", drug.display)
    return material


def _vaccinations(body: etree._Element, codes: ValueSets, kind: str, items: list[dict[str, Any]],
                  ids: NewId) -> None:
    vaccines: list[tuple[Concept, dict[str, Any]]] = []
    for index, item in enumerate(items):
        concept = codes.concept(JDV_VACCINES[kind], item.get("atc"), f"data.vaccinations[{index}].atc")
        assert concept is not None
        rank = item.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 20):
            raise InvalidInput.field(f"data.vaccinations[{index}].rank", "Rang de vaccination : un entier de 1 à 20.")
        vaccines.append((concept, item))
    rows = [(f"vac-{i}", concept.display) for i, (concept, _) in enumerate(vaccines)]
    section = _section(body, ("2.16.840.1.113883.10.20.1.6", "1.3.6.1.4.1.19376.1.5.3.1.3.23",
                              "1.2.250.1.213.1.1.2.147"), "11369-6", "Historique des vaccinations",
                       "Vaccinations", ids, rows, "Aucune vaccination renseignée.")
    for index, ((anchor, _), (vaccine, item)) in enumerate(zip(rows, vaccines, strict=True)):
        sa = el(el(section, "entry"), "substanceAdministration", classCode="SBADM", moodCode="EVN",
                negationInd="false")
        for root in ("2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.12", "1.2.250.1.213.1.1.3.45"):
            el(sa, "templateId", root=root)
        el(sa, "id", root=ids())
        rank = item.get("rank")
        code = codes.concept(JDV_IMMUNIZATION, "INITIMMUNIZ" if rank in (None, 1) else "BOOSTER",
                             f"data.vaccinations[{index}].rank")
        assert code is not None
        el(sa, "code", code=code.code, displayName=code.display, codeSystem=code.system)
        el(el(sa, "text"), "reference", value=f"#{anchor}")
        el(sa, "statusCode", code="completed")
        if item.get("date"):
            el(sa, "effectiveTime", value=_day(item["date"], f"data.vaccinations[{index}].date"))
        else:
            el(sa, "effectiveTime", nullFlavor="NAV")
        material = _product(sa, vaccine, anchor)
        lot = " ".join(str(item.get("lot") or "").split())[:80]
        if lot:
            el(material, "lotNumberText", lot)
        else:
            el(material, "lotNumberText", nullFlavor="UNK")
        if rank is not None:
            observation = el(el(sa, "entryRelationship", typeCode="SUBJ"), "observation", classCode="OBS",
                             moodCode="EVN")
            el(observation, "templateId", root="2.16.840.1.113883.10.20.1.46")
            el(observation, "templateId", root="1.2.250.1.213.1.1.3.82")
            el(observation, "code", code="30973-2", displayName="Rang de la vaccination", codeSystem=LOINC)
            el(observation, "statusCode", code="completed")
            el(observation, "value", xsi_type="INT", value=str(rank))


def _fixed(parent: etree._Element, tag: str, concept: Concept) -> etree._Element:
    return el(parent, tag, code=concept.code, displayName=concept.display, codeSystem=concept.system)


def atc_drug(item: dict[str, Any], path: str) -> Concept:
    """A medicine given by its ATC class (any ATC code: no value set restricts the médicaments administrés)."""
    atc, display = item.get("atc"), item.get("display")
    if not isinstance(atc, str) or not re.fullmatch(r"[A-Z](\d{2}([A-Z]([A-Z](\d{2})?)?)?)?", atc.strip()):
        raise InvalidInput.field(f"{path}.atc", "Code ATC attendu (ex. N02BE01).")
    if not isinstance(display, str) or not display.strip() or len(display) > 250:
        raise InvalidInput.field(f"{path}.display", "Nom du médicament obligatoire (250 caractères au plus).")
    return Concept(atc.strip(), ATC, " ".join(display.split()))


def _treatments(body: etree._Element, codes: ValueSets, items: list[dict[str, Any]], ids: NewId) -> None:
    drugs = [atc_drug(item, f"data.treatments[{index}]") for index, item in enumerate(items)]
    administration = codes.fixed(JDV_ADMINISTRATION, "DRUG") if drugs else None
    rows = [(f"med-{i}", drug.display) for i, drug in enumerate(drugs)]
    section = _section(body, ("1.3.6.1.4.1.19376.1.5.3.1.3.21", "1.2.250.1.213.1.1.2.145"), "18610-6",
                       "Traitements administrés", "Médicaments administrés", ids, rows, "Aucun médicament administré.")
    for (anchor, _), drug in zip(rows, drugs, strict=True):
        sa = el(el(section, "entry"), "substanceAdministration", classCode="SBADM", moodCode="EVN",
                negationInd="false")
        for root in ("2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.7", "1.2.250.1.213.1.1.3.42",
                     "1.3.6.1.4.1.19376.1.5.3.1.4.7.1"):
            el(sa, "templateId", root=root)
        el(sa, "id", root=ids())
        assert administration is not None
        _fixed(sa, "code", administration)
        el(el(sa, "text"), "reference", value=f"#{anchor}")
        el(sa, "statusCode", code="completed")
        period = el(sa, "effectiveTime", xsi_type="IVL_TS")
        el(period, "low", nullFlavor="NA")
        el(period, "high", nullFlavor="NA")
        _product(sa, drug, anchor)


def _care_plan(body: etree._Element, codes: ValueSets, kind: str, items: list[dict[str, Any]], ids: NewId) -> None:
    coded = [c for i, item in enumerate(items)
             if (c := codes.concept(JDV_CARE_PLAN[kind], item, f"data.care_plan[{i}]")) is not None]
    rows = [(f"plan-{i}", c.display) for i, c in enumerate(coded)]
    ambulatory = codes.fixed(JDV_ENCOUNTER, AMBULATORY) if coded else None
    section = _section(body, ("2.16.840.1.113883.10.20.1.10", "1.3.6.1.4.1.19376.1.5.3.1.3.36",
                              "1.2.250.1.213.1.1.2.158"), "18776-5", "Plan de soins", "Plan de soins", ids, rows,
                       "Aucune orientation.")
    for (anchor, _), item in zip(rows, coded, strict=True):
        encounter = el(el(section, "entry"), "encounter", classCode="ENC", moodCode="ARQ")
        for root in ("2.16.840.1.113883.10.20.1.25", "1.3.6.1.4.1.19376.1.5.3.1.4.14", "1.2.250.1.213.1.1.3.58"):
            el(encounter, "templateId", root=root)
        el(encounter, "id", root=ids())
        assert ambulatory is not None
        code = _fixed(encounter, "code", ambulatory)
        el(el(code, "qualifier"), "value", code=item.code, displayName=item.display, codeSystem=item.system)
        el(el(encounter, "text"), "reference", value=f"#{anchor}")
        el(encounter, "effectiveTime", nullFlavor="UNK")
        el(encounter, "priorityCode", nullFlavor="UNK")

