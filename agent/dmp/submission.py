"""TD2.1 (ITI-41): from one CDA to the ProvideAndRegister request, with its IHE DSG signature. Pure.

The document's metadata come from its header (lien-entete-cda-meta-xds); the class and format codes from the
CI-SIS correspondences for the document kinds Relais handles; every code is checked against its value set when
the kit is configured. The submission set is signed per IHE DSG: a detached XAdES signature whose manifest
references every document and the submission set, sent as its own DocumentEntry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from agent.dmp.ebrim import (
    DSG_FORMAT,
    MASKING_CODES,
    MASKING_SCHEME,
    XDSB,
    Author,
    Coded,
    EntrySpec,
    SubmissionSetSpec,
    cx,
    submit_objects_request,
)
from agent.dmp.models import Professional, SubmissionRequest
from agent.dmp.soap import xop_include
from agent.dmp.valuesets import ValueSets
from agent.domain import dmp_rules
from agent.domain.catalogue import CLASS_DISPLAY, class_code_of
from agent.domain.signing import Signer
from agent.errors import FieldError, InvalidInput
from agent.xml.cda_header import N1_TEMPLATE, CdaHeader, HeaderAuthor, hl7_to_xds_time, parse_cda_header
from agent.xml.signing import sign_xades_detached

IHE_FORMAT_SCHEME = "1.3.6.1.4.1.19376.1.2.3"
ANS_FORMAT_SCHEME = "1.2.250.1.213.1.1.4.2.282"
CLASS_SCHEME = "1.2.250.1.213.1.1.4.1"
IDNPS_ROOT = "1.2.250.1.71.4.2.1"

# CDA templateId -> XDS formatCode: ASS_A11-CorresModeleCDA-XdsFormatCode-CISIS (1.2.250.1.213.1.1.4.331), the rows
# for the kinds Relais builds or forwards (.37 is the vaccination record, .51 the French IPS).
FORMAT_BY_TEMPLATE = {
    "1.2.250.1.213.1.1.1.46": "urn:asip:ci-sis:vac-note:2021",
    "1.2.250.1.213.1.1.1.5.1": "urn:asip:ci-sis:cse-cs8:2017",
    "1.2.250.1.213.1.1.1.5.2": "urn:asip:ci-sis:cse-cs9:2017",
    "1.2.250.1.213.1.1.1.5.3": "urn:asip:ci-sis:cse-cs24:2017",
    "1.2.250.1.213.1.1.1.5.4": "urn:ans:ci-sis:cse-mde:2023",
    "1.2.250.1.213.1.1.1.13": "urn:asip:ci-sis:vsm:2012",
    "2.16.840.1.113883.10.22.1.1": "urn:ihe:pcc:ips:2020",
    "1.2.250.1.213.1.1.1.51": "urn:ihe:pcc:ips:2020",
    "1.2.250.1.213.1.1.1.37": "urn:asip:ci-sis:vac:2019",
}


# The IHE DSG signature entry (sources in build_submission).
DSG_CLASS = Coded("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature")
DSG_TYPE = Coded("E1762", "ASTM", "Full Document")
DSG_FORMAT_CODE = Coded(DSG_FORMAT, "URN", "Default Signature Style")
DSG_EVENT = Coded("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source")
DSG_LANGUAGE = "art"

CABINET = Coded("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel")
AMBULATOIRE = Coded("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
# The submission set's contentTypeCode: TRE_R209-TypeActivite, whose OID is 1.2.250.1.213.2.2 (NOS).
TYPE_ACTIVITE_SCHEME = "1.2.250.1.213.2.2"
CONSULTATION = Coded("07", TYPE_ACTIVITE_SCHEME, "Consultations soins externes")


@dataclass(frozen=True, slots=True)
class SubmissionDefaults:
    """What the CDA header may lack, from configuration."""

    source_id: str  # the LPS instance OID (XDSSubmissionSet.sourceId)
    facility_type: Coded = CABINET
    practice_setting: Coded = AMBULATOIRE
    content_type: Coded = CONSULTATION


@dataclass
class BuiltSubmission:
    body: etree._Element  # xdsb:ProvideAndRegisterDocumentSetRequest
    attachments: dict[str, bytes]
    document_entry_uuid: str
    submission_set_entry_uuid: str
    signature_entry_uuid: str
    signature_unique_id: str


def format_code(header: CdaHeader) -> Coded:
    if header.is_n1 or N1_TEMPLATE in header.template_ids:
        return Coded("urn:ihe:iti:xds-sd:pdf:2008", IHE_FORMAT_SCHEME, "Document à corps non structuré en Pdf/A-1")
    for template in header.template_ids:
        code = FORMAT_BY_TEMPLATE.get(template)
        if code:
            scheme = IHE_FORMAT_SCHEME if code.startswith("urn:ihe:") else ANS_FORMAT_SCHEME
            return Coded(code, scheme)
    return Coded("urn:asipSante:modelesHorsProfils:2011", ANS_FORMAT_SCHEME, "Document non référencé")


def xcn(id_: str, family: str, given: str, root: str = IDNPS_ROOT) -> str:
    return f"{id_}^{family}^{given}^^^^^^&{root}&ISO^D^^^IDNPS"


def xon(name: str, id_: str, root: str) -> str:
    return f"{name}^^^^^&{root}&ISO^IDNST^^^{id_}" if id_ else name


def author_of(header: CdaHeader) -> Author:
    return _author(HeaderAuthor(header.author_id, header.author_id_root, header.author_family, header.author_given,
                                header.author_specialty, header.author_role, header.institution_name,
                                header.institution_id, header.institution_id_root))


def _author(block: HeaderAuthor) -> Author:
    spec = block.specialty
    return Author(
        person=xcn(block.id, block.family, block.given, block.id_root or IDNPS_ROOT),
        institution=xon(block.institution_name, block.institution_id, block.institution_id_root),
        role=block.role.display or block.role.code if block.role else "",
        specialty=f"{spec.code}^{spec.display}^{spec.scheme}" if spec else "",
    )


def authors_of(header: CdaHeader) -> tuple[Author, ...]:
    """Every author of the CDA header, in its order: the XDS DocumentEntry carries the same authors
    ([CDT] EX_2.1-2020: "le nombre d'auteurs devra donc être identique entre la partie XDS et la partie entête
    CDA"; 2.1-900: author and sender in distinct author blocks)."""
    return (author_of(header), *(_author(a) for a in header.other_authors))


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends (the VIHF's professional) and from which structure (the VIHF's Identifiant_Structure)."""

    professional: Professional
    structure_id: str = ""


def check_sender(header: CdaHeader, sender: Sender) -> None:
    """[CDT] 2.1-900 / 2.1-950 / EX_2.1-1140: a document sent by someone other than its author carries the sender
    among its authors, and the authenticated structure (Identifiant_Structure) is the authorInstitution of one of
    the authors. A sender who is the first author is the plain case: nothing to check here (the DMP checks the
    NameID against the authors itself)."""
    who = sender.professional
    if who.national_id == header.author_id or not header.author_id:
        return
    dmp_rules.check_sender(who.national_id, header.author_ids, sender.structure_id, header.institution_ids)


def sender_author(header: CdaHeader, sender: Sender) -> Author:
    """The submission set's author: the sender ([CDT] 2.1-900: "l'utilisateur B, étant l'auteur du lot de
    soumission, doit être présent dans le VIHF et dans la requête XDS (registryPackage)"), with the author block
    the CDA gives them when there is one (institution, role, specialty), else their name and the structure."""
    who = sender.professional
    for block in (author_of(header), *(_author(a) for a in header.other_authors)):
        if block.person.split("^", 1)[0] == who.national_id:
            return block
    return Author(person=xcn(who.national_id, who.family_name, who.given_name),
                  institution=xon("", sender.structure_id, "1.2.250.1.71.4.2.2") if sender.structure_id else "")


def _patient_info(header: CdaHeader, patient_cx: str) -> tuple[str, ...]:
    info = [f"PID-3|{patient_cx}"]
    if header.patient_family or header.patient_given:
        info.append(f"PID-5|{header.patient_family}^{header.patient_given}^^^^^L")
    if header.patient_birth:
        info.append(f"PID-7|{header.patient_birth[:8]}")
    if header.patient_gender:
        info.append(f"PID-8|{header.patient_gender}")
    return tuple(info)


def build_submission(req: SubmissionRequest, signer: Signer, defaults: SubmissionDefaults, now: dt.datetime,
                     new_uuid: Callable[[], str], value_sets: ValueSets | None = None,
                     sender: Sender | None = None) -> BuiltSubmission:
    """The ITI-41 body and its attachments; signs (blocking: call from a thread). ``sender``: who the VIHF speaks
    for; the submission set's author (None: the document's first author, as before)."""
    header = req.header or parse_cda_header(req.cda)
    if sender is not None:
        check_sender(header, sender)
    errors: list[FieldError] = []
    if header.unique_id != req.document_unique_id:
        errors.append(FieldError("document_unique_id",
                                 "L'identifiant du document ne correspond pas à l'id de l'en-tête CDA."))
    if (req.ins, req.ins_oid) not in header.patient_ids:
        errors.append(FieldError("patient.ins", "L'INS du patient ne correspond pas à celui de l'en-tête CDA."))
    if errors:
        raise InvalidInput("Document incohérent avec la demande d'envoi.", errors=errors, code="dmp_request_mismatch")
    patient_cx = cx(req.ins, req.ins_oid)
    cls = class_code_of(header.type_code.code)
    class_code = Coded(cls, CLASS_SCHEME, CLASS_DISPLAY.get(cls, cls))
    fmt = format_code(header)
    facility = (Coded(header.facility_type.code, header.facility_type.scheme, header.facility_type.display)
                if header.facility_type else defaults.facility_type)
    practice = (Coded(header.practice_setting.code, header.practice_setting.scheme, header.practice_setting.display)
                if header.practice_setting else defaults.practice_setting)
    confidentiality = [Coded(header.confidentiality.code, header.confidentiality.scheme,
                             header.confidentiality.display)]
    for flag, code in MASKING_CODES.items():
        if getattr(req.visibility, flag):
            confidentiality.append(Coded(code, MASKING_SCHEME, code))
    if value_sets is not None:
        checks = [("typeCode", header.type_code.code, header.type_code.scheme),
                  ("classCode", class_code.code, ""), ("formatCode", fmt.code, ""),
                  ("healthcareFacilityTypeCode", facility.code, facility.scheme),
                  ("practiceSettingCode", practice.code, practice.scheme)]
        checks += [("confidentialityCode", c.code, c.scheme) for c in confidentiality]
        if header.author_specialty is not None:
            checks.append(("authorSpecialty", header.author_specialty.code, header.author_specialty.scheme))
        value_sets.check(checks)

    authors = authors_of(header)
    ss_author = sender_author(header, sender) if sender is not None else authors[0]
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    doc_uuid, ss_uuid, sig_uuid = (f"urn:uuid:{new_uuid()}" for _ in range(3))
    doc = EntrySpec(
        entry_uuid=doc_uuid, unique_id=header.unique_id, mime_type="text/xml", title=header.title,
        creation_time=hl7_to_xds_time(header.effective_time), hash_hex=hashlib.sha1(req.cda).hexdigest(),  # noqa: S324 - XDS hash is SHA-1
        size=len(req.cda), language=header.language, patient_id=patient_cx, source_patient_id=patient_cx,
        type_code=Coded(header.type_code.code, header.type_code.scheme, header.type_code.display),
        class_code=class_code, format_code=fmt, facility_type=facility, practice_setting=practice,
        confidentiality=tuple(confidentiality), author=authors[0], other_authors=authors[1:],
        service_start=hl7_to_xds_time(header.service_start) if header.service_start else "",
        service_stop=hl7_to_xds_time(header.service_stop) if header.service_stop else "",
        source_patient_info=_patient_info(header, patient_cx),
        legal_authenticator=xcn(header.legal_authenticator_id, "", "") if header.legal_authenticator_id else "",
    )
    # IHE DSG signature of the submission set. Each choice, with its source ([DRIM] = ansforge/DRIM-M_DRIMbox, an
    # ANS-published client that talks to the DMP's test platform: utils/DocumentEntry.java, utils/XadesSign.java,
    # request/signed/ProvideAndRegisterRequest.java; [DSG] = IHE ITI Document Digital Signature):
    # - manifest references ``urn:oid:<uniqueId>`` for each document and the submission set ([DRIM], [DSG]);
    #   the submission set is referenced by name, digest "AA==" ([DRIM] and a PHP XDS client); documents by the
    #   SHA-256 of their bytes (XAdES allows it; [DRIM] uses SHA-1, too weak to copy);
    # - classCode urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1 "Digital Signature", scheme URN ([DRIM], [DSG]);
    # - typeCode E1762 "Full Document", scheme ASTM ([DRIM], [DSG]);
    # - formatCode http://www.w3.org/2000/09/xmldsig# "Default Signature Style", scheme URN ([DRIM]; in
    #   JDV_J60_FormatCode_DMP beside the 2014 supplement's urn:ihe:iti:dsg:detached:2014): ebrim.DSG_FORMAT;
    # - eventCode 1.2.840.10065.1.12.1.14 "Source", scheme 1.2.840.10065.1.12 (ASTM E1762 purpose of signature;
    #   [DRIM]; the XAdES CommitmentTypeIndication says the same, agent/xml/signing.py);
    # - languageCode "art" (ISO 639-2 "artificial languages": a signature has no human language; [DRIM]);
    # - confidentiality N; author and legalAuthenticator: the submission set's author, who signs ([DRIM] takes the
    #   legalAuthenticator from the submission set's author);
    # - associations: HasMember from the submission set, and ``signs`` from the signature to the submission set
    #   (ebrim.submit_objects_request; [DRIM], [DSG]).
    signature = sign_xades_detached([(f"urn:oid:{header.unique_id}", req.cda),
                                     (f"urn:oid:{req.submission_set_unique_id}", None)], signer)
    sig_bytes = etree.tostring(signature, xml_declaration=True, encoding="UTF-8")
    sig_unique_id = f"{req.submission_set_unique_id}.1"
    sig = EntrySpec(
        entry_uuid=sig_uuid, unique_id=sig_unique_id, mime_type="text/xml", title="Signature du lot de soumission",
        creation_time=stamp, hash_hex=hashlib.sha1(sig_bytes).hexdigest(), size=len(sig_bytes),  # noqa: S324
        language=DSG_LANGUAGE, patient_id=patient_cx, source_patient_id=patient_cx,
        type_code=DSG_TYPE, class_code=DSG_CLASS, format_code=DSG_FORMAT_CODE,
        facility_type=facility, practice_setting=practice,
        confidentiality=(Coded("N", "2.16.840.1.113883.5.25", "Normal"),), author=ss_author,
        legal_authenticator=ss_author.person, event_codes=(DSG_EVENT,),
    )
    ss = SubmissionSetSpec(entry_uuid=ss_uuid, unique_id=req.submission_set_unique_id, source_id=defaults.source_id,
                           patient_id=patient_cx, submission_time=stamp, content_type=defaults.content_type,
                           author=ss_author, title=header.title)
    ids = (f"urn:uuid:{new_uuid()}" for _ in iter(int, 1))
    sor = submit_objects_request(ss, [doc, sig], ids, replaces=req.replaces_entry_uuid,
                                 replaced_by=doc_uuid if req.replaces_entry_uuid else None, signature_uuid=sig_uuid)
    body = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB})
    body.append(sor)
    attachments: dict[str, bytes] = {}
    for entry_uuid, content in ((doc_uuid, req.cda), (sig_uuid, sig_bytes)):
        cid = f"{entry_uuid[9:]}@relais"
        document = etree.SubElement(body, f"{{{XDSB}}}Document", id=entry_uuid)
        xop_include(document, cid)
        attachments[cid] = content
    return BuiltSubmission(body, attachments, doc_uuid, ss_uuid, sig_uuid, sig_unique_id)
