"""Certificat de santé du 8e jour (CI-SIS CSE-CS8 2025.01): the mother, the pregnancy, the delivery, the newborn.

``data`` (coded answers are {"code", "display"}; SNOMED CT where the volet says so, TA_ASIP otherwise):
    exam_date, parents, children_at_home, vaccinations, treatments, care_plan   as for CS9/CS24
    mother             {"alcohol": int (glasses/week, 74013-4), "tobacco": int (cigarettes/day, 74011-8),
                        "other_addiction": bool}                                            (required)
    feeding            {code, display} type d'alimentation (67704-7, e.g. MED-1256)         (required)
    tb_family_risk     bool, facteurs de risque familiaux de tuberculose                    (required)
    coverage           {code, display} couverture sociale (e.g. GEN-105 PUMa)
    pregnancy          {"gravidity", "parity", "premature_children", "under_2500g", "stillborn",
                        "died_before_28_days": int; "previous_caesarean", "preeclampsia", "gestational_diabetes",
                        "other_disease": bool; "gestational_hypertension", "first_visit", "hospitalisation_reason":
                        {code, display}; "weight_before_kg", "height_cm", "hospitalisation_days": number}
    antenatal          {"trisomy_screening": bool, "ultrasounds": int, "morphology_ultrasound": bool,
                        "early_interview": bool, "hbs": "negative"|"positive"|"not_done"}       (required)
    delivery           {"labour": {..} (73813-8), "analgesia": {..} (MED-168), "method": {..} (57071-3) required;
                        "fetuses": int, "gestational_age_weeks": int, "presentation": {..}, "membranes_over_12h":
                        bool, "caesarean_cause": {..}}
    newborn            {"measures": {weight_g, height_cm, head_cm} (required), "apgar_1", "apgar_5", "apgar_10",
                        "problems": [{code, display, system?, present: bool}], "specialised_care": bool (required),
                        "hearing_screening": {code, display} result, or absent when not done,
                        "transfer": {code, display} type de transfert}
The mother (relation MTH in ``parents``) is the informant the volet requires; the child's and the practice's
addresses must be structured (postal code and city).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lxml import etree

from agent.cda.cse import (
    LOINC,
    ROLE_CODES,
    SIMPLE_OBSERVATION,
    TA_ASIP,
    _care_plan,
    _coded,
    _day,
    _list,
    _section,
    _social,
    _treatments,
    _vaccinations,
)
from agent.cda.header import Address, Header, el, parse_when, serialize
from agent.cda.structured import Measure, NewId, read_measures, vital_signs_section
from agent.errors import InvalidInput

if TYPE_CHECKING:
    from agent.cda.service import BuiltDocument, CdaService

SNOMED = "2.16.840.1.113883.6.96"
CIM10 = "2.16.840.1.113883.6.3"
HBS = {"negative": ("406118005", "dosage immuno-enzymatique de l'antigène de surface de l'hépatite B négatif"),
       "positive": ("406117000", "dosage immuno-enzymatique de l'antigène de surface de l'hépatite B positif")}
# pregnancy key -> (code, display, system, value kind, unit)
PREGNANCY = {
    "gravidity": ("11996-6", "Gestité (nombre total de grossesses y compris actuelle)", LOINC, "INT", ""),
    "parity": ("11977-6", "Parité (nombre total d'accouchements y compris actuel)", LOINC, "INT", ""),
    "premature_children": ("11637-6", "Nombre d'enfants prématurés (nés avant 37 semaines)", LOINC, "INT", ""),
    "under_2500g": ("MED-159", "Nombre d'enfants pesant moins de 2500 g", TA_ASIP, "INT", ""),
    "stillborn": ("57062-2", "Nombre d'enfants mort-nés", LOINC, "INT", ""),
    "died_before_28_days": ("MED-1184", "Nombre d'enfants nés vivants et décédés avant 28 jours", TA_ASIP, "INT", ""),
    "previous_caesarean": ("O82.9", "Accouchement par césarienne, sans précision", CIM10, "BL", ""),
    "first_visit": ("75200-6", "Date de la première consultation (déclaration de grossesse)", LOINC, "CD", SNOMED),
    "weight_before_kg": ("8348-5", "Poids corporel avant grossesse", LOINC, "PQ", "kg"),
    "height_cm": ("8302-2", "Taille", LOINC, "PQ", "cm"),
    "preeclampsia": ("O14.9", "Prééclampsie, sans précision", CIM10, "BL", ""),
    "gestational_hypertension": ("O13", "Hypertension gestationnelle [liée à la grossesse]", CIM10, "CD", TA_ASIP),
    "gestational_diabetes": ("O24.4", "Diabète sucré survenant au cours de la grossesse", CIM10, "BL", ""),
    "other_disease": ("O99", "Autres maladies de la mère classées ailleurs, mais compliquant la grossesse, "
                             "l'accouchement et la puerpéralité", CIM10, "BL", ""),
    "hospitalisation_days": ("ORG-077", "Durée d'hospitalisation", TA_ASIP, "PQ", "d"),
    "hospitalisation_reason": ("ORG-086", "Motif d'hospitalisation", TA_ASIP, "CD", TA_ASIP),
}
DELIVERY = {
    "fetuses": ("55281-0", "Nombre de fœtus", LOINC, "INT", ""),
    "gestational_age_weeks": ("11885-1", "Age gestationnel (semaines d'amenorrhées révolues)", LOINC, "INT", ""),
    "presentation": ("MED-1248", "Présentation fœtale", TA_ASIP, "CD", SNOMED),
    "membranes_over_12h": ("MED-166", "Rupture membranaire plus de 12 h avant l'accouchement", TA_ASIP, "BL", ""),
    "labour": ("73813-8", "Caractéristiques du travail", LOINC, "CD", SNOMED),
    "analgesia": ("MED-168", "Analgésie au cours du travail", TA_ASIP, "CD", SNOMED),
    "method": ("57071-3", "Méthode d'accouchement", LOINC, "CD", TA_ASIP),
    "caesarean_cause": ("MED-600", "Cause de la césarienne", TA_ASIP, "CD", TA_ASIP),
}
ANTENATAL = {
    "trisomy_screening": ("GEN-078", "Dépistage biologique de la trisomie 21", TA_ASIP, "BL", ""),
    "ultrasounds": ("ORG-079", "Nombre total d'échographies", TA_ASIP, "INT", ""),
    "morphology_ultrasound": ("ORG-080", "Echographie morphologique", TA_ASIP, "BL", ""),
    "early_interview": ("GEN-079", "Entretien prénatal précoce", TA_ASIP, "BL", ""),
}
APGAR = {"apgar_1": ("9272-6", "APGAR à 1mn"), "apgar_5": ("9274-2", "APGAR à 5mn"),
         "apgar_10": ("9271-8", "APGAR à 10mn")}


def _dict(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise InvalidInput.field(f"data.{key}", "Objet attendu.")
    return value


def _typed(observation: etree._Element, path: str, kind: str, value: Any, extra: str) -> None:
    """Write ``value`` as the volet's type: INT, BL, PQ (``extra`` = unit) or CD (``extra`` = code system)."""
    if kind == "BL" and isinstance(value, bool):
        el(observation, "value", xsi_type="BL", value="true" if value else "false")
    elif kind == "INT" and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        el(observation, "value", xsi_type="INT", value=str(value))
    elif kind == "PQ" and isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        el(observation, "value", xsi_type="PQ", value=f"{value:g}", unit=extra)
    elif kind == "CD" and isinstance(value, dict) and value.get("code") and value.get("display"):
        el(observation, "value", xsi_type="CD", code=str(value["code"]), displayName=str(value["display"]),
           codeSystem=str(value.get("system") or extra))
    else:
        expected = {"BL": "true/false", "INT": "un entier positif", "PQ": "un nombre", "CD": "{code, display}"}
        raise InvalidInput.field(path, f"Valeur attendue : {expected[kind]}.")


