"""Certificats de santé de l'enfant du 9e et du 24e mois (CI-SIS CSE-CS9 and CSE-CS24 2025.01), shared helpers.

``data`` (coded answers are {"code", "display"} from the volet's value sets, TA_ASIP codes mostly):
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

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lxml import etree

from agent.cda.header import Header, el, parse_when, serialize
from agent.cda.structured import NewId, read_measures, vital_signs_section
from agent.errors import InvalidInput

if TYPE_CHECKING:
    from agent.cda.service import BuiltDocument, CdaService

LOINC = "2.16.840.1.113883.6.1"
TA_ASIP = "1.2.250.1.213.1.1.4.322"
PCS = "1.2.250.1.213.2.13"
ATC = "2.16.840.1.113883.6.73"
ROLE_CODES = "2.16.840.1.113883.5.111"
RELATIONS = {"MTH": "Mère", "FTH": "Père", "GRMTH": "Grand-mère", "GRFTH": "Grand-père", "GUARD": "Tuteur"}
VOLETS = {
    "cse_cs9": ("1.2.250.1.213.1.1.1.5.2", "Deuxième certificat de santé (à établir obligatoirement au cours du 9ème "
                "mois)"),
    "cse_cs24": ("1.2.250.1.213.1.1.1.5.3", "Troisième certificat de santé (à établir obligatoirement au cours du "
                 "24ème mois)"),
}
SOCIAL = ("2.16.840.1.113883.10.20.1.33", "1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.3.6.1.4.1.19376.1.5.3.1.4.13.4",
          "1.2.250.1.213.1.1.3.52")
SIMPLE_OBSERVATION = ("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48")


def _coded(data: dict[str, Any], key: str, *, required: bool = False, path: str = "data") -> tuple[str, str] | None:
    value = data.get(key)
    if value is None:
        if required:
            raise InvalidInput.field(f"{path}.{key}", "Réponse codée obligatoire : {code, display}.")
        return None
    if not isinstance(value, dict) or not value.get("code") or not value.get("display"):
        raise InvalidInput.field(f"{path}.{key}", "Objet {code, display} attendu.")
    return str(value["code"]), str(value["display"])


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidInput.field(f"data.{key}", "Liste d'objets attendue.")
    return value


def _day(value: Any, field: str) -> str:
    return parse_when(value, field).strftime("%Y%m%d")


def build(service: CdaService, kind: str, patient: dict[str, Any], author: dict[str, Any],
          data: dict[str, Any]) -> BuiltDocument:
    if kind == "cse_cs8":
        from agent.cda.cse8 import build_cs8

        return build_cs8(service, patient, author, data)
    template, title = VOLETS[kind]
    exam = parse_when(data.get("exam_date"), "data.exam_date")
    parents = _list(data, "parents")
    if not parents:
        raise InvalidInput.field("data.parents", "Au moins un parent, avec sa date de naissance.")
    if not isinstance(data.get("childcare"), bool):
        raise InvalidInput.field("data.childcare", "Garde de l'enfant (true/false) obligatoire.")
    screens = _coded(data, "screens", required=kind == "cse_cs24")
    neuro = _coded(data, "neurodevelopment", required=True)
    measures = read_measures(data.get("measures") or {}, "data.measures")
    if not measures:
        raise InvalidInput.field("data.measures", "Au moins une mesure : weight_g, height_cm ou head_cm.")

    who, by = service.read_people(patient, author)
    # The CSE volets want structured addresses (no streetAddressLine): the free-text lines are left out.
    who = replace(who, address=None)
    by = replace(by, organisation=replace(by.organisation, address=None))
    header = Header(
        unique_id=service.new_id(), set_id=service.new_id(), code="CERT_DECL", code_system="1.2.250.1.213.1.1.4.12",
        display="Certificat, déclaration", title=str(data.get("title") or title), created=service.clock.now(),
        service_start=exam, service_stop=None, event_code=("11429006", "2.16.840.1.113883.6.96", "consultation"),
        template_ids=(("1.2.250.1.213.1.1.1.5", None), (template, "2025.01")),
    )
    doc = header.build(who, by)
    body = el(el(doc, "component"), "structuredBody")
    ids = service.new_id
    _habitus(body, data, parents, screens, ids)
    _history(body, kind, data, ids)
    vital_signs_section(body, measures, exam, ids)
    _development(body, neuro, _list(data, "development"), ids)
    _vaccinations(body, _list(data, "vaccinations"), ids)
    _treatments(body, _list(data, "treatments"), ids)
    _care_plan(body, _list(data, "care_plan"), ids)
    return service.built(kind, header, serialize(doc))


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
    elif isinstance(value, tuple):
        system = PCS if value[0].isdigit() else TA_ASIP
        el(observation, "value", xsi_type="CD", code=value[0], displayName=value[1], codeSystem=system)
    else:
        el(observation, "value", xsi_type="CD", nullFlavor="UNK")


def _social(section: etree._Element, qualifier: tuple[str, str], value: Any, anchor: str, ids: NewId, *,
            unit: str = "", parent: dict[str, Any] | None = None, index: int = 0, direct: bool = False) -> None:
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
    if parent is not None:
        subject = el(observation, "subject", typeCode="SBJ")
        el(subject, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.15.2")
        el(subject, "templateId", root="1.2.250.1.213.1.1.3.60")
        related = el(subject, "relatedSubject", classCode="PRS")
        relation = str(parent.get("relation") or "MTH")
        el(related, "code", code=relation, displayName=RELATIONS.get(relation, relation), codeSystem=ROLE_CODES)
        person = el(related, "subject")
        if parent.get("family") or parent.get("given"):
            name = el(person, "name")
            if parent.get("family"):
                el(name, "family", str(parent["family"]))
            if parent.get("given"):
                el(name, "given", str(parent["given"]))
        if parent.get("birth_date"):
            el(person, "birthTime", value=_day(parent["birth_date"], f"data.parents[{index}].birth_date"))


def _habitus(body: etree._Element, data: dict[str, Any], parents: list[dict[str, Any]],
             screens: tuple[str, str] | None, ids: NewId) -> None:
    rows: list[tuple[str, str]] = []
    facts: list[tuple[tuple[str, str], Any, str, str, dict[str, Any] | None, int]] = []
    if not any(parent.get("birth_date") for parent in parents):
        raise InvalidInput.field("data.parents[0].birth_date", "Date de naissance d'au moins un parent obligatoire.")
    for index, parent in enumerate(parents):
        relation = RELATIONS.get(str(parent.get("relation") or "MTH"), "Parent")
        # The parent's profession (PCS) carries the parent's identity and birth date, as the volet wants.
        profession = _coded(parent, "profession", required=True, path=f"data.parents[{index}]")
        activity = _coded(parent, "activity", path=f"data.parents[{index}]")
        assert profession is not None
        facts.append((("ORG-099", "Profession"), profession, f"parent-{index}", "", parent, index))
        rows.append((f"parent-{index}", f"{relation} : {profession[1]}"))
        if activity:
            facts.append((("ORG-075", "Activité professionnelle"), activity, f"parent-{index}-act", "", None, 0))
            rows.append((f"parent-{index}-act", f"{relation}, activité : {activity[1]}"))
    if isinstance(data.get("children_at_home"), int):
        facts.append((("85722-7", "Nombre d'enfants vivant au foyer"), int(data["children_at_home"]), "foyer", "",
                      None, 0))
        rows.append(("foyer", f"Enfants au foyer : {data['children_at_home']}"))
    facts.append((("PAT-058", "Faites-vous actuellement garder votre enfant ?"), bool(data["childcare"]), "garde",
                  "", None, 0))
    rows.append(("garde", "Enfant gardé : " + ("oui" if data["childcare"] else "non")))
    childcare_type = _coded(data, "childcare_type")
    if childcare_type:
        facts.append((("PAT-048", "Type de garde de l'enfant"), childcare_type, "garde-type", "", None, 0))
        rows.append(("garde-type", f"Type de garde : {childcare_type[1]}"))
    for key, qualifier, label in (
        ("breastfeeding_exclusive_weeks", ("PAT-059", "Durée de l'alimentation au lait maternel exclusif (à partir "
                                                      "de la naissance)"), "Allaitement exclusif"),
        ("breastfeeding_mixed_weeks", ("PAT-060", "Durée de l'alimentation mixte (à partir de la naissance)"),
         "Alimentation mixte"),
    ):
        weeks = data.get(key)
        if isinstance(weeks, int | float) and not isinstance(weeks, bool):
            facts.append((qualifier, weeks, key, "wk", None, 0))
            rows.append((key, f"{label} : {weeks:g} semaines"))
    if screens:
        facts.append((("MED-1275", "Exposition aux écrans"), screens, "ecrans", "", None, 0))
        rows.append(("ecrans", f"Exposition aux écrans : {screens[1]}"))
    section = _section(body, ("2.16.840.1.113883.10.20.1.15", "1.3.6.1.4.1.19376.1.5.3.1.3.16",
                              "1.3.6.1.4.1.19376.1.5.3.1.3.16.1", "1.2.250.1.213.1.1.2.141"), "29762-2",
                       "Habitus, Mode de vie", "Habitus, mode de vie", ids, rows, "")
    for qualifier, value, anchor, unit, subject, position in facts:
        _social(section, qualifier, value, anchor, ids, unit=unit, parent=subject, index=position)


ACCIDENT = {"cse_cs9": ("MED-186", "Accident domestique avant le 9ème mois"),
            "cse_cs24": ("MED-185", "Accident domestique depuis le 9ème mois")}
CIM11 = "2.16.840.1.113883.6.347"
PREMATURE = ("MED-183", "Prématurité inf. à 33 semaines")


def _history(body: etree._Element, kind: str, data: dict[str, Any], ids: NewId) -> None:
    """Antécédents: the volet's domestic-accident question is always answered (negated when none), then the
    other antécédents of the list."""
    items = _list(data, "history")
    causes = [_coded({"x": c}, "x", path=f"data.domestic_accidents[{i}]")
              for i, c in enumerate(_list(data, "domestic_accidents"))]
    accident = ACCIDENT[kind]
    facts: list[tuple[tuple[str, str], bool, list[tuple[str, str] | None]]] = [(accident, bool(causes), causes)]
    if kind == "cse_cs24":
        # CS24 asks the prematurity question explicitly: answered yes or no, never left out.
        if not isinstance(data.get("premature"), bool):
            raise InvalidInput.field("data.premature", "Prématurité inférieure à 33 semaines (true/false) obligatoire.")
        facts.append((PREMATURE, bool(data["premature"]), []))
    answered = {f[0][0] for f in facts}
    facts += [(c, True, []) for c in (_coded({"x": i}, "x", path=f"data.history[{n}]") for n, i in enumerate(items))
              if c and c[0] not in answered]
    rows = [(f"atcd-{i}", (f[0][1] if f[1] else f"Pas d'{f[0][1].lower()}")
             + (" : " + ", ".join(c[1] for c in f[2] if c) if f[2] else "")) for i, f in enumerate(facts)]
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
    for ((code, display), present, fact_causes), (anchor, _) in zip(facts, rows, strict=True):
        observation = el(el(act, "entryRelationship", typeCode="SUBJ", inversionInd="false"), "observation",
                         classCode="OBS", moodCode="EVN", negationInd="false" if present else "true")
        for root in ("2.16.840.1.113883.10.20.1.28", "1.3.6.1.4.1.19376.1.5.3.1.4.5", "1.2.250.1.213.1.1.3.37"):
            el(observation, "templateId", root=root)
        el(observation, "id", root=ids())
        el(observation, "code", code="282291009", displayName="interprétation diagnostique",
           codeSystem="2.16.840.1.113883.6.96")
        el(el(observation, "text"), "reference", value=f"#{anchor}")
        el(observation, "statusCode", code="completed")
        el(el(observation, "effectiveTime"), "low", nullFlavor="UNK")
        value = el(observation, "value", xsi_type="CD", code=code, displayName=display, codeSystem=TA_ASIP)
        el(el(value, "originalText"), "reference", value=f"#{anchor}")
        for cause in fact_causes:
            assert cause is not None
            caused = el(el(observation, "entryRelationship", typeCode="CAUS", inversionInd="true"), "observation",
                        classCode="OBS", moodCode="EVN", negationInd="false")
            for root in SIMPLE_OBSERVATION:
                el(caused, "templateId", root=root)
            el(caused, "id", root=ids())
            el(caused, "code", code=cause[0], displayName=cause[1], codeSystem=CIM11)
            el(el(caused, "text"), "reference", value=f"#{anchor}")
            el(caused, "statusCode", code="completed")
            el(el(caused, "effectiveTime"), "low", nullFlavor="UNK")
            el(caused, "value", xsi_type="BL", value="true")


def _development(body: etree._Element, neuro: tuple[str, str] | None, items: list[dict[str, Any]],
                 ids: NewId) -> None:
    facts: list[tuple[str, str, Any, str]] = [("MED-1274", "Repérage troubles du neurodéveloppement", neuro, "")]
    for index, item in enumerate(items):
        coded = _coded({"x": item}, "x", path=f"data.development[{index}]")
        value = item.get("value")
        if coded is None or not isinstance(value, bool | int | float):
            raise InvalidInput.field(f"data.development[{index}].value", "Valeur attendue : true/false ou nombre.")
        facts.append((coded[0], coded[1], value, str(item.get("unit") or "")))
    rows = [(f"dev-{i}", f"{f[1]} : {f[2][1] if isinstance(f[2], tuple) else f[2]}") for i, f in enumerate(facts)]
    section = _section(body, ("1.3.6.1.4.1.19376.1.7.3.1.1.13.4", "1.2.250.1.213.1.1.2.161"), "xx-MCH-PsychoMDev",
                       "Développement psychomoteur", "Développement psychomoteur", ids, rows, "")
    for (code, display, value, unit), (anchor, _) in zip(facts, rows, strict=True):
        observation = el(el(section, "entry"), "observation", classCode="OBS", moodCode="EVN")
        for root in SIMPLE_OBSERVATION:
            el(observation, "templateId", root=root)
        el(observation, "id", root=ids())
        el(observation, "code", code=code, displayName=display, codeSystem=TA_ASIP)
        el(el(observation, "text"), "reference", value=f"#{anchor}")
        el(observation, "statusCode", code="completed")
        el(observation, "effectiveTime", nullFlavor="NA")
        if isinstance(value, tuple):
            el(observation, "value", xsi_type="CD", code=value[0], displayName=value[1], codeSystem=TA_ASIP)
        else:
            _value(observation, value, unit)


def _product(parent: etree._Element, atc: str, display: str, anchor: str) -> etree._Element:
    product = el(el(parent, "consumable", typeCode="CSM"), "manufacturedProduct")
    for root in ("2.16.840.1.113883.10.20.1.53", "1.3.6.1.4.1.19376.1.5.3.1.4.7.2", "1.2.250.1.213.1.1.3.43"):
        el(product, "templateId", root=root)
    material = el(product, "manufacturedMaterial")
    code = el(material, "code")
    el(el(code, "originalText"), "reference", value=f"#{anchor}")
    el(code, "translation", code=atc, displayName=display, codeSystem=ATC)
    el(material, "name", display)
    return material


def _vaccinations(body: etree._Element, items: list[dict[str, Any]], ids: NewId) -> None:
    for index, item in enumerate(items):
        if not item.get("atc") or not item.get("display"):
            raise InvalidInput.field(f"data.vaccinations[{index}]", "Vaccin : atc et display obligatoires.")
    rows = [(f"vac-{i}", str(item["display"])) for i, item in enumerate(items)]
    section = _section(body, ("2.16.840.1.113883.10.20.1.6", "1.3.6.1.4.1.19376.1.5.3.1.3.23",
                              "1.2.250.1.213.1.1.2.147"), "11369-6", "Historique des vaccinations",
                       "Vaccinations", ids, rows, "Aucune vaccination renseignée.")
    for (anchor, _), item in zip(rows, items, strict=True):
        sa = el(el(section, "entry"), "substanceAdministration", classCode="SBADM", moodCode="EVN",
                negationInd="false")
        for root in ("2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.12", "1.2.250.1.213.1.1.3.45"):
            el(sa, "templateId", root=root)
        el(sa, "id", root=ids())
        rank = item.get("rank")
        code = ("INITIMMUNIZ", "1ère série vaccinante") if rank in (None, 1) else ("BOOSTER", "Rappel")
        el(sa, "code", code=code[0], displayName=code[1], codeSystem="2.16.840.1.113883.5.4")
        el(el(sa, "text"), "reference", value=f"#{anchor}")
        el(sa, "statusCode", code="completed")
        if item.get("date"):
            el(sa, "effectiveTime", value=_day(item["date"], f"data.vaccinations[{anchor[4:]}].date"))
        else:
            el(sa, "effectiveTime", nullFlavor="NAV")
        material = _product(sa, str(item["atc"]), str(item["display"]), anchor)
        el(material, "lotNumberText", str(item["lot"])) if item.get("lot") else el(material, "lotNumberText",
                                                                                     nullFlavor="UNK")
        if isinstance(rank, int) and not isinstance(rank, bool):
            observation = el(el(sa, "entryRelationship", typeCode="SUBJ"), "observation", classCode="OBS",
                             moodCode="EVN")
            el(observation, "templateId", root="2.16.840.1.113883.10.20.1.46")
            el(observation, "templateId", root="1.2.250.1.213.1.1.3.82")
            el(observation, "code", code="30973-2", displayName="Rang de la vaccination", codeSystem=LOINC)
            el(observation, "statusCode", code="completed")
            el(observation, "value", xsi_type="INT", value=str(rank))


def _treatments(body: etree._Element, items: list[dict[str, Any]], ids: NewId) -> None:
    for index, item in enumerate(items):
        if not item.get("atc") or not item.get("display"):
            raise InvalidInput.field(f"data.treatments[{index}]", "Médicament : atc et display obligatoires.")
    rows = [(f"med-{i}", str(item["display"])) for i, item in enumerate(items)]
    section = _section(body, ("1.3.6.1.4.1.19376.1.5.3.1.3.21", "1.2.250.1.213.1.1.2.145"), "18610-6",
                       "Traitements administrés", "Médicaments administrés", ids, rows, "Aucun médicament administré.")
    for (anchor, _), item in zip(rows, items, strict=True):
        sa = el(el(section, "entry"), "substanceAdministration", classCode="SBADM", moodCode="EVN",
                negationInd="false")
        for root in ("2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.7", "1.2.250.1.213.1.1.3.42",
                     "1.3.6.1.4.1.19376.1.5.3.1.4.7.1"):
            el(sa, "templateId", root=root)
        el(sa, "id", root=ids())
        el(sa, "code", code="DRUG", displayName="Médicament", codeSystem="2.16.840.1.113883.5.4")
        el(el(sa, "text"), "reference", value=f"#{anchor}")
        el(sa, "statusCode", code="completed")
        period = el(sa, "effectiveTime", xsi_type="IVL_TS")
        el(period, "low", nullFlavor="NA")
        el(period, "high", nullFlavor="NA")
        _product(sa, str(item["atc"]), str(item["display"]), anchor)


def _care_plan(body: etree._Element, items: list[dict[str, Any]], ids: NewId) -> None:
    coded = [_coded({"x": item}, "x", path=f"data.care_plan[{i}]") for i, item in enumerate(items)]
    rows = [(f"plan-{i}", c[1]) for i, c in enumerate(coded) if c]
    section = _section(body, ("2.16.840.1.113883.10.20.1.10", "1.3.6.1.4.1.19376.1.5.3.1.3.36",
                              "1.2.250.1.213.1.1.2.158"), "18776-5", "Plan de soins", "Plan de soins", ids, rows,
                       "Aucune orientation.")
    for (anchor, _), item in zip(rows, coded, strict=True):
        assert item is not None
        encounter = el(el(section, "entry"), "encounter", classCode="ENC", moodCode="ARQ")
        for root in ("2.16.840.1.113883.10.20.1.25", "1.3.6.1.4.1.19376.1.5.3.1.4.14", "1.2.250.1.213.1.1.3.58"):
            el(encounter, "templateId", root=root)
        el(encounter, "id", root=ids())
        code = el(encounter, "code", code="AMB", displayName="Ambulatoire (hors établissement)",
                  codeSystem="2.16.840.1.113883.5.4")
        el(el(code, "qualifier"), "value", code=item[0], displayName=item[1], codeSystem=TA_ASIP)
        el(el(encounter, "text"), "reference", value=f"#{anchor}")
        el(encounter, "effectiveTime", nullFlavor="UNK")
        el(encounter, "priorityCode", nullFlavor="UNK")

