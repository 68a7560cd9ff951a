"""The CDA R2 header shared by every document the agent builds (structuration minimale du CI-SIS).

Input is the API's JSON, read once into small dataclasses (``Patient``, ``Author``) with French field errors.
``Header.build`` writes realmCode ... componentOf in CDA schema order; the builders add their templateIds and body.
Coded header items (sex, the author's profession, the practice's sector and facility type) come from the kit's
value sets (``ValueSets``, given by the caller): a code outside them is a 422 on its field.

No clock (the caller passes the times), no randomness (the caller passes the identifiers); the only reading is of
the value sets the caller hands in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from agent.cda.valuesets import Concept, ValueSets
from agent.domain.ins import OID_INS_NIR, check_ins
from agent.errors import FieldError, InvalidInput

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP: dict[str | None, str] = {None: HL7, "xsi": XSI}
OID_RPPS_PREFIXED = "1.2.250.1.71.4.2.1"  # identifiant national de PS: "8" + RPPS
OID_STRUCTURE = "1.2.250.1.71.4.2.2"  # identifiant de structure: "1" + FINESS, "3" + SIRET
PARIS = ZoneInfo("Europe/Paris")
# The value sets the structuration minimale checks the header's codes against (jeuxDeValeurs/<name>.xml).
JDV_SEX = "JDV_J143_AdministrativeGender_CISIS"
JDV_PROFESSION = "JDV_J01_XdsAuthorSpecialty_CISIS"
JDV_SECTOR = "JDV_J04_XdsPracticeSettingCode_CISIS"
JDV_FACILITY = "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS"
JDV_TITLE = "JDV_J246_Titre_CISIS"
# The API takes the INS's own "U" (sexe inconnu) and writes the value set's "UN".
SEX_ALIASES = {"U": "UN"}
DEFAULT_PROFESSION = "G15_10/SM26"  # Médecin - Qualifié en Médecine Générale
DEFAULT_SECTOR = "AMBULATOIRE"
DEFAULT_FACILITY = "SA07"  # Cabinet individuel


def el(parent: etree._Element | None, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    """A child in the HL7 namespace (``xsi_type`` becomes ``xsi:type``)."""
    qname = f"{{{HL7}}}{tag}"
    node = etree.Element(qname, nsmap=NSMAP) if parent is None else etree.SubElement(parent, qname)
    for key, value in attrs.items():
        node.set(f"{{{XSI}}}type" if key == "xsi_type" else key, value)
    if text is not None:
        node.text = text
    return node


def ts(when: datetime) -> str:
    """A CDA timestamp at the second, in French local time with its offset (20260105100000+0100)."""
    return when.astimezone(PARIS).strftime("%Y%m%d%H%M%S%z")


def parse_when(value: Any, field_name: str) -> datetime:
    """An ISO date-time (with offset, or local French time without) or date from the JSON input."""
    if not isinstance(value, str) or not value:
        raise InvalidInput.field(field_name, "Date ISO 8601 attendue (ex. 2026-01-05T10:30:00+01:00).")
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput.field(field_name, f"Date invalide : {value!r}.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=PARIS)


# The structuration minimale warns on a name that begins with a double quote (dtr1-4-EN): refused at the API.
NAME_QUOTE = "Un nom ne peut pas commencer par un guillemet (règle dtr1-4-EN du CI-SIS)."


def name_error(value: str) -> str:
    """The 422 message for a name the CI-SIS warns about, or "" (``value`` already whitespace-normalised)."""
    return NAME_QUOTE if value.startswith('"') else ""


def _text(data: dict[str, Any], key: str, path: str, errors: list[FieldError], *, required: bool = True,
          pattern: str | None = None, message: str = "", name: bool = False) -> str:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        errors.append(FieldError(f"{path}.{key}", "Une chaîne est attendue."))
        return ""
    value = " ".join((value or "").split())  # no blank-only names, no line breaks in the header
    if not value:
        if required:
            errors.append(FieldError(f"{path}.{key}", message or "Champ obligatoire."))
        return ""
    if len(value) > 200:
        errors.append(FieldError(f"{path}.{key}", "Texte trop long (200 caractères au plus)."))
    if pattern and not re.fullmatch(pattern, value):
        errors.append(FieldError(f"{path}.{key}", message or "Format invalide."))
    if name and name_error(value):
        errors.append(FieldError(f"{path}.{key}", name_error(value)))
    return value


def _coded(codes: ValueSets, name: str, value: str, field_name: str, errors: list[FieldError]) -> Concept:
    try:
        concept = codes.concept(name, value, field_name)
    except InvalidInput as exc:
        errors.extend(exc.errors)
        return Concept(value, "", value)
    assert concept is not None
    return concept


def telecom_url(value: str, field_name: str) -> str:
    """A telecom as the URL the CDA wants: the prefixes CI-SISTelecom allows (tel, fax, mailto, http, ftp, mllp;
    not https); a bare number becomes tel:, a bare e-mail address mailto:."""
    text = value.strip()
    if re.fullmatch(r"(tel|fax|mailto|http|ftp|mllp):\S+", text):
        return text
    digits = re.sub(r"[\s.\-()]", "", text)
    if re.fullmatch(r"\+?\d{4,20}", digits):
        return f"tel:{digits}"
    if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        return f"mailto:{text}"
    raise InvalidInput.field(field_name, "Coordonnée attendue : numéro de téléphone, adresse e-mail ou URL "
                             "tel:, fax:, mailto:, http:, ftp: ou mllp: (le CI-SIS n'admet pas https:).")


_NUMBERED = re.compile(r"(\d+\s*(?:bis|ter|quater|[a-dA-D])?)\b[\s,]*(.+)")


@dataclass(frozen=True)
class Address:
    """A postal address. The CI-SIS wants either free lines only (streetAddressLine) or structured parts only:
    with a postal code or city, the lines become parts (the numbered line: houseNumber + streetName, the others:
    additionalLocator); without, they stay lines."""

    lines: tuple[str, ...] = ()
    postal_code: str = ""
    city: str = ""
    country: str = ""

    @classmethod
    def read(cls, data: Any, path: str = "address") -> Address | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise InvalidInput.field(path, "Adresse attendue : {lines, postal_code, city}.")
        lines = data.get("lines") or []
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines) or len(lines) > 5:
            raise InvalidInput.field(f"{path}.lines", "Lignes d'adresse : une liste de 5 chaînes au plus.")
        errors: list[FieldError] = []
        postal = _text(data, "postal_code", path, errors, required=False, pattern=r"[0-9A-Z -]{2,10}",
                       message="Code postal invalide.")
        city = _text(data, "city", path, errors, required=False)
        country = _text(data, "country", path, errors, required=False)
        if errors:
            raise InvalidInput("Adresse invalide.", errors=errors)
        kept = tuple(" ".join(x.split()) for x in lines if x.strip())
        if not (kept or postal or city):
            return None
        return cls(kept, postal, city, country)

    @property
    def structured(self) -> bool:
        return bool(self.postal_code or self.city)

    def write(self, parent: etree._Element) -> None:
        addr = el(parent, "addr")
        if not self.structured:
            for line in self.lines:
                el(addr, "streetAddressLine", line)
            return
        numbered = next((m for m in map(_NUMBERED.fullmatch, self.lines) if m), None)
        street = numbered.string if numbered else (self.lines[-1] if self.lines else "")
        # The CI-SIS allows one additionalLocator (CI-SISAddr): the other lines go into it, in order.
        others = [line for line in self.lines if line != street]
        if others:
            el(addr, "additionalLocator", ", ".join(others))
        if numbered:
            el(addr, "houseNumber", numbered.group(1).strip())
            el(addr, "streetName", numbered.group(2))
        elif street:
            el(addr, "streetName", street)
        if self.postal_code:
            el(addr, "postalCode", self.postal_code)
        if self.city:
            el(addr, "city", self.city)
        if self.country:
            el(addr, "country", self.country)

    def without_lines(self) -> Address:
        return Address((), self.postal_code, self.city, self.country)


@dataclass(frozen=True)
class Patient:
    ins: str
    oid: str
    birth_name: str
    given_names: tuple[str, ...]
    sex: Concept
    birth_date: date
    birth_place: str = ""
    used_name: str = ""
    used_given: str = ""
    address: Address | None = None

    @classmethod
    def read(cls, data: Any, codes: ValueSets, *, allow_test_oids: bool = True) -> Patient:
        if not isinstance(data, dict):
            raise InvalidInput.field("patient", "Objet patient attendu.")
        errors: list[FieldError] = []
        ins = _text(data, "ins", "patient", errors)
        oid = _text(data, "oid", "patient", errors, required=False) or OID_INS_NIR
        if ins:
            for name, message in check_ins(ins, oid, allow_test_oids=allow_test_oids):
                errors.append(FieldError(f"patient.{name}", message))
        birth_name = _text(data, "birth_name", "patient", errors, message="Nom de naissance obligatoire.",
                           name=True)
        given = data.get("given_names")
        if (not isinstance(given, list) or not given or len(given) > 10
                or not all(isinstance(g, str) and g.strip() for g in given)):
            errors.append(FieldError("patient.given_names", "Liste des prénoms de naissance obligatoire."))
            given = []
        given = [" ".join(g.split()) for g in given]
        for index, one in enumerate(given):
            if name_error(one):
                errors.append(FieldError(f"patient.given_names[{index}]", name_error(one)))
        sex_raw = _text(data, "sex", "patient", errors, pattern="M|F|U|UN", message="Sexe attendu : M, F ou U.")
        sex = _coded(codes, JDV_SEX, SEX_ALIASES.get(sex_raw, sex_raw), "patient.sex", errors) if sex_raw else None
        birth_raw = _text(data, "birth_date", "patient", errors, pattern=r"\d{4}-\d{2}-\d{2}",
                          message="Date de naissance AAAA-MM-JJ obligatoire.")
        try:
            birth = date.fromisoformat(birth_raw) if birth_raw else date(1900, 1, 1)
        except ValueError:
            errors.append(FieldError("patient.birth_date", "Date de naissance invalide."))
            birth = date(1900, 1, 1)
        # One of the INS traits: the structuration minimale requires it whenever the patient has an INS.
        birth_place = _text(data, "birth_place", "patient", errors, pattern=r"[0-9][0-9AB][0-9]{3}",
                            message="Lieu de naissance (code COG INSEE de 5 caractères, 99xxx hors de France) "
                                    "obligatoire avec l'INS.")
        used_name = _text(data, "used_name", "patient", errors, required=False, name=True)
        used_given = _text(data, "used_given", "patient", errors, required=False, name=True)
        address = None
        try:
            address = Address.read(data.get("address"), "patient.address")
        except InvalidInput as exc:
            errors.extend(exc.errors or [FieldError("patient.address", exc.message)])
        if errors or sex is None:
            raise InvalidInput("Identité du patient incomplète ou invalide.", errors=errors)
        return cls(ins, oid, birth_name, tuple(given), sex, birth, birth_place, used_name, used_given, address)

    def write(self, parent: etree._Element) -> None:
        role = el(el(parent, "recordTarget"), "patientRole")
        el(role, "id", root=self.oid, extension=self.ins)
        if self.address:
            self.address.write(role)
        patient = el(role, "patient", classCode="PSN")
        name = el(patient, "name")
        el(name, "family", self.birth_name, qualifier="BR")
        el(name, "given", " ".join(self.given_names))
        el(name, "given", self.given_names[0], qualifier="BR")
        if self.used_name:
            el(name, "family", self.used_name, qualifier="CL")
        if self.used_given:
            el(name, "given", self.used_given, qualifier="CL")
        el(patient, "administrativeGenderCode", code=self.sex.code, displayName=self.sex.display,
           codeSystem=self.sex.system)
        el(patient, "birthTime", value=self.birth_date.strftime("%Y%m%d"))
        if self.birth_place:
            addr = el(el(el(patient, "birthplace"), "place"), "addr")
            el(addr, "county", self.birth_place)


@dataclass(frozen=True)
class Organisation:
    id: str  # prefixed: "1" + FINESS, "3" + SIRET, or "4" + RPPS rang for a cabinet
    name: str
    sector: Concept
    facility: Concept
    address: Address | None = None
    telecom: str = ""

    @classmethod
    def read(cls, org: Any, codes: ValueSets, errors: list[FieldError]) -> Organisation | None:
        path = "author.organisation"
        if not isinstance(org, dict):
            errors.append(FieldError(path, "Structure d'exercice obligatoire ({id, name})."))
            return None
        org_id = _text(org, "id", path, errors, pattern=r"[0-9][0-9A-Za-z]{1,40}",
                       message="Identifiant de structure obligatoire (1+FINESS, 3+SIRET ou 4+RPPS rang).")
        org_name = _text(org, "name", path, errors, message="Nom de la structure obligatoire.", name=True)
        sector = _coded(codes, JDV_SECTOR, str(org.get("sector_code") or DEFAULT_SECTOR), f"{path}.sector_code",
                        errors)
        facility = _coded(codes, JDV_FACILITY, str(org.get("facility_code") or DEFAULT_FACILITY),
                          f"{path}.facility_code", errors)
        address = None
        try:
            address = Address.read(org.get("address"), f"{path}.address")
            telecom = telecom_url(str(org["telecom"]), f"{path}.telecom") if org.get("telecom") else ""
        except InvalidInput as exc:
            errors.extend(exc.errors or [FieldError(path, exc.message)])
            telecom = ""
        return cls(org_id, org_name, sector, facility, address, telecom)

    def write_ids(self, parent: etree._Element, *, sector: bool = False) -> None:
        el(parent, "id", root=OID_STRUCTURE, extension=self.id)
        el(parent, "name", self.name)
        if self.telecom:
            el(parent, "telecom", value=self.telecom, use="WP")
        if self.address:
            self.address.write(parent)
        if sector:
            el(parent, "standardIndustryClassCode", code=self.sector.code, displayName=self.sector.display,
               codeSystem=self.sector.system)


@dataclass(frozen=True)
class Author:
    rpps: str
    family: str
    given: str
    profession: Concept
    organisation: Organisation
    civility: str = ""  # JDV_J245 (M, MME) -> name/prefix
    title: str = ""  # JDV_J246 (DR, PR...) -> name/suffix
    telecom: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return " ".join(p for p in ({"DR": "Dr", "PR": "Pr"}.get(self.title, ""), self.given, self.family) if p)

    @property
    def national_id(self) -> str:
        return "8" + self.rpps

    @classmethod
    def read(cls, data: Any, codes: ValueSets) -> Author:
        if not isinstance(data, dict):
            raise InvalidInput.field("author", "Objet auteur attendu.")
        errors: list[FieldError] = []
        rpps = _text(data, "rpps", "author", errors, pattern=r"\d{11}", message="RPPS de 11 chiffres obligatoire.")
        family = _text(data, "family", "author", errors, message="Nom de l'auteur obligatoire.", name=True)
        given = _text(data, "given", "author", errors, message="Prénom de l'auteur obligatoire.", name=True)
        organisation = Organisation.read(data.get("organisation"), codes, errors)
        civility = _text(data, "civility", "author", errors, required=False, pattern="M|MME",
                         message="Civilité : M ou MME.")
        title = _text(data, "title", "author", errors, required=False)
        if title:
            _coded(codes, JDV_TITLE, title, "author.title", errors)
        profession = _coded(codes, JDV_PROFESSION, str(data.get("profession_code") or DEFAULT_PROFESSION),
                            "author.profession_code", errors)
        telecom = ""
        if data.get("telecom"):
            try:
                telecom = telecom_url(str(data["telecom"]), "author.telecom")
            except InvalidInput as exc:
                errors.extend(exc.errors)
        if errors or organisation is None:
            raise InvalidInput("Auteur du document incomplet ou invalide.", errors=errors)
        return cls(rpps, family, given, profession, organisation, civility, title, telecom)

    def write_person(self, parent: etree._Element, tag: str = "assignedPerson") -> None:
        name = el(el(parent, tag), "name")
        if self.civility:
            el(name, "prefix", self.civility)
        el(name, "given", self.given)
        el(name, "family", self.family)
        if self.title:
            el(name, "suffix", self.title)

    def write_entity(self, parent: etree._Element, tag: str, *, sector: bool = False, code: bool = True,
                     **attrs: str) -> etree._Element:
        entity = el(parent, tag, **attrs)
        el(entity, "id", root=OID_RPPS_PREFIXED, extension=self.national_id)
        if code:
            el(entity, "code", code=self.profession.code, displayName=self.profession.display,
               codeSystem=self.profession.system)
        if self.telecom:
            el(entity, "telecom", value=self.telecom, use="WP")
        self.write_person(entity)
        self.organisation.write_ids(el(entity, "representedOrganization"), sector=sector)
        return entity


@dataclass(frozen=True)
class Header:
    """What the header says beyond patient and author."""

    unique_id: str
    set_id: str
    code: str
    code_system: str
    display: str
    title: str
    created: datetime
    service_start: datetime
    service_stop: datetime | None
    template_ids: tuple[tuple[str, str | None], ...]
    confidentiality: Concept  # from the kit's JDV_J08_XdsConfidentialityCode_CISIS (BuildContext.confidentiality)
    version: int = 1
    event_code: tuple[str, str, str] | None = None  # serviceEvent code, system, display

    def build(self, patient: Patient, author: Author) -> etree._Element:
        doc = el(None, "ClinicalDocument")
        el(doc, "realmCode", code="FR")
        el(doc, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
        el(doc, "templateId", root="2.16.840.1.113883.2.8.2.1")
        el(doc, "templateId", root="1.2.250.1.213.1.1.1.1")
        for root, extension in self.template_ids:
            if extension:
                el(doc, "templateId", root=root, extension=extension)
            else:
                el(doc, "templateId", root=root)
        el(doc, "id", root=self.unique_id)
        el(doc, "code", code=self.code, displayName=self.display, codeSystem=self.code_system)
        el(doc, "title", self.title)
        el(doc, "effectiveTime", value=ts(self.created))
        el(doc, "confidentialityCode", code=self.confidentiality.code, displayName=self.confidentiality.display,
           codeSystem=self.confidentiality.system)
        el(doc, "languageCode", code="fr-FR")
        el(doc, "setId", root=self.set_id)
        el(doc, "versionNumber", value=str(self.version))
        patient.write(doc)
        author_node = el(doc, "author")
        el(author_node, "time", value=ts(self.created))
        author.write_entity(author_node, "assignedAuthor")
        custodian = el(el(el(doc, "custodian"), "assignedCustodian"), "representedCustodianOrganization")
        org = author.organisation
        el(custodian, "id", root=OID_STRUCTURE, extension=org.id)
        el(custodian, "name", org.name)
        legal = el(doc, "legalAuthenticator")
        el(legal, "time", value=ts(self.created))
        el(legal, "signatureCode", code="S")
        author.write_entity(legal, "assignedEntity", sector=True)
        event = el(el(doc, "documentationOf"), "serviceEvent")
        if self.event_code:
            el(event, "code", code=self.event_code[0], codeSystem=self.event_code[1], displayName=self.event_code[2])
        self._interval(event)
        performer = el(event, "performer", typeCode="PRF")
        author.write_entity(performer, "assignedEntity", sector=True)
        encounter = el(el(doc, "componentOf"), "encompassingEncounter")
        self._interval(encounter)
        facility = el(el(encounter, "location"), "healthCareFacility")
        el(facility, "code", code=org.facility.code, displayName=org.facility.display, codeSystem=org.facility.system)
        return doc

    def _interval(self, parent: etree._Element) -> None:
        period = el(parent, "effectiveTime")
        el(period, "low", value=ts(self.service_start))
        # An interval whose end equals its start breaks dtr1-6-IVL_TS: the low alone says the same.
        if self.service_stop is not None and ts(self.service_stop) != ts(self.service_start):
            el(period, "high", value=ts(self.service_stop))


def add_author(doc: etree._Element, author: Author) -> None:
    """A further ``author`` block after the last one, timed as the first ([CDT] 2.1-900: the writer and the sender
    "dans des blocs author distincts" of the header). Authors come right after recordTarget, in CDA order."""
    blocks = doc.findall(f"{{{HL7}}}author")
    if not blocks:
        raise InvalidInput.field("document", "Le document n'a pas d'auteur.")
    first_time = blocks[0].find(f"{{{HL7}}}time")
    block = etree.Element(f"{{{HL7}}}author")
    el(block, "time", value=first_time.get("value", "") if first_time is not None else "")
    author.write_entity(block, "assignedAuthor")
    blocks[-1].addnext(block)


def serialize(doc: etree._Element) -> bytes:
    return bytes(etree.tostring(doc, xml_declaration=True, encoding="UTF-8"))

