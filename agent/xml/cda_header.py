"""The one reader of a CDA header: what the order, XDS metadata (lien-entete-cda-meta-xds) and the MSSanté mail
need from it. Pure, no network.

The CDA comes from the LGC or from our builders; it is parsed once, with the hardened parser, when the order is
created, and the ``CdaHeader`` travels with the order (``to_json``/``from_json``), so a send never parses the
header again. Missing required header parts are ``InvalidInput`` errors naming the CDA element.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from agent.errors import FieldError, InvalidInput
from agent.xml.safe import parse

HL7 = "urn:hl7-org:v3"
NS = {"h": HL7}
N1_TEMPLATE = "1.3.6.1.4.1.19376.1.2.20"


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    scheme: str  # the code system OID (XDS codingScheme)
    display: str = ""


@dataclass(frozen=True, slots=True)
class HeaderAuthor:
    """One ``author`` block of the header after the first (the first is flat on ``CdaHeader``, as before)."""

    id: str = ""
    id_root: str = ""
    family: str = ""
    given: str = ""
    specialty: Code | None = None
    role: Code | None = None
    institution_name: str = ""
    institution_id: str = ""
    institution_id_root: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeaderAuthor:
        values = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}}
        for name in ("specialty", "role"):
            value = values.get(name)
            values[name] = Code(**value) if isinstance(value, dict) else None
        return cls(**values)


@dataclass(frozen=True, slots=True)
class CdaHeader:
    unique_id: str  # root or root^extension
    type_code: Code
    title: str
    effective_time: str  # HL7 TS as in the document
    confidentiality: Code
    language: str
    patient_ids: tuple[tuple[str, str], ...]  # (extension, root)
    patient_family: str = ""
    patient_given: str = ""
    patient_gender: str = ""
    patient_birth: str = ""
    author_id: str = ""
    author_id_root: str = ""
    author_family: str = ""
    author_given: str = ""
    author_specialty: Code | None = None
    author_role: Code | None = None
    institution_name: str = ""
    institution_id: str = ""
    institution_id_root: str = ""
    facility_type: Code | None = None
    practice_setting: Code | None = None
    service_start: str = ""
    service_stop: str = ""
    template_ids: tuple[str, ...] = ()
    non_xml_media_type: str = ""  # N1: the nonXMLBody's mediaType
    legal_authenticator_id: str = ""
    other_authors: tuple[HeaderAuthor, ...] = ()  # every author block after the first, in document order
    missing: list[FieldError] = field(default_factory=list)

    @property
    def author_ids(self) -> tuple[str, ...]:
        """The national ids of every author (``assignedAuthor/id@extension``), first author first."""
        return tuple(i for i in (self.author_id, *(a.id for a in self.other_authors)) if i)

    @property
    def institution_ids(self) -> tuple[str, ...]:
        """The structure ids of every author's ``representedOrganization`` (XDS authorInstitution)."""
        return tuple(i for i in (self.institution_id, *(a.institution_id for a in self.other_authors)) if i)

    @property
    def is_n1(self) -> bool:
        return bool(self.non_xml_media_type)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("missing")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CdaHeader:
        codes = {"type_code", "confidentiality", "author_specialty", "author_role", "facility_type",
                 "practice_setting"}
        known = {f.name for f in dataclasses.fields(cls)} - {"missing"}
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name not in known:
                continue
            if name in codes:
                values[name] = Code(**value) if isinstance(value, dict) else None
            elif name in ("patient_ids",):
                values[name] = tuple(tuple(pair) for pair in value)
            elif name == "template_ids":
                values[name] = tuple(value)
            elif name == "other_authors":
                values[name] = tuple(HeaderAuthor.from_json(a) for a in value if isinstance(a, dict))
            else:
                values[name] = value
        return cls(**values)


def _attr(root: etree._Element, path: str, name: str) -> str:
    found = root.find(path, NS)
    return (found.get(name) or "").strip() if found is not None else ""


def _text(root: etree._Element, path: str) -> str:
    found = root.find(path, NS)
    return " ".join((found.text or "").split()) if found is not None else ""


def _code(root: etree._Element, path: str) -> Code | None:
    found = root.find(path, NS)
    if found is None or not found.get("code"):
        return None
    return Code(found.get("code", ""), found.get("codeSystem", ""), found.get("displayName", ""))


def _given(root: etree._Element, path: str) -> str:
    names = root.findall(path, NS)
    for name in names:  # prefer the birth given name set (qualifier BR), else the first
        if name.get("qualifier") == "BR":
            return " ".join((name.text or "").split())
    return " ".join((names[0].text or "").split()) if names else ""


