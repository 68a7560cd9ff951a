"""Note de vaccination (CI-SIS VAC-NOTE 2023.01), prefilled from the vaccine box's DataMatrix.

Input (``data`` of ``{kind: "vaccination_note"}``), only the first two are required:
    datamatrix       the scan (raw, ``]d2``-prefixed, with group separators, or "(01)...(17)...(10)...")
    administered_at  ISO date-time of the injection
    dose_rank        1, 2, 3... (rang de la vaccination)
    immunization     "IMMUNIZ" (default), "INITIMMUNIZ" (primovaccination) or "BOOSTER" (rappel)
                     (JDV_HL7_ActSubstanceAdministrationImmunizationCode_CISIS)
    route            {"code", "display"?} route (JDV_ImmunizationRouteCodes_CISIS, e.g. 20035000 intramusculaire)
    site             {"code", "display"?} approach site (JDV_ImmunizationApproachSiteCode_CISIS, e.g.
                     16217701000119102 deltoïde gauche)
    lot              the lot when the box has no DataMatrix or the scan lacks AI 10
    comment          free text
    vaccine          {"cis", "name", "atc", "atc_display"} when the pack is not in the table
The VAC-NOTE schematron requires the CIS code, the ATC class and the lot: a pack missing from the table without
``vaccine``, or a scan without lot and no ``lot``, is refused here with a message saying what to add. Coded answers
take their code system and display from the kit's value sets; a code outside them is a 422 on its field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from agent.cda.context import BuildContext, BuiltDocument, data_object
from agent.cda.datamatrix import VaccinePack, parse_datamatrix
from agent.cda.header import PARIS, Author, Header, el, parse_when, serialize, ts
from agent.cda.vaccines import Vaccine, VaccineTable
from agent.cda.valuesets import TERMINOLOGIES, Concept, ValueSets
from agent.errors import InvalidInput

LOINC = "2.16.840.1.113883.6.1"
# The CIS and CIP codes and the ATC class name the product, not an answer: open terminologies.
CIS, CIP, ATC = (TERMINOLOGIES[name].oid for name in ("CIS", "CIP", "ATC"))
JDV_IMMUNIZATION = "JDV_HL7_ActSubstanceAdministrationImmunizationCode_CISIS"
JDV_ROUTE = "JDV_ImmunizationRouteCodes_CISIS"
JDV_SITE = "JDV_ImmunizationApproachSiteCode_CISIS"
TEMPLATE_IDS = (("1.3.6.1.4.1.19376.1.5.3.1.1.18.1.2", None), ("1.2.250.1.213.1.1.1.46", "2023.01"))


@dataclass(frozen=True)
class VaccinationInput:
    pack: VaccinePack | None
    administered_at: datetime
    vaccine: Vaccine | None
    lot: str
    dose_rank: int | None
    immunization: Concept
    route: Concept | None
    site: Concept | None
    comment: str

    @classmethod
    def read(cls, data: Any, table: VaccineTable, codes: ValueSets) -> VaccinationInput:
        if not isinstance(data, dict):
            raise InvalidInput.field("data", "Objet data attendu.")
        raw = data.get("datamatrix")
        pack = parse_datamatrix(raw) if raw else None
        administered = parse_when(data.get("administered_at"), "data.administered_at")
        vaccine = table.by_cip13(pack.cip13) if pack and pack.cip13 else None
        given = data.get("vaccine")
        if isinstance(given, dict) and given.get("cis") and given.get("name"):
            vaccine = Vaccine(
                pack.cip13 if pack and pack.cip13 else "", str(given["cis"]), str(given["name"]),
                str(given.get("atc") or ""), str(given.get("atc_display") or ""), str(given.get("name")),
            )
        if pack is None and vaccine is None:
            raise InvalidInput.field("data.datamatrix", "Scannez le DataMatrix de la boîte ou nommez le vaccin "
                                     "(data.vaccine : cis, name).")
        rank = data.get("dose_rank")
        if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= 20):
            raise InvalidInput.field("data.dose_rank", "Rang de vaccination : un entier de 1 à 20.")
        immunization = codes.concept(JDV_IMMUNIZATION, data.get("immunization") or "IMMUNIZ", "data.immunization")
        assert immunization is not None
        if vaccine is None or not vaccine.atc:
            cip = pack.cip13 or pack.gtin if pack else ""
            raise InvalidInput.field(
                "data.vaccine", f"Vaccin (CIP/GTIN {cip}) absent de la table des vaccins : indiquez data.vaccine "
                "{cis, name, atc, atc_display} (la note exige le code CIS et la classe ATC).", code="vaccine_unknown")
        lot = " ".join(str(data.get("lot") or (pack.lot if pack else "") or "").split())
        if not lot:
            raise InvalidInput.field("data.lot", "Numéro de lot obligatoire : il manque dans le DataMatrix, "
                                     "saisissez-le (data.lot).")
        comment = data.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
            raise InvalidInput.field("data.comment", "Commentaire : un texte de 2000 caractères au plus.")
        return cls(pack, administered, vaccine, lot, rank, immunization,
                   codes.concept(JDV_ROUTE, data.get("route"), "data.route", required=False),
                   codes.concept(JDV_SITE, data.get("site"), "data.site", required=False),
                   " ".join((comment or "").split()))


def build(ctx: BuildContext, patient: Any, author: Any, data: dict[str, Any]) -> BuiltDocument:
    given = VaccinationInput.read(data_object(data), ctx.vaccines, ctx.value_sets)
    who, by = ctx.read_people(patient, author)
    header = header_for(ctx.new_id(), ctx.new_id(), ctx.clock.now(), given, ctx.document_type("87273-9"),
                        ctx.confidentiality())
    doc = header.build(who, by)
    add_body(doc, given, by, [ctx.new_id(), ctx.new_id()])
    return ctx.built("vaccination_note", header, serialize(doc))


def header_for(unique_id: str, set_id: str, created: datetime, given: VaccinationInput, kind: Concept,
               confidentiality: Concept) -> Header:
    """``kind``: the document type (87273-9) as the kit's JDV_J07 writes it; ``confidentiality``, from JDV_J08."""
    return Header(
        unique_id=unique_id, set_id=set_id, code=kind.code, code_system=kind.system, display=kind.display,
        title=kind.display, created=created, service_start=given.administered_at, service_stop=None,
        template_ids=TEMPLATE_IDS, confidentiality=confidentiality, event_code=(kind.code, kind.system, kind.display),
    )


