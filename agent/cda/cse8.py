"""Certificat de santé du 8e jour (CI-SIS CSE-CS8 2025.01): the mother, the pregnancy, the delivery, the newborn.

``data`` (coded answers are {"code", "display"?}, looked up in the value sets the tables below name):
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

from typing import Any

from lxml import etree

from agent.cda.context import BuildContext, BuiltDocument, data_object
from agent.cda.cse import (
    HABITUS,
    LOINC,
    SIMPLE_OBSERVATION,
    TA_ASIP,
    Fact,
    Relative,
    _care_plan,
    _list,
    _section,
    _social,
    _treatments,
    _vaccinations,
    answer,
    parent_facts,
    structured_addresses_only,
)
from agent.cda.header import Header, el, parse_when, serialize
from agent.cda.structured import NewId, document_title, measure, read_measures, vital_signs_section
from agent.cda.valuesets import TERMINOLOGIES, Concept, ValueSets
from agent.errors import InvalidInput

SNOMED, CIM10 = TERMINOLOGIES["SNOMED CT"].oid, TERMINOLOGIES["CIM-10"].oid
HBS = {"negative": "406118005", "positive": "406117000"}  # in JDV_RechAgHbS_CISIS
JDV_FEEDING = "JDV_TypeAllaitementNouveauNe_CISIS"
JDV_COVERAGE = "JDV_CouvertureSociale_CISIS"
JDV_HBS = "JDV_RechAgHbS_CISIS"
JDV_HEARING = "JDV_ResultatDepistageSurdite_CISIS"
JDV_TRANSFER = "JDV_TransfertMutation_CISIS"
# pregnancy, delivery, antenatal: key -> (question code, display, system, value kind, unit for PQ or value set
# for CD)
PREGNANCY = {
    "gravidity": ("11996-6", "Gestité (nombre total de grossesses y compris actuelle)", LOINC, "INT", ""),
    "parity": ("11977-6", "Parité (nombre total d'accouchements y compris actuel)", LOINC, "INT", ""),
    "premature_children": ("11637-6", "Nombre d'enfants prématurés (nés avant 37 semaines)", LOINC, "INT", ""),
    "under_2500g": ("MED-159", "Nombre d'enfants pesant moins de 2500 g", TA_ASIP, "INT", ""),
    "stillborn": ("57062-2", "Nombre d'enfants mort-nés", LOINC, "INT", ""),
    "died_before_28_days": ("MED-1184", "Nombre d'enfants nés vivants et décédés avant 28 jours", TA_ASIP, "INT", ""),
    "previous_caesarean": ("O82.9", "Accouchement par césarienne, sans précision", CIM10, "BL", ""),
    "first_visit": ("75200-6", "Date de la première consultation (déclaration de grossesse)", LOINC, "CD",
                    "JDV_DateCons_CISIS"),
    "weight_before_kg": ("8348-5", "Poids corporel avant grossesse", LOINC, "PQ", "kg"),
    "height_cm": ("8302-2", "Taille", LOINC, "PQ", "cm"),
    "preeclampsia": ("O14.9", "Prééclampsie, sans précision", CIM10, "BL", ""),
    "gestational_hypertension": ("O13", "Hypertension gestationnelle [liée à la grossesse]", CIM10, "CD",
                                 "JDV_Traite_NonTraite_CISIS"),
    "gestational_diabetes": ("O24.4", "Diabète sucré survenant au cours de la grossesse", CIM10, "BL", ""),
    "other_disease": ("O99", "Autres maladies de la mère classées ailleurs, mais compliquant la grossesse, "
                             "l'accouchement et la puerpéralité", CIM10, "BL", ""),
    "hospitalisation_days": ("ORG-077", "Durée d'hospitalisation", TA_ASIP, "PQ", "d"),
    "hospitalisation_reason": ("ORG-086", "Motif d'hospitalisation", TA_ASIP, "CD",
                               "JDV_MotifHospitalisationCSE_CISIS"),
}
DELIVERY = {
    "fetuses": ("55281-0", "Nombre de fœtus", LOINC, "INT", ""),
    "gestational_age_weeks": ("11885-1", "Age gestationnel (semaines d'amenorrhées révolues)", LOINC, "INT", ""),
    "presentation": ("MED-1248", "Présentation fœtale", TA_ASIP, "CD", "JDV_TypePres_CISIS"),
    "membranes_over_12h": ("MED-166", "Rupture membranaire plus de 12 h avant l'accouchement", TA_ASIP, "BL", ""),
    "labour": ("73813-8", "Caractéristiques du travail", LOINC, "CD", "JDV_ModeDebutTravail_CISIS"),
    "analgesia": ("MED-168", "Analgésie au cours du travail", TA_ASIP, "CD", "JDV_TypeAnalgesie_CISIS"),
    "method": ("57071-3", "Méthode d'accouchement", LOINC, "CD", "JDV_MethodeAccouchement_CISIS"),
    "caesarean_cause": ("MED-600", "Cause de la césarienne", TA_ASIP, "CD", "JDV_CauseCesarienne_CISIS"),
}
ANTENATAL = {
    "trisomy_screening": ("GEN-078", "Dépistage biologique de la trisomie 21", TA_ASIP, "BL", ""),
    "ultrasounds": ("ORG-079", "Nombre total d'échographies", TA_ASIP, "INT", ""),
    "morphology_ultrasound": ("ORG-080", "Echographie morphologique", TA_ASIP, "BL", ""),
    "early_interview": ("GEN-079", "Entretien prénatal précoce", TA_ASIP, "BL", ""),
}
APGAR = {"apgar_1": "9272-6", "apgar_5": "9274-2", "apgar_10": "9271-8"}  # in JDV_SignesVitaux_CISIS


def _dict(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise InvalidInput.field(f"data.{key}", "Objet attendu.")
    return value


Table = dict[str, tuple[str, str, str, str, str]]


def resolve(codes: ValueSets, answers: dict[str, Any], table: Table, prefix: str) -> dict[str, Any]:
    """The answers of ``table`` checked against their type: BL true/false, INT a whole number >= 0, PQ a number
    >= 0, CD a concept of the value set the table names. Absent answers stay absent."""
    checked: dict[str, Any] = {}
    for key, (_, _, _, kind, extra) in table.items():
        value = answers.get(key)
        if value is None:
            continue
        path = f"data.{prefix}.{key}"
        number = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1_000_000
        if kind == "CD":
            checked[key] = codes.concept(extra, value, path)
        elif ((kind == "BL" and isinstance(value, bool)) or (kind == "INT" and number and isinstance(value, int))
              or (kind == "PQ" and number and value == value)):
            checked[key] = value
        else:
            expected = {"BL": "true/false", "INT": "un entier positif", "PQ": "un nombre positif"}
            raise InvalidInput.field(path, f"Valeur attendue : {expected[kind]}.")
    return checked


def _typed(observation: etree._Element, kind: str, value: Any, unit: str) -> None:
    """Write a ``resolve``d answer as the volet's type: INT, BL, PQ (with ``unit``) or CD."""
    if isinstance(value, Concept):
        el(observation, "value", xsi_type="CD", code=value.code, displayName=value.display, codeSystem=value.system)
    elif kind == "BL":
        el(observation, "value", xsi_type="BL", value="true" if value else "false")
    elif kind == "INT":
        el(observation, "value", xsi_type="INT", value=str(value))
    else:
        el(observation, "value", xsi_type="PQ", value=f"{value:g}", unit=unit)


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