def _family(root: etree._Element, path: str) -> str:
    names = root.findall(path, NS)
    for name in names:
        if name.get("qualifier") in (None, "BR", "SP"):
            return " ".join((name.text or "").split())
    return ""


@dataclass(frozen=True, slots=True)
class ReadyCda:
    """A request's ready CDA (``document.cda_base64``) decoded and parsed once, for every check of a create."""

    cda: bytes
    root: etree._Element


def read_ready_cda(document: Any) -> ReadyCda | None:
    """The request's ready CDA, or None when there is none or it cannot be read (the checks that follow then
    read it themselves and say why, as they always did)."""
    raw = document.get("cda_base64") if isinstance(document, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        cda = base64.b64decode(raw, validate=True)
        return ReadyCda(cda, parse(cda, what="CDA"))
    except (binascii.Error, ValueError, InvalidInput):
        return None


def parse_cda_header(cda: bytes, root: etree._Element | None = None) -> CdaHeader:
    """The header of ``cda``; ``root``: the same document already parsed (by ``read_ready_cda``)."""
    root = parse(cda, what="CDA") if root is None else root
    if root.tag != f"{{{HL7}}}ClinicalDocument":
        raise InvalidInput.field("document.cda_base64", "Le document n'est pas un CDA (ClinicalDocument attendu).")
    missing: list[FieldError] = []

    def need(value: str, where: str, what: str) -> str:
        if not value:
            missing.append(FieldError(f"cda.{where}", f"{what} absent de l'en-tête CDA ({where})."))
        return value

    root_id = need(_attr(root, "h:id", "root"), "id", "Identifiant du document")
    ext = _attr(root, "h:id", "extension")
    type_code = _code(root, "h:code")
    if type_code is None:
        missing.append(FieldError("cda.code", "Type de document absent de l'en-tête CDA (code)."))
    confidentiality = _code(root, "h:confidentialityCode")
    if confidentiality is None:
        missing.append(FieldError("cda.confidentialityCode", "Niveau de confidentialité absent (confidentialityCode)."))
    effective = need(_attr(root, "h:effectiveTime", "value"), "effectiveTime", "Date du document")
    pr = root.find("h:recordTarget/h:patientRole", NS)
    patient_ids: tuple[tuple[str, str], ...] = ()
    if pr is not None:
        patient_ids = tuple((i.get("extension", ""), i.get("root", "")) for i in pr.findall("h:id", NS))
    if not patient_ids:
        missing.append(FieldError("cda.recordTarget", "Patient absent de l'en-tête CDA (recordTarget)."))
    author = root.find("h:author/h:assignedAuthor", NS)
    if author is None:
        missing.append(FieldError("cda.author", "Auteur absent de l'en-tête CDA (author)."))
        author = etree.Element("none")
    body = root.find("h:component/h:nonXMLBody/h:text", NS)
    service = "h:documentationOf/h:serviceEvent"
    if missing:
        raise InvalidInput("En-tête CDA incomplet pour le DMP.", errors=missing, code="cda_header_incomplete")
    assert type_code is not None and confidentiality is not None
    return CdaHeader(
        unique_id=f"{root_id}^{ext}" if ext else root_id,
        type_code=type_code,
        title=_text(root, "h:title"),
        effective_time=effective,
        confidentiality=confidentiality,
        language=_attr(root, "h:languageCode", "code") or "fr-FR",
        patient_ids=patient_ids,
        patient_family=_family(root, "h:recordTarget/h:patientRole/h:patient/h:name/h:family"),
        patient_given=_given(root, "h:recordTarget/h:patientRole/h:patient/h:name/h:given"),
        patient_gender=_attr(root, "h:recordTarget/h:patientRole/h:patient/h:administrativeGenderCode", "code"),
        patient_birth=_attr(root, "h:recordTarget/h:patientRole/h:patient/h:birthTime", "value"),
        author_id=_attr(author, "h:id", "extension"),
        author_id_root=_attr(author, "h:id", "root"),
        author_family=_text(author, "h:assignedPerson/h:name/h:family"),
        author_given=_text(author, "h:assignedPerson/h:name/h:given"),
        author_specialty=_code(author, "h:code"),
        author_role=_code(root, "h:author/h:functionCode"),
        institution_name=_text(author, "h:representedOrganization/h:name"),
        institution_id=_attr(author, "h:representedOrganization/h:id", "extension"),
        institution_id_root=_attr(author, "h:representedOrganization/h:id", "root"),
        facility_type=_code(root, "h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code"),
        practice_setting=_code(root, f"{service}/h:performer/h:assignedEntity/h:representedOrganization/"
                                     "h:standardIndustryClassCode"),
        service_start=_attr(root, f"{service}/h:effectiveTime/h:low", "value"),
        service_stop=_attr(root, f"{service}/h:effectiveTime/h:high", "value"),
        template_ids=tuple(t.get("root", "") for t in root.findall("h:templateId", NS)),
        non_xml_media_type=(body.get("mediaType") or "application/octet-stream") if body is not None else "",
        legal_authenticator_id=_attr(root, "h:legalAuthenticator/h:assignedEntity/h:id", "extension"),
        other_authors=tuple(_header_author(block) for block in root.findall("h:author", NS)[1:]),
    )


def _header_author(block: etree._Element) -> HeaderAuthor:
    author = block.find("h:assignedAuthor", NS)
    if author is None:
        return HeaderAuthor()
    return HeaderAuthor(
        id=_attr(author, "h:id", "extension"), id_root=_attr(author, "h:id", "root"),
        family=_text(author, "h:assignedPerson/h:name/h:family"),
        given=_text(author, "h:assignedPerson/h:name/h:given"),
        specialty=_code(author, "h:code"), role=_code(block, "h:functionCode"),
        institution_name=_text(author, "h:representedOrganization/h:name"),
        institution_id=_attr(author, "h:representedOrganization/h:id", "extension"),
        institution_id_root=_attr(author, "h:representedOrganization/h:id", "root"),
    )


def vaccinations(cda: bytes) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
    """A note de vaccination: how many vaccinations it records (``substanceAdministration`` entries in the event
    mood), the national ids of their vaccinators (``performer/assignedEntity/id@extension``), and of the
    document's authors (``author/assignedAuthor/id@extension``, every one: the XDS authors are the same)."""
    root = parse(cda, what="CDA")
    entries = [sa for sa in root.iter(f"{{{HL7}}}substanceAdministration") if sa.get("moodCode") == "EVN"]
    performers = dict.fromkeys(_attr(sa, "h:performer/h:assignedEntity/h:id", "extension") for sa in entries)
    authors = dict.fromkeys((a.get("extension") or "").strip() for a in root.findall("h:author/h:assignedAuthor/h:id",
                                                                                   NS))
    return len(entries), tuple(p for p in performers if p), tuple(a for a in authors if a)


def hl7_to_xds_time(value: str) -> str:
    """HL7 TS (YYYYMMDDHHMMSS[+ZZZZ]) to XDS DTM in UTC (YYYYMMDDHHMMSS, truncated to the precision given)."""
    value = value.strip()
    digits, offset = value, ""
    for sign in "+-":
        if sign in value[8:]:
            pos = value.index(sign, 8)
            digits, offset = value[:pos], value[pos:]
            break
    digits = digits.split(".")[0]
    if not digits.isdigit() or len(digits) < 4:
        raise InvalidInput.field("cda.effectiveTime", f"Date HL7 illisible : {value!r}.")
    if not offset or len(digits) < 12:
        return digits
    stamp = dt.datetime.strptime(digits.ljust(14, "0")[:14], "%Y%m%d%H%M%S")
    hours, minutes = int(offset[1:3]), int(offset[3:5] or 0)
    delta = dt.timedelta(hours=hours, minutes=minutes)
    utc = stamp - delta if offset[0] == "+" else stamp + delta
    return utc.strftime("%Y%m%d%H%M%S")[: len(digits)]


def extract_pdf(cda: bytes) -> bytes:
    """The PDF an N1 CDA carries in its nonXMLBody (base64), or InvalidInput when it carries none."""
    root = parse(cda, what="CDA")
    text = root.find("h:component/h:nonXMLBody/h:text", NS)
    if text is None or (text.get("mediaType") or "").lower() != "application/pdf":
        raise InvalidInput("Ce document n'est pas un CDA N1 contenant un PDF.", code="not_a_pdf_document")
    try:
        data = base64.b64decode("".join((text.text or "").split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("Le PDF du document est illisible (base64 invalide).", code="not_a_pdf_document") from exc
    if not data.startswith(b"%PDF"):
        raise InvalidInput("Le contenu du document N1 n'est pas un PDF.", code="not_a_pdf_document")
    return data