def _observation(parent: etree._Element, templates: tuple[str, ...], code: tuple[str, str, str], anchor: str,
                 ids: NewId, *, wrap: str = "entry") -> etree._Element:
    observation = el(el(parent, wrap), "observation", classCode="OBS", moodCode="EVN")
    for root in templates:
        el(observation, "templateId", root=root)
    el(observation, "id", root=ids())
    el(observation, "code", code=code[0], displayName=code[1], codeSystem=code[2])
    el(el(observation, "text"), "reference", value=f"#{anchor}")
    el(observation, "statusCode", code="completed")
    return observation


def _table_rows(answers: dict[str, Any], table: dict[str, tuple[str, str, str, str, str]], prefix: str,
                ) -> list[tuple[str, str]]:
    rows = []
    for key, (_, display, _, _, _) in table.items():
        if key in answers and answers[key] is not None:
            value = answers[key]
            shown = value.get("display") if isinstance(value, dict) else ("oui" if value is True else "non"
                                                                           if value is False else value)
            rows.append((f"{prefix}-{key}", f"{display} : {shown}"))
    return rows


def build_cs8(service: CdaService, patient: dict[str, Any], author: dict[str, Any],
              data: dict[str, Any]) -> BuiltDocument:
    exam = parse_when(data.get("exam_date"), "data.exam_date")
    parents = _list(data, "parents")
    mother = next((p for p in parents if p.get("relation") == "MTH"), None)
    if mother is None:
        raise InvalidInput.field("data.parents", "La mère (relation MTH) est obligatoire dans le CS8.")
    who, by = service.read_people(patient, author)
    child_address, org_address = who.address, by.organisation.address
    if child_address is None or not child_address.postal_code:
        raise InvalidInput.field("patient.address.postal_code", "Adresse de l'enfant (code postal, ville) "
                                 "obligatoire dans le CS8.")
    if org_address is None or not org_address.postal_code:
        raise InvalidInput.field("author.organisation.address.postal_code", "Adresse de la structure (code postal, "
                                 "ville) obligatoire dans le CS8.")
    # Structured addresses only (the volet refuses streetAddressLine).
    who = replace(who, address=Address((), child_address.postal_code, child_address.city, child_address.country))
    by = replace(by, organisation=replace(by.organisation, address=Address((), org_address.postal_code,
                                                                           org_address.city, org_address.country)))
    header = Header(
        unique_id=service.new_id(), set_id=service.new_id(), code="CERT_DECL", code_system="1.2.250.1.213.1.1.4.12",
        display="Certificat, déclaration", title=str(data.get("title") or "Premier certificat de santé (à établir "
                                                                        "obligatoirement dans les 8 jours)"),
        created=service.clock.now(), service_start=exam, service_stop=None,
        event_code=("11429006", SNOMED, "consultation"),
        template_ids=(("1.3.6.1.4.1.19376.1.7.3.1.1.13.1", None), ("1.2.250.1.213.1.1.1.5", None),
                      ("1.2.250.1.213.1.1.1.5.1", "2025.01")),
    )
    doc = header.build(who, by)
    _informant(doc, mother)
    body = el(el(doc, "component"), "structuredBody")
    ids = service.new_id
    _habitus8(body, data, parents, mother, ids)
    _coverage(body, _coded(data, "coverage"), ids)
    _pregnancy(body, data.get("pregnancy") or {}, ids)
    _antenatal(body, _dict(data, "antenatal"), ids)
    _delivery(body, _dict(data, "delivery"), mother, ids)
    _newborn(body, _dict(data, "newborn"), exam, ids, data)
    _vaccinations(body, _list(data, "vaccinations"), ids)
    _care_plan(body, _list(data, "care_plan"), ids)
    return service.built("cse_cs8", header, serialize(doc))


