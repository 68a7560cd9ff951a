"""XDS.b metadata as ebRIM 3.0: building the ITI-41 SubmitObjectsRequest, reading DocumentEntries back.

Pure functions over lxml elements. Both the client (building, reading query answers) and the DMP simulator
(reading what it receives, answering queries) use this module, so the two sides speak the same shapes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from lxml import etree

from agent.dmp.models import STATUS_APPROVED, STATUS_NAMES, DocumentEntry, Visibility

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
NSMAP = {"rim": RIM, "lcm": LCM, "rs": RS, "query": QUERY, "xdsb": XDSB}

DOC_ENTRY_STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
# DocumentEntry classification and identification schemes
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
DE_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"  # XDSDocumentEntry.eventCodeList (ITI TF-3 4.2.5)
# SubmissionSet
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
MASKING_SCHEME = "1.2.250.1.213.1.1.4.13"
MASKING_CODES = {"masked_to_ps": "MASQUE_PS", "invisible_to_patient": "INVISIBLE_PATIENT",
                 "invisible_to_legal_reps": "INVISIBLE_REPRESENTANTS_LEGAUX"}
# The formatCode of the IHE DSG signature entry Relais sends: "Default Signature Style", scheme "URN", as DRIMbox
# (ANS-published, talks to the DMP's test platform: utils/DocumentEntry.java) and an independent PHP XDS client send
# it; JDV_J60_FormatCode_DMP lists it. The 2014 DSG supplement's ``urn:ihe:iti:dsg:detached:2014`` is also in J60:
# a signature entry in either format is recognised as one (DSG_FORMATS) when reading what the DMP holds.
DSG_FORMAT = "http://www.w3.org/2000/09/xmldsig#"
DSG_FORMAT_2014 = "urn:ihe:iti:dsg:detached:2014"
DSG_FORMATS = frozenset({DSG_FORMAT, DSG_FORMAT_2014})


def rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


@dataclass(frozen=True, slots=True)
class Coded:
    code: str
    scheme: str
    display: str = ""


@dataclass(frozen=True, slots=True)
class Author:
    person: str  # XCN
    institution: str = ""  # XON
    role: str = ""
    specialty: str = ""  # code^display^scheme


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """Everything one ExtrinsicObject says; built from the CDA header (or fixed for the DSG signature)."""

    entry_uuid: str
    unique_id: str
    mime_type: str
    title: str
    creation_time: str
    hash_hex: str
    size: int
    language: str
    patient_id: str  # CX
    source_patient_id: str
    type_code: Coded
    class_code: Coded
    format_code: Coded
    facility_type: Coded
    practice_setting: Coded
    confidentiality: tuple[Coded, ...]
    author: Author | None = None
    service_start: str = ""
    service_stop: str = ""
    source_patient_info: tuple[str, ...] = ()
    legal_authenticator: str = ""
    other_authors: tuple[Author, ...] = ()  # every author of the CDA header after the first, in its order
    event_codes: tuple[Coded, ...] = ()

    @property
    def authors(self) -> tuple[Author, ...]:
        return ((self.author,) if self.author is not None else ()) + self.other_authors


def cx(ins: str, oid: str) -> str:
    return f"{ins}^^^&{oid}&ISO^NH"


def add_slot(parent: etree._Element, name: str, values: Iterable[str]) -> None:
    values = [v for v in values if v]
    if not values:
        return
    slot = etree.SubElement(parent, rim("Slot"), name=name)
    vl = etree.SubElement(slot, rim("ValueList"))
    for value in values:
        etree.SubElement(vl, rim("Value")).text = value


def add_name(parent: etree._Element, text: str) -> None:
    if text:
        name = etree.SubElement(parent, rim("Name"))
        etree.SubElement(name, rim("LocalizedString"), value=text)


def add_classification(parent: etree._Element, scheme: str, obj: str, node: str, coded: Coded | None, cid: str) -> None:
    cl = etree.SubElement(parent, rim("Classification"), id=cid, classificationScheme=scheme,
                          classifiedObject=obj, nodeRepresentation=node)
    if coded is not None:
        add_slot(cl, "codingScheme", [coded.scheme])
        add_name(cl, coded.display or coded.code)


def add_author(parent: etree._Element, scheme: str, obj: str, author: Author, cid: str) -> None:
    cl = etree.SubElement(parent, rim("Classification"), id=cid, classificationScheme=scheme,
                          classifiedObject=obj, nodeRepresentation="")
    add_slot(cl, "authorPerson", [author.person])
    add_slot(cl, "authorInstitution", [author.institution])
    add_slot(cl, "authorRole", [author.role])
    add_slot(cl, "authorSpecialty", [author.specialty])


def add_external_id(parent: etree._Element, scheme: str, obj: str, value: str, name: str, cid: str) -> None:
    ei = etree.SubElement(parent, rim("ExternalIdentifier"), id=cid, registryObject=obj,
                          identificationScheme=scheme, value=value)
    add_name(ei, name)


def extrinsic_object(spec: EntrySpec, ids: Iterable[str]) -> etree._Element:
    """One DocumentEntry; ``ids`` yields fresh urn:uuid ids for its classifications."""
    it = iter(ids)
    eo = etree.Element(rim("ExtrinsicObject"), id=spec.entry_uuid, mimeType=spec.mime_type,
                       objectType=DOC_ENTRY_STABLE, status=STATUS_APPROVED)
    add_slot(eo, "creationTime", [spec.creation_time])
    add_slot(eo, "hash", [spec.hash_hex])
    add_slot(eo, "languageCode", [spec.language])
    add_slot(eo, "legalAuthenticator", [spec.legal_authenticator])
    add_slot(eo, "serviceStartTime", [spec.service_start])
    add_slot(eo, "serviceStopTime", [spec.service_stop])
    add_slot(eo, "size", [str(spec.size)])
    add_slot(eo, "sourcePatientId", [spec.source_patient_id])
    add_slot(eo, "sourcePatientInfo", spec.source_patient_info)
    add_name(eo, spec.title)
    for author in spec.authors:  # one author classification per author ([CDT] 2.1-900: distinct author blocks)
        add_author(eo, DE_AUTHOR, spec.entry_uuid, author, next(it))
    add_classification(eo, DE_CLASS, spec.entry_uuid, spec.class_code.code, spec.class_code, next(it))
    for conf in spec.confidentiality:
        add_classification(eo, DE_CONFIDENTIALITY, spec.entry_uuid, conf.code, conf, next(it))
    for event in spec.event_codes:
        add_classification(eo, DE_EVENT, spec.entry_uuid, event.code, event, next(it))
    add_classification(eo, DE_FORMAT, spec.entry_uuid, spec.format_code.code, spec.format_code, next(it))
    add_classification(eo, DE_FACILITY, spec.entry_uuid, spec.facility_type.code, spec.facility_type, next(it))
    add_classification(eo, DE_PRACTICE, spec.entry_uuid, spec.practice_setting.code, spec.practice_setting, next(it))
    add_classification(eo, DE_TYPE, spec.entry_uuid, spec.type_code.code, spec.type_code, next(it))
    add_external_id(eo, DE_PATIENT_ID, spec.entry_uuid, spec.patient_id, "XDSDocumentEntry.patientId", next(it))
    add_external_id(eo, DE_UNIQUE_ID, spec.entry_uuid, spec.unique_id, "XDSDocumentEntry.uniqueId", next(it))
    return eo


@dataclass(frozen=True, slots=True)
class SubmissionSetSpec:
    entry_uuid: str
    unique_id: str
    source_id: str
    patient_id: str
    submission_time: str
    content_type: Coded
    author: Author
    title: str = ""


def add_submission_set(rol: etree._Element, ss: SubmissionSetSpec, ids: Iterator[str]) -> None:
    """The RegistryPackage of a submission set and the classification that marks it as one."""
    rp = etree.SubElement(rol, rim("RegistryPackage"), id=ss.entry_uuid)
    add_slot(rp, "submissionTime", [ss.submission_time])
    add_name(rp, ss.title)
    add_author(rp, SS_AUTHOR, ss.entry_uuid, ss.author, next(ids))
    add_classification(rp, SS_CONTENT_TYPE, ss.entry_uuid, ss.content_type.code, ss.content_type, next(ids))
    add_external_id(rp, SS_UNIQUE_ID, ss.entry_uuid, ss.unique_id, "XDSSubmissionSet.uniqueId", next(ids))
    add_external_id(rp, SS_SOURCE_ID, ss.entry_uuid, ss.source_id, "XDSSubmissionSet.sourceId", next(ids))
    add_external_id(rp, SS_PATIENT_ID, ss.entry_uuid, ss.patient_id, "XDSSubmissionSet.patientId", next(ids))
    etree.SubElement(rol, rim("Classification"), id=next(ids), classifiedObject=ss.entry_uuid,
                     classificationNode=SUBMISSION_SET_NODE)


def submit_objects_request(ss: SubmissionSetSpec, entries: list[EntrySpec], ids: Iterable[str], *,
                           replaces: str | None = None, replaced_by: str | None = None,
                           signature_uuid: str | None = None) -> etree._Element:
    """The lcm:SubmitObjectsRequest of one ITI-41: entries, the submission set, its HasMember associations,
    an RPLC association when ``replaced_by`` (a document entry) replaces ``replaces``, and the DSG ``signs``.

    ``signs``: one association from the signature entry to the submission set it signs (IHE DSG, signature of a
    submission set; DRIMbox ProvideAndRegisterRequest.java does the same), not one per document: the documents
    are covered through the manifest, which references them and the submission set."""
    it = iter(ids)
    req = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    rol = etree.SubElement(req, rim("RegistryObjectList"))
    for spec in entries:
        rol.append(extrinsic_object(spec, it))
    add_submission_set(rol, ss, it)
    for spec in entries:
        assoc = etree.SubElement(rol, rim("Association"), id=next(it), associationType=HAS_MEMBER,
                                 sourceObject=ss.entry_uuid, targetObject=spec.entry_uuid)
        add_slot(assoc, "SubmissionSetStatus", ["Original"])
    if replaces and replaced_by:
        etree.SubElement(rol, rim("Association"), id=next(it), associationType=RPLC,
                         sourceObject=replaced_by, targetObject=replaces)
    if signature_uuid:
        etree.SubElement(rol, rim("Association"), id=next(it), associationType=SIGNS,
                         sourceObject=signature_uuid, targetObject=ss.entry_uuid)
    return req


# --- reading ----------------------------------------------------------------------------------------------


def slot_values(obj: etree._Element, name: str) -> list[str]:
    for slot in obj.iterfind(rim("Slot")):
        if slot.get("name") == name:
            return [(v.text or "").strip() for v in slot.iterfind(f"{rim('ValueList')}/{rim('Value')}")]
    return []


def slot_value(obj: etree._Element, name: str) -> str:
    values = slot_values(obj, name)
    return values[0] if values else ""


def name_of(obj: etree._Element) -> str:
    ls = obj.find(f"{rim('Name')}/{rim('LocalizedString')}")
    return ls.get("value", "") if ls is not None else ""


def classifications(obj: etree._Element, scheme: str) -> list[etree._Element]:
    return [c for c in obj.iterfind(rim("Classification")) if c.get("classificationScheme") == scheme]


def coded(obj: etree._Element, scheme: str) -> Coded | None:
    found = classifications(obj, scheme)
    if not found:
        return None
    c = found[0]
    return Coded(c.get("nodeRepresentation", ""), slot_value(c, "codingScheme"), name_of(c))


def external_id(obj: etree._Element, scheme: str) -> str:
    for ei in obj.iterfind(rim("ExternalIdentifier")):
        if ei.get("identificationScheme") == scheme:
            return str(ei.get("value", ""))
    return ""


def visibility_of(obj: etree._Element) -> Visibility:
    codes = {c.get("nodeRepresentation") for c in classifications(obj, DE_CONFIDENTIALITY)}
    return Visibility(masked_to_ps="MASQUE_PS" in codes, invisible_to_patient="INVISIBLE_PATIENT" in codes,
                      invisible_to_legal_reps="INVISIBLE_REPRESENTANTS_LEGAUX" in codes)


def xds_time_to_rfc3339(value: str) -> str:
    if not value:
        return ""
    v = value.ljust(14, "0")
    return f"{v[0:4]}-{v[4:6]}-{v[6:8]}T{v[8:10]}:{v[10:12]}:{v[12:14]}Z"


def parse_xcn_name(xcn: str) -> tuple[str, str, str]:
    """XCN -> (id, family, given)."""
    parts = [*xcn.split("^"), "", "", ""]
    return parts[0], parts[1], parts[2]


def entry_from_extrinsic(eo: etree._Element) -> DocumentEntry:
    authors = classifications(eo, DE_AUTHOR)
    person = slot_value(authors[0], "authorPerson") if authors else ""
    author_id, family, given = parse_xcn_name(person)
    size = slot_value(eo, "size")

    def code(scheme: str) -> str:
        c = coded(eo, scheme)
        return c.code if c else ""

    return DocumentEntry(
        entry_uuid=eo.get("id", ""), unique_id=external_id(eo, DE_UNIQUE_ID),
        patient_id=external_id(eo, DE_PATIENT_ID), type_code=code(DE_TYPE), class_code=code(DE_CLASS),
        format_code=code(DE_FORMAT), title=name_of(eo), author=" ".join(p for p in (family, given) if p),
        author_id=author_id, creation_time=xds_time_to_rfc3339(slot_value(eo, "creationTime")),
        service_start=xds_time_to_rfc3339(slot_value(eo, "serviceStartTime")),
        service_stop=xds_time_to_rfc3339(slot_value(eo, "serviceStopTime")),
        status=STATUS_NAMES.get(eo.get("status", ""), eo.get("status", "")), visibility=visibility_of(eo),
        mime_type=eo.get("mimeType", ""), size=int(size) if size.isdigit() else 0, hash=slot_value(eo, "hash"),
        repository_unique_id=slot_value(eo, "repositoryUniqueId"), object_type=eo.get("objectType", ""),
        logical_id=eo.get("lid", ""), version=_version(eo),
    )


def _version(eo: etree._Element) -> str:
    vi = eo.find(rim("VersionInfo"))
    return vi.get("versionName", "") if vi is not None else ""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