def add_body(doc: etree._Element, given: VaccinationInput, author: Author, ids: list[str]) -> None:
    """The Historique des vaccinations section with one substanceAdministration entry."""
    section = el(el(el(el(doc, "component"), "structuredBody"), "component"), "section")
    for root in ("2.16.840.1.113883.10.20.1.6", "1.3.6.1.4.1.19376.1.5.3.1.3.23", "1.2.250.1.213.1.1.2.147"):
        el(section, "templateId", root=root)
    el(section, "id", root=ids[0])
    el(section, "code", code="11369-6", displayName="Historique des vaccinations", codeSystem=LOINC)
    el(section, "title", "Note de vaccination")
    vaccine = given.vaccine
    label = vaccine.name if vaccine else f"Vaccin CIP {given.pack.cip13 if given.pack else ''}".strip()
    _narrative(section, given, author, label)

    entry = el(el(section, "entry"), "substanceAdministration", classCode="SBADM", moodCode="EVN",
               negationInd="false")
    for root in ("2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.12", "1.2.250.1.213.1.1.3.45"):
        el(entry, "templateId", root=root)
    el(entry, "id", root=ids[1])
    el(entry, "code", code=given.immunization.code, displayName=given.immunization.display,
       codeSystem=given.immunization.system)
    el(el(entry, "text"), "reference", value="#vac-1")
    el(entry, "statusCode", code="completed")
    # VAC-NOTE wants the day (AAAAMMJJ) on the entry; the precise time is on the entry's author.
    el(entry, "effectiveTime", value=given.administered_at.astimezone(PARIS).strftime("%Y%m%d"))
    if given.route:
        el(entry, "routeCode", code=given.route.code, displayName=given.route.display, codeSystem=given.route.system)
    if given.site:
        el(entry, "approachSiteCode", code=given.site.code, displayName=given.site.display,
           codeSystem=given.site.system)
    product = el(el(entry, "consumable", typeCode="CSM"), "manufacturedProduct")
    for root in ("2.16.840.1.113883.10.20.1.53", "1.3.6.1.4.1.19376.1.5.3.1.4.7.2", "1.2.250.1.213.1.1.3.43"):
        el(product, "templateId", root=root)
    material = el(product, "manufacturedMaterial")
    if vaccine and vaccine.cis:
        code = el(material, "code", code=vaccine.cis, displayName=vaccine.name, codeSystem=CIS)
    else:
        code = el(material, "code", nullFlavor="UNK")
    el(el(code, "originalText"), "reference", value="#vac-1")
    if vaccine and vaccine.atc:
        el(code, "translation", code=vaccine.atc, displayName=vaccine.atc_display or vaccine.atc,
           codeSystem=ATC)
    cip = given.pack.cip13 if given.pack else (vaccine.cip13 if vaccine else "")
    if cip:
        el(code, "translation", code=cip, displayName=vaccine.pack_display if vaccine else label,
           codeSystem=CIP)
    el(material, "name", label)
    if given.lot:
        el(material, "lotNumberText", given.lot)
    performer = el(entry, "performer", typeCode="PRF")
    author.write_entity(performer, "assignedEntity", sector=True, classCode="ASSIGNED")
    entry_author = el(entry, "author", typeCode="AUT", contextControlCode="OP")
    el(entry_author, "time", value=ts(given.administered_at))
    author.write_entity(entry_author, "assignedAuthor", classCode="ASSIGNED")
    if given.dose_rank is not None:
        observation = el(el(entry, "entryRelationship", typeCode="SUBJ"), "observation", classCode="OBS",
                         moodCode="EVN")
        el(observation, "templateId", root="2.16.840.1.113883.10.20.1.46")
        el(observation, "templateId", root="1.2.250.1.213.1.1.3.82")
        el(observation, "code", code="30973-2", displayName="Rang de la vaccination", codeSystem=LOINC)
        el(observation, "statusCode", code="completed")
        el(observation, "value", xsi_type="INT", value=str(given.dose_rank))
    if given.comment:
        act = el(el(entry, "entryRelationship", typeCode="SUBJ"), "act", classCode="ACT", moodCode="EVN")
        for root in ("2.16.840.1.113883.10.20.1.40", "1.3.6.1.4.1.19376.1.5.3.1.4.2", "1.2.250.1.213.1.1.3.32"):
            el(act, "templateId", root=root)
        el(act, "code", code="48767-8", displayName="Commentaire", codeSystem=LOINC)
        text = el(act, "text")
        el(text, "reference", value="#vac-1-comment")
        el(act, "statusCode", code="completed")


def _narrative(section: etree._Element, given: VaccinationInput, author: Author, label: str) -> None:
    table = el(el(section, "text"), "table", border="1")
    head = el(el(table, "thead"), "tr")
    columns = ["Date", "Vaccin", "Lot n°", "Rang", "Voie d'administration", "Région d'administration",
               "Commentaire", "Vaccinateur"]
    for column in columns:
        el(head, "th", column)
    row = el(el(table, "tbody"), "tr")
    el(row, "td", given.administered_at.strftime("%d/%m/%Y %H:%M"))
    el(el(row, "td"), "content", label, ID="vac-1")
    el(row, "td", given.lot or "")
    el(row, "td", str(given.dose_rank) if given.dose_rank else "")
    el(row, "td", given.route.display if given.route else "")
    el(row, "td", given.site.display if given.site else "")
    comment = el(row, "td")
    if given.comment:
        el(comment, "content", given.comment, ID="vac-1-comment")
    el(row, "td", author.display_name)