def _informant(doc: etree._Element, mother: dict[str, Any]) -> None:
    custodian = doc.find("{urn:hl7-org:v3}custodian")
    assert custodian is not None
    informant = el(doc, "informant")
    custodian.addprevious(informant)
    entity = el(informant, "relatedEntity", classCode="CON")
    el(entity, "code", code="MTH", displayName="Mère", codeSystem=ROLE_CODES)
    if mother.get("family") or mother.get("given"):
        name = el(el(entity, "relatedPerson"), "name")
        if mother.get("family"):
            el(name, "family", str(mother["family"]))
        if mother.get("given"):
            el(name, "given", str(mother["given"]))


def _habitus8(body: etree._Element, data: dict[str, Any], parents: list[dict[str, Any]], mother: dict[str, Any],
              ids: NewId) -> None:
    habits = _dict(data, "mother")
    feeding = _coded(data, "feeding", required=True)
    if not isinstance(data.get("tb_family_risk"), bool):
        raise InvalidInput.field("data.tb_family_risk", "Facteurs de risque familiaux de tuberculose (true/false).")
    if not isinstance(data.get("children_at_home"), int):
        raise InvalidInput.field("data.children_at_home", "Nombre d'enfants vivant au foyer obligatoire.")
    for key in ("alcohol", "tobacco"):
        if not isinstance(habits.get(key), int) or isinstance(habits.get(key), bool) or habits[key] < 0:
            raise InvalidInput.field(f"data.mother.{key}", "Un entier positif est attendu.")
    if not isinstance(habits.get("other_addiction"), bool):
        raise InvalidInput.field("data.mother.other_addiction", "Autre addiction (true/false) obligatoire.")
    facts: list[tuple[tuple[str, str], Any, str, dict[str, Any] | None, bool]] = []
    rows: list[tuple[str, str]] = []
    for index, parent in enumerate(parents):
        profession = _coded(parent, "profession", required=True, path=f"data.parents[{index}]")
        assert profession is not None
        facts.append((("ORG-099", "Profession"), profession, f"parent-{index}", parent, False))
        rows.append((f"parent-{index}", f"{parent.get('relation')} : {profession[1]}"))
    facts += [
        (("74013-4", "Consommation d'alcool"), habits["alcohol"], "alcool", mother, True),
        (("74011-8", "Consommation tabagique"), habits["tobacco"], "tabac", mother, True),
        (("GEN-092.01.04", "Autre addiction"), habits["other_addiction"], "addiction", mother, False),
        (("85722-7", "Nombre d'enfants vivant au foyer"), data["children_at_home"], "foyer", None, False),
        (("67704-7", "Type d'alimentation"), feeding, "alimentation", None, False),
        (("MED-183", "Facteurs de risque familiaux de tuberculose"), data["tb_family_risk"], "tuberculose", None,
         False),
    ]
    rows += [("alcool", f"Alcool (verres/semaine) : {habits['alcohol']}"),
             ("tabac", f"Tabac (cigarettes/jour) : {habits['tobacco']}"),
             ("addiction", "Autre addiction : " + ("oui" if habits["other_addiction"] else "non")),
             ("foyer", f"Enfants au foyer : {data['children_at_home']}"),
             ("alimentation", f"Alimentation : {feeding[1] if feeding else ''}"),
             ("tuberculose", "Risque familial de tuberculose : " + ("oui" if data["tb_family_risk"] else "non"))]
    section = _section(body, ("2.16.840.1.113883.10.20.1.15", "1.3.6.1.4.1.19376.1.5.3.1.3.16",
                              "1.3.6.1.4.1.19376.1.5.3.1.3.16.1", "1.2.250.1.213.1.1.2.141"), "29762-2",
                       "Habitus, Mode de vie", "Habitus, mode de vie", ids, rows, "")
    positions = {id(p): i for i, p in enumerate(parents)}
    for qualifier, value, anchor, subject, direct in facts:
        _social(section, qualifier, value, anchor, ids, parent=subject,
                index=positions.get(id(subject), 0) if subject else 0, direct=direct)