def _table_rows(answers: dict[str, Any], table: Table, prefix: str) -> list[tuple[str, str]]:
    rows = []
    for key, (_, display, _, _, _) in table.items():
        if key in answers and answers[key] is not None:
            value = answers[key]
            shown = value.display if isinstance(value, Concept) else ("oui" if value is True else "non"
                                                                       if value is False else value)
            rows.append((f"{prefix}-{key}", f"{display} : {shown}"))
    return rows


def build(ctx: BuildContext, patient: Any, author: Any, data: dict[str, Any]) -> BuiltDocument:
    data = data_object(data)
    codes = ctx.value_sets
    exam = parse_when(data.get("exam_date"), "data.exam_date")
    parents = _list(data, "parents")
    mother_at = next((i for i, p in enumerate(parents) if p.get("relation") == "MTH"), None)
    if mother_at is None:
        raise InvalidInput.field("data.parents", "La mère (relation MTH) est obligatoire dans le CS8.")
    mother = Relative.read(codes, parents[mother_at], f"data.parents[{mother_at}]")
    coverage = answer(codes, JDV_COVERAGE, data, "coverage")
    pregnancy = data.get("pregnancy") or {}
    if not isinstance(pregnancy, dict):
        raise InvalidInput.field("data.pregnancy", "Objet attendu.")
    pregnancy = resolve(codes, pregnancy, PREGNANCY, "pregnancy")
    antenatal = _dict(data, "antenatal")
    delivery = _dict(data, "delivery")
    for key in ("labour", "analgesia", "method"):
        if delivery.get(key) is None:
            raise InvalidInput.field(f"data.delivery.{key}", "Réponse codée {code, display} obligatoire.")
    delivery = resolve(codes, delivery, DELIVERY, "delivery")
    who, by = ctx.read_people(patient, author)
    if who.address is None or not who.address.postal_code:
        raise InvalidInput.field("patient.address.postal_code", "Adresse de l'enfant (code postal, ville) "
                                 "obligatoire dans le CS8.")
    if by.organisation.address is None or not by.organisation.address.postal_code:
        raise InvalidInput.field("author.organisation.address.postal_code", "Adresse de la structure (code postal, "
                                 "ville) obligatoire dans le CS8.")
    who, by = structured_addresses_only(who, by)
    certificate = ctx.document_type("CERT_DECL")
    header = Header(
        unique_id=ctx.new_id(), set_id=ctx.new_id(), code=certificate.code, code_system=certificate.system,
        display=certificate.display,
        title=document_title(data, "Premier certificat de santé (à établir obligatoirement dans les 8 jours)"),
        created=ctx.clock.now(), service_start=exam, service_stop=None,
        event_code=("11429006", SNOMED, "consultation"),
        confidentiality=ctx.confidentiality(),
        template_ids=(("1.3.6.1.4.1.19376.1.7.3.1.1.13.1", None), ("1.2.250.1.213.1.1.1.5", None),
                      ("1.2.250.1.213.1.1.1.5.1", "2025.01")),
    )
    doc = header.build(who, by)
    _informant(doc, mother)
    body = el(el(doc, "component"), "structuredBody")
    ids = ctx.new_id
    _habitus8(body, codes, data, parents, mother, ids)
    _coverage(body, coverage, ids)
    _pregnancy(body, pregnancy, ids)
    _antenatal(body, codes, antenatal, ids)
    _delivery(body, delivery, mother, ids)
    _newborn(body, codes, _dict(data, "newborn"), exam, ids, data)
    _vaccinations(body, codes, "cse_cs8", _list(data, "vaccinations"), ids)
    _care_plan(body, codes, "cse_cs8", _list(data, "care_plan"), ids)
    return ctx.built("cse_cs8", header, serialize(doc))