def _coverage(body: etree._Element, coverage: tuple[str, str] | None, ids: NewId) -> None:
    rows = [("couverture", coverage[1])] if coverage else []
    section = _section(body, ("2.16.840.1.113883.10.20.1.9", "1.3.6.1.4.1.19376.1.5.3.1.1.5.3.7",
                              "1.2.250.1.213.1.1.2.79"), "48768-6", "Couvertures sociales", "Couverture sociale",
                       ids, rows, "Non renseignée.")
    if coverage is None:
        return
    act = el(el(section, "entry"), "act", classCode="ACT", moodCode="DEF")
    for root in ("2.16.840.1.113883.10.20.1.20", "1.3.6.1.4.1.19376.1.5.3.1.4.17", "1.2.250.1.213.1.1.3.61"):
        el(act, "templateId", root=root)
    el(act, "id", root=ids())
    el(act, "code", code="48768-6", displayName="Couverture sociale", codeSystem=LOINC)
    el(act, "statusCode", code="completed")
    inner = el(el(act, "entryRelationship", typeCode="COMP"), "act", classCode="ACT", moodCode="EVN")
    for root in ("2.16.840.1.113883.10.20.1.26", "1.3.6.1.4.1.19376.1.5.3.1.4.18", "1.2.250.1.213.1.1.3.94"):
        el(inner, "templateId", root=root)
    el(inner, "id", root=ids())
    el(inner, "code", code=coverage[0], displayName=coverage[1], codeSystem=TA_ASIP)
    el(inner, "statusCode", code="completed")


def _answers(parent: etree._Element, answers: dict[str, Any], table: dict[str, tuple[str, str, str, str, str]],
             prefix: str, templates: tuple[str, ...], ids: NewId, *, wrap: str = "entry",
             when: str | None = None) -> None:
    for key, (code, display, system, kind, extra) in table.items():
        if answers.get(key) is None:
            continue
        observation = _observation(parent, templates, (code, display, system), f"{prefix}-{key}", ids, wrap=wrap)
        if when:
            el(observation, "effectiveTime", value=when)
        else:
            el(observation, "effectiveTime", nullFlavor="NA")
        _typed(observation, f"data.{prefix}.{key}", kind, answers[key], extra)


def _pregnancy(body: etree._Element, answers: Any, ids: NewId) -> None:
    if not isinstance(answers, dict):
        raise InvalidInput.field("data.pregnancy", "Objet attendu.")
    section = _section(body, ("1.3.6.1.4.1.19376.1.5.3.1.1.5.3.4", "1.2.250.1.213.1.1.2.77"), "10162-6",
                       "Historique des grossesses", "Grossesse", ids,
                       _table_rows(answers, PREGNANCY, "pregnancy"), "Non renseigné.")
    _answers(section, answers, PREGNANCY, "pregnancy", ("1.3.6.1.4.1.19376.1.5.3.1.4.13",
                                                        "1.3.6.1.4.1.19376.1.5.3.1.4.13.5",
                                                        "1.2.250.1.213.1.1.3.53"), ids)