def _informant(doc: etree._Element, mother: Relative) -> None:
    """The mother as the document's informant: CI-SISInformant wants a relatedPerson, named or not."""
    custodian = doc.find("{urn:hl7-org:v3}custodian")
    assert custodian is not None
    informant = el(doc, "informant")
    custodian.addprevious(informant)
    entity = el(informant, "relatedEntity", classCode="CON")
    el(entity, "code", code=mother.role.code, displayName=mother.role.display, codeSystem=mother.role.system)
    name = el(el(entity, "relatedPerson"), "name")
    if mother.family:
        el(name, "family", mother.family)
    if mother.given:
        el(name, "given", mother.given)
    if not (mother.family or mother.given):
        name.set("nullFlavor", "UNK")


def _habitus8(body: etree._Element, codes: ValueSets, data: dict[str, Any], parents: list[dict[str, Any]],
              mother: Relative, ids: NewId) -> None:
    habits = _dict(data, "mother")
    feeding = answer(codes, JDV_FEEDING, data, "feeding", required=True)
    assert feeding is not None
    if not isinstance(data.get("tb_family_risk"), bool):
        raise InvalidInput.field("data.tb_family_risk", "Facteurs de risque familiaux de tuberculose (true/false).")
    children = data.get("children_at_home")
    if isinstance(children, bool) or not isinstance(children, int) or not 0 <= children <= 30:
        raise InvalidInput.field("data.children_at_home", "Nombre d'enfants vivant au foyer obligatoire (0 à 30).")
    for key in ("alcohol", "tobacco"):
        value = habits.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
            raise InvalidInput.field(f"data.mother.{key}", "Un entier positif est attendu.")
    if not isinstance(habits.get("other_addiction"), bool):
        raise InvalidInput.field("data.mother.other_addiction", "Autre addiction (true/false) obligatoire.")
    facts, rows = parent_facts(codes, parents)
    direct: set[str] = {"alcool", "tabac"}
    facts += [
        (("74013-4", "Consommation d'alcool"), habits["alcohol"], "alcool", "", mother),
        (("74011-8", "Consommation tabagique"), habits["tobacco"], "tabac", "", mother),
        (("GEN-092.01.04", "Autre addiction"), habits["other_addiction"], "addiction", "", mother),
        (("85722-7", "Nombre d'enfants vivant au foyer"), children, "foyer", "", None),
        (("67704-7", "Type d'alimentation"), feeding, "alimentation", "", None),
        (("MED-183", "Facteurs de risque familiaux de tuberculose"), data["tb_family_risk"], "tuberculose", "", None),
    ]
    rows += [("alcool", f"Alcool (verres/semaine) : {habits['alcohol']}"),
             ("tabac", f"Tabac (cigarettes/jour) : {habits['tobacco']}"),
             ("addiction", "Autre addiction : " + ("oui" if habits["other_addiction"] else "non")),
             ("foyer", f"Enfants au foyer : {children}"),
             ("alimentation", f"Alimentation : {feeding.display}"),
             ("tuberculose", "Risque familial de tuberculose : " + ("oui" if data["tb_family_risk"] else "non"))]
    section = _section(body, HABITUS, "29762-2", "Habitus, Mode de vie", "Habitus, mode de vie", ids, rows, "")
    fact: Fact
    for fact in facts:
        qualifier, value, anchor, unit, subject = fact
        _social(section, qualifier, value, anchor, ids, unit=unit, subject=subject, direct=anchor in direct)