def _antenatal(body: etree._Element, answers: dict[str, Any], ids: NewId) -> None:
    for key in ANTENATAL:
        if answers.get(key) is None:
            raise InvalidInput.field(f"data.antenatal.{key}", "Réponse obligatoire dans le CS8.")
    hbs = answers.get("hbs")
    if hbs not in ("negative", "positive", "not_done"):
        raise InvalidInput.field("data.antenatal.hbs", "Recherche Ag HBs : negative, positive ou not_done.")
    rows = [*_table_rows(answers, ANTENATAL, "antenatal"), ("antenatal-hbs", f"Recherche Ag HBs : {hbs}")]
    section = _section(body, ("1.3.6.1.4.1.19376.1.5.3.1.1.21.2.5", "1.3.6.1.4.1.19376.1.5.3.1.1.21.2.5.1",
                              "1.2.250.1.213.1.1.2.173"), "57078-8", "Examens et surveillance prénataux",
                       "Examens et surveillance prénataux", ids, rows, "")
    organizer = el(el(section, "entry"), "organizer", classCode="BATTERY", moodCode="EVN")
    el(organizer, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.1.21.3.10")
    el(organizer, "templateId", root="1.2.250.1.213.1.1.3.98")
    el(organizer, "id", root=ids())
    el(organizer, "code", code="XX-ANTENATALTESTINGBATTERY", displayName="ANTENATAL TESTING AND SURVEILLANCE BATTERY",
       codeSystem=LOINC, codeSystemName="LOINC")  # the content profile checks codeSystemName too
    el(organizer, "statusCode", code="completed")
    el(el(organizer, "effectiveTime"), "low", nullFlavor="NA")
    _answers(organizer, answers, ANTENATAL, "antenatal", SIMPLE_OBSERVATION, ids, wrap="component")
    observation = _observation(organizer, SIMPLE_OBSERVATION, ("51659-1", "Recherche Ag Hbs", LOINC),
                               "antenatal-hbs", ids, wrap="component")
    el(observation, "effectiveTime", nullFlavor="UNK")
    if hbs == "not_done":
        el(observation, "value", xsi_type="CD", nullFlavor="NA")
    else:
        el(observation, "value", xsi_type="CD", code=HBS[hbs][0], displayName=HBS[hbs][1], codeSystem=SNOMED)


def _delivery(body: etree._Element, answers: dict[str, Any], mother: dict[str, Any], ids: NewId) -> None:
    for key in ("labour", "analgesia", "method"):
        if not isinstance(answers.get(key), dict):
            raise InvalidInput.field(f"data.delivery.{key}", "Réponse codée {code, display} obligatoire.")
    outer = el(el(body, "component"), "section")
    el(outer, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.1.21.2.3")
    el(outer, "templateId", root="1.2.250.1.213.1.1.2.123")
    el(outer, "id", root=ids())
    el(outer, "code", code="57074-7", displayName="Travail et accouchement", codeSystem=LOINC)
    el(outer, "title", "Travail et accouchement")
    el(el(outer, "text"), "paragraph", "Voir les événements observés.")
    subject = el(outer, "subject", typeCode="SBJ")
    el(subject, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.15.2")
    el(subject, "templateId", root="1.2.250.1.213.1.1.3.60")
    related = el(subject, "relatedSubject", classCode="PRS")
    el(related, "code", code="MTH", displayName="Mère", codeSystem=ROLE_CODES)
    person = el(related, "subject")
    if mother.get("family"):
        el(el(person, "name"), "family", str(mother["family"]))
    if mother.get("birth_date"):
        el(person, "birthTime", value=_day(mother["birth_date"], "data.parents[mother].birth_date"))
    events = el(el(outer, "component"), "section")
    for root in ("1.3.6.1.4.1.19376.1.5.3.1.1.21.2.9", "1.3.6.1.4.1.19376.1.7.3.1.1.13.7", "1.2.250.1.213.1.1.2.163"):
        el(events, "templateId", root=root)
    el(events, "id", root=ids())
    el(events, "code", code="42545-4", displayName="Evènements observés", codeSystem=LOINC)
    el(events, "title", "Évènements observés")
    items = el(el(events, "text"), "list")
    for anchor, row in _table_rows(answers, DELIVERY, "delivery"):
        el(el(items, "item"), "content", row, ID=anchor)
    _answers(events, answers, DELIVERY, "delivery", SIMPLE_OBSERVATION, ids)


def _newborn(body: etree._Element, answers: dict[str, Any], exam: Any, ids: NewId, data: dict[str, Any]) -> None:
    measures = read_measures(answers.get("measures") or {}, "data.newborn.measures")
    if not measures:
        raise InvalidInput.field("data.newborn.measures", "Mesures à la naissance obligatoires (poids, taille...).")
    for key, (code, display) in APGAR.items():
        score = answers.get(key)
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
                raise InvalidInput.field(f"data.newborn.{key}", "Score d'Apgar de 0 à 10.")
            measures.append(Measure(code, display, float(score), "{score}"))
    if not isinstance(answers.get("specialised_care"), bool):
        raise InvalidInput.field("data.newborn.specialised_care", "Gestes techniques spécialisés (true/false).")
    outer = el(el(body, "component"), "section")
    el(outer, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.1.21.2.4")
    el(outer, "templateId", root="1.2.250.1.213.1.1.2.124")
    el(outer, "id", root=ids())
    el(outer, "code", code="57075-4", displayName="Informations sur l'accouchement et le nouveau-né", codeSystem=LOINC)
    el(outer, "title", "Informations sur le nouveau-né")
    el(el(outer, "text"), "paragraph", "Voir les sous-sections.")
    exam_section = el(el(outer, "component"), "section")
    for root in ("1.3.6.1.4.1.19376.1.5.3.1.3.24", "1.3.6.1.4.1.19376.1.5.3.1.1.9.15",
                 "1.3.6.1.4.1.19376.1.5.3.1.1.9.15.1", "1.2.250.1.213.1.1.2.84"):
        el(exam_section, "templateId", root=root)
    el(exam_section, "id", root=ids())
    el(exam_section, "code", code="29545-1", displayName="Examen physique", codeSystem=LOINC)
    el(exam_section, "title", "État de l'enfant à la naissance")
    el(el(exam_section, "text"), "paragraph", "Voir les signes vitaux.")
    vital_signs_section(exam_section, measures, exam, ids)
    _acts(outer, answers, exam, ids)
    _treatments(outer, _list(data, "treatments"), ids)
    transfer = _coded(answers, "transfer", path="data.newborn")
    if transfer:
        events = _section(outer, ("1.3.6.1.4.1.19376.1.5.3.1.1.21.2.9", "1.3.6.1.4.1.19376.1.7.3.1.1.13.7",
                                  "1.2.250.1.213.1.1.2.163"), "42545-4", "Evènements observés",
                          "Transfert ou mutation de l'enfant", ids, [("transfert", transfer[1])], "")
        observation = _observation(events, SIMPLE_OBSERVATION, ("ORG-081", "Type de transfert", TA_ASIP),
                                   "transfert", ids)
        el(observation, "effectiveTime", value=exam.strftime("%Y%m%d"))
        el(observation, "value", xsi_type="CD", code=transfer[0], displayName=transfer[1], codeSystem=SNOMED)


def _acts(outer: etree._Element, answers: dict[str, Any], exam: Any, ids: NewId) -> None:
    hearing = _coded(answers, "hearing_screening", path="data.newborn")
    rows = [("acte-gestes", "Gestes techniques spécialisés : " + ("oui" if answers["specialised_care"] else "non")),
            ("acte-audition", f"Dépistage de la surdité : {hearing[1] if hearing else 'non réalisé'}")]
    section = _section(outer, ("1.3.6.1.4.1.19376.1.5.3.1.1.13.2.11", "1.2.250.1.213.1.1.2.118"), "29554-3", "Actes",
                       "Actes et interventions", ids, rows, "")
    for (code, display), done, anchor in ((("MED-174", "Gestes techniques spécialisés"), answers["specialised_care"],
                                           "acte-gestes"),
                                          (("MED-1304", "Dépistage de la surdité"), hearing is not None,
                                           "acte-audition")):
        procedure = el(el(section, "entry"), "procedure", classCode="PROC", moodCode="EVN",
                       negationInd="false" if done else "true")
        for root in ("2.16.840.1.113883.10.20.1.29", "1.3.6.1.4.1.19376.1.5.3.1.4.19", "1.2.250.1.213.1.1.3.62"):
            el(procedure, "templateId", root=root)
        el(procedure, "id", root=ids())
        el(procedure, "code", code=code, displayName=display, codeSystem=TA_ASIP)
        el(el(procedure, "text"), "reference", value=f"#{anchor}")
        el(procedure, "statusCode", code="completed")
        el(el(procedure, "effectiveTime"), "low", value=exam.strftime("%Y%m%d"))
        if code == "MED-1304" and hearing is not None:
            result = _observation(procedure, SIMPLE_OBSERVATION, ("MED-1305", "Résultat du dépistage de la surdité",
                                                                  TA_ASIP), anchor, ids, wrap="entryRelationship")
            result.getparent().set("typeCode", "COMP")
            el(el(result, "effectiveTime"), "low", nullFlavor="UNK")
            el(result, "value", xsi_type="CD", code=hearing[0], displayName=hearing[1], codeSystem=TA_ASIP)