def _coverage(body: etree._Element, coverage: Concept | None, ids: NewId) -> None:
    rows = [("couverture", coverage.display)] if coverage else []
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
    el(inner, "code", code=coverage.code, displayName=coverage.display, codeSystem=coverage.system)
    el(inner, "statusCode", code="completed")


def _answers(parent: etree._Element, answers: dict[str, Any], table: Table, prefix: str,
             templates: tuple[str, ...], ids: NewId, *, wrap: str = "entry", when: str | None = None) -> None:
    for key, (code, display, system, kind, extra) in table.items():
        if answers.get(key) is None:
            continue
        observation = _observation(parent, templates, (code, display, system), f"{prefix}-{key}", ids, wrap=wrap)
        if when:
            el(observation, "effectiveTime", value=when)
        else:
            el(observation, "effectiveTime", nullFlavor="NA")
        _typed(observation, kind, answers[key], extra)


def _pregnancy(body: etree._Element, answers: dict[str, Any], ids: NewId) -> None:
    section = _section(body, ("1.3.6.1.4.1.19376.1.5.3.1.1.5.3.4", "1.2.250.1.213.1.1.2.77"), "10162-6",
                       "Historique des grossesses", "Grossesse", ids,
                       _table_rows(answers, PREGNANCY, "pregnancy"), "Non renseigné.")
    _answers(section, answers, PREGNANCY, "pregnancy", ("1.3.6.1.4.1.19376.1.5.3.1.4.13",
                                                        "1.3.6.1.4.1.19376.1.5.3.1.4.13.5",
                                                        "1.2.250.1.213.1.1.3.53"), ids)


def _antenatal(body: etree._Element, codes: ValueSets, given: dict[str, Any], ids: NewId) -> None:
    for key in ANTENATAL:
        if given.get(key) is None:
            raise InvalidInput.field(f"data.antenatal.{key}", "Réponse obligatoire dans le CS8.")
    answers = resolve(codes, given, ANTENATAL, "antenatal")
    hbs = given.get("hbs")
    if hbs not in ("negative", "positive", "not_done"):
        raise InvalidInput.field("data.antenatal.hbs", "Recherche Ag HBs : negative, positive ou not_done.")
    result = codes.concept(JDV_HBS, HBS[hbs], "data.antenatal.hbs") if hbs in HBS else None
    shown = result.display if result else "non réalisée"
    rows = [*_table_rows(answers, ANTENATAL, "antenatal"), ("antenatal-hbs", f"Recherche Ag HBs : {shown}")]
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
    if result is None:
        el(observation, "value", xsi_type="CD", nullFlavor="NA")
    else:
        el(observation, "value", xsi_type="CD", code=result.code, displayName=result.display,
           codeSystem=result.system)


def _delivery(body: etree._Element, answers: dict[str, Any], mother: Relative, ids: NewId) -> None:
    outer = el(el(body, "component"), "section")
    el(outer, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.1.21.2.3")
    el(outer, "templateId", root="1.2.250.1.213.1.1.2.123")
    el(outer, "id", root=ids())
    el(outer, "code", code="57074-7", displayName="Travail et accouchement", codeSystem=LOINC)
    el(outer, "title", "Travail et accouchement")
    el(el(outer, "text"), "paragraph", "Voir les événements observés.")
    mother.write(outer)
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


def _newborn(body: etree._Element, codes: ValueSets, answers: dict[str, Any], exam: Any, ids: NewId,
             data: dict[str, Any]) -> None:
    measures = read_measures(answers.get("measures") or {}, "data.newborn.measures", codes)
    if not measures:
        raise InvalidInput.field("data.newborn.measures", "Mesures à la naissance obligatoires (poids, taille...).")
    for key, code in APGAR.items():
        score = answers.get(key)
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
                raise InvalidInput.field(f"data.newborn.{key}", "Score d'Apgar de 0 à 10.")
            measures.append(measure(codes, code, float(score), "{score}", f"data.newborn.{key}"))
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
    _acts(outer, codes, answers, exam, ids)
    _treatments(outer, codes, _list(data, "treatments"), ids)
    transfer = answer(codes, JDV_TRANSFER, answers, "transfer", "data.newborn")
    if transfer:
        events = _section(outer, ("1.3.6.1.4.1.19376.1.5.3.1.1.21.2.9", "1.3.6.1.4.1.19376.1.7.3.1.1.13.7",
                                  "1.2.250.1.213.1.1.2.163"), "42545-4", "Evènements observés",
                          "Transfert ou mutation de l'enfant", ids, [("transfert", transfer.display)], "")
        observation = _observation(events, SIMPLE_OBSERVATION, ("ORG-081", "Type de transfert", TA_ASIP),
                                   "transfert", ids)
        el(observation, "effectiveTime", value=exam.strftime("%Y%m%d"))
        el(observation, "value", xsi_type="CD", code=transfer.code, displayName=transfer.display,
           codeSystem=transfer.system)


def _acts(outer: etree._Element, codes: ValueSets, answers: dict[str, Any], exam: Any, ids: NewId) -> None:
    hearing = answer(codes, JDV_HEARING, answers, "hearing_screening", "data.newborn")
    rows = [("acte-gestes", "Gestes techniques spécialisés : " + ("oui" if answers["specialised_care"] else "non")),
            ("acte-audition", f"Dépistage de la surdité : {hearing.display if hearing else 'non réalisé'}")]
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
            el(result, "value", xsi_type="CD", code=hearing.code, displayName=hearing.display,
               codeSystem=hearing.system)

