"""XDS metadata from the CDA header, value-set checks, MTOM framing and registry answers: pure, no sockets."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path

import pytest
from lxml import etree

from agent.dmp import ebrim, queries, soap
from agent.dmp.models import SearchCriteria, SubmissionRequest, Visibility
from agent.dmp.schemas import validate, xds_schema
from agent.dmp.submission import SubmissionDefaults, build_submission
from agent.dmp.valuesets import ValueSets
from agent.errors import DuplicateUniqueId, InvalidInput, PermanentRemoteError, TransientRemoteError
from agent.softkey import SoftwareSigner
from agent.xml.cda_header import extract_pdf, hl7_to_xds_time, parse_cda_header
from relais_sandbox.dmp import reidentify
from relais_sandbox.identities import PAT_TROIS
from relais_sandbox.pki import SandboxPki

NOW = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def vac_note(reference_dir: Path) -> tuple[bytes, str]:
    data = (reference_dir / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    return reidentify(data, PAT_TROIS.ins, PAT_TROIS.oid, PAT_TROIS.birth_name, PAT_TROIS.first_given_name,
                      PAT_TROIS.sex, PAT_TROIS.birth_date, "1.2.250.1.999.1")


@pytest.fixture
def signer(tmp_path: Path) -> SoftwareSigner:
    creds = SandboxPki(tmp_path).issue("doctor", common_name="Dr Test")
    return SoftwareSigner.from_files(creds.cert_path, creds.key_path)


def request(cda: bytes, uid: str, **kw: object) -> SubmissionRequest:
    return SubmissionRequest(cda=cda, submission_set_unique_id="1.2.250.1.999.2", document_unique_id=uid,
                             ins=PAT_TROIS.ins, ins_oid=PAT_TROIS.oid, **kw)  # type: ignore[arg-type]


def ids() -> object:
    return lambda: str(uuid.uuid4())


def test_header_fields_from_the_ans_example(vac_note: tuple[bytes, str]) -> None:
    header = parse_cda_header(vac_note[0])
    assert header.unique_id == "1.2.250.1.999.1"
    assert header.type_code.code == "87273-9" and header.type_code.scheme == "2.16.840.1.113883.6.1"
    assert (PAT_TROIS.ins, PAT_TROIS.oid) in header.patient_ids
    assert header.author_id == "801234567897" and header.author_family == "MULLER"
    assert header.author_specialty is not None and header.author_specialty.code == "G15_10/SM26"
    assert not header.is_n1


def test_missing_header_parts_name_the_cda_elements() -> None:
    cda = b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>x</title></ClinicalDocument>'
    with pytest.raises(InvalidInput) as info:
        parse_cda_header(cda)
    fields = {e.field for e in info.value.errors}
    assert {"cda.id", "cda.code", "cda.effectiveTime", "cda.recordTarget", "cda.author"} <= fields


@pytest.mark.parametrize(("hl7", "xds"), [
    ("20210409153500+0100", "20210409143500"),
    ("20210409", "20210409"),
    ("202104091535-0230", "202104091805"),
    ("20211231233000-0100", "20220101003000"),
])
def test_hl7_times_become_utc_xds_times(hl7: str, xds: str) -> None:
    assert hl7_to_xds_time(hl7) == xds


def test_submission_is_schema_valid_and_carries_the_required_metadata(
        vac_note: tuple[bytes, str], signer: SoftwareSigner, reference_dir: Path) -> None:
    cda, uid = vac_note
    built = build_submission(request(cda, uid, visibility=Visibility(masked_to_ps=True)), signer,
                             SubmissionDefaults(source_id="1.2.250.1.999"), NOW, lambda: str(uuid.uuid4()),
                             ValueSets.load(reference_dir))
    assert validate(xds_schema(reference_dir), built.body) == []
    doc = next(eo for eo in built.body.iter(ebrim.rim("ExtrinsicObject"))
               if eo.get("id") == built.document_entry_uuid)
    assert ebrim.slot_value(doc, "hash") == hashlib.sha1(cda).hexdigest()  # noqa: S324
    assert ebrim.slot_value(doc, "size") == str(len(cda))
    assert ebrim.slot_value(doc, "creationTime") == "20210409143500"
    assert ebrim.external_id(doc, ebrim.DE_PATIENT_ID) == f"{PAT_TROIS.ins}^^^&{PAT_TROIS.oid}&ISO^NH"
    confidentiality = {c.get("nodeRepresentation") for c in ebrim.classifications(doc, ebrim.DE_CONFIDENTIALITY)}
    assert confidentiality == {"N", "MASQUE_PS"}
    entry = ebrim.entry_from_extrinsic(doc)
    assert entry.visibility.masked_to_ps and entry.class_code == "45" and entry.author == "MULLER Charles"


def test_the_dsg_signature_entry_has_the_shape_drimbox_and_ihe_dsg_give(
        vac_note: tuple[bytes, str], signer: SoftwareSigner, reference_dir: Path) -> None:
    """Pins the IHE DSG entry (sources in agent/dmp/submission.py build_submission): codes, language, the manifest's
    ``urn:oid:`` references and one ``signs`` association from the signature to the submission set."""
    cda, uid = vac_note
    built = build_submission(request(cda, uid), signer, SubmissionDefaults(source_id="1.2.250.1.999"), NOW,
                             lambda: str(uuid.uuid4()), ValueSets.load(reference_dir))
    assert validate(xds_schema(reference_dir), built.body) == []
    sig = next(eo for eo in built.body.iter(ebrim.rim("ExtrinsicObject"))
               if eo.get("id") == built.signature_entry_uuid)
    assert sig.get("mimeType") == "text/xml"
    assert ebrim.coded(sig, ebrim.DE_CLASS) == ebrim.Coded("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN",
                                                           "Digital Signature")
    assert ebrim.coded(sig, ebrim.DE_TYPE) == ebrim.Coded("E1762", "ASTM", "Full Document")
    assert ebrim.coded(sig, ebrim.DE_FORMAT) == ebrim.Coded("http://www.w3.org/2000/09/xmldsig#", "URN",
                                                            "Default Signature Style")
    assert ebrim.coded(sig, ebrim.DE_EVENT) == ebrim.Coded("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source")
    assert ebrim.slot_value(sig, "languageCode") == "art"
    ss = next(built.body.iter(ebrim.rim("RegistryPackage")))
    ss_author = ebrim.classifications(ss, ebrim.SS_AUTHOR)[0]
    assert ebrim.slot_value(ebrim.classifications(sig, ebrim.DE_AUTHOR)[0], "authorPerson") == \
        ebrim.slot_value(ss_author, "authorPerson") == ebrim.slot_value(sig, "legalAuthenticator")
    associations = list(built.body.iter(ebrim.rim("Association")))
    signs = [(a.get("sourceObject"), a.get("targetObject")) for a in associations
             if a.get("associationType") == ebrim.SIGNS]
    assert signs == [(built.signature_entry_uuid, built.submission_set_entry_uuid)]
    members = {a.get("targetObject") for a in associations if a.get("associationType") == ebrim.HAS_MEMBER}
    assert members == {built.document_entry_uuid, built.signature_entry_uuid}
    manifest = etree.fromstring(built.attachments[f"{built.signature_entry_uuid[9:]}@relais"]).find(
        ".//{http://www.w3.org/2000/09/xmldsig#}Manifest")
    assert manifest is not None
    refs = {r.get("URI"): r.findtext("{http://www.w3.org/2000/09/xmldsig#}DigestValue")
            for r in manifest.iter("{http://www.w3.org/2000/09/xmldsig#}Reference")}
    assert set(refs) == {f"urn:oid:{uid}", "urn:oid:1.2.250.1.999.2"}
    assert refs["urn:oid:1.2.250.1.999.2"] == "AA=="


def test_a_code_outside_its_value_set_names_the_field(vac_note: tuple[bytes, str], signer: SoftwareSigner,
                                                      reference_dir: Path) -> None:
    cda, uid = vac_note
    cda = cda.replace(b'code="87273-9"', b'code="99999-9"')
    with pytest.raises(InvalidInput) as info:
        build_submission(request(cda, uid), signer, SubmissionDefaults(source_id="1.2.250.1.999"), NOW,
                         lambda: str(uuid.uuid4()), ValueSets.load(reference_dir))
    assert [e.field for e in info.value.errors] == ["metadata.typeCode"]
    assert "JDV_J07" in info.value.errors[0].message and "99999-9" in info.value.errors[0].message


def test_the_request_must_match_the_document(vac_note: tuple[bytes, str], signer: SoftwareSigner) -> None:
    cda, _ = vac_note
    with pytest.raises(InvalidInput) as info:
        build_submission(request(cda, "1.2.3.4"), signer, SubmissionDefaults(source_id="1.2"), NOW,
                         lambda: str(uuid.uuid4()))
    assert [e.field for e in info.value.errors] == ["document_unique_id"]


def test_n1_pdf_extraction(reference_dir: Path) -> None:
    n1 = (reference_dir / "ci-sis" / "ExemplesCDA" / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes()
    assert parse_cda_header(n1).is_n1
    assert extract_pdf(n1).startswith(b"%PDF")


def test_mtom_round_trip() -> None:
    body, ctype = soap.write_mtom(soap.MtomMessage(b"<root/>", {"a@x": b"\x00\r\n--binary\r\n", "b@x": b""}),
                                  soap.ACTION_ITI41)
    message = soap.read_mtom(body, ctype)
    assert message.root == b"<root/>"
    assert message.attachments == {"a@x": b"\x00\r\n--binary\r\n", "b@x": b""}
    holder = etree.Element("Document")
    soap.xop_include(holder, "a@x")
    assert soap.resolve_xop(holder, message.attachments) == b"\x00\r\n--binary\r\n"
    with pytest.raises(InvalidInput):
        soap.resolve_xop(holder, {})


def test_registry_errors_map_to_the_error_tree() -> None:
    dup = soap.registry_response([soap.RegistryError("XDSDuplicateUniqueIdInRegistry", "déjà", "")])
    with pytest.raises(DuplicateUniqueId) as info:
        soap.raise_for_registry(dup)
    assert info.value.code == "xds_duplicate_unique_id"
    busy = soap.registry_response([soap.RegistryError("XDSRegistryBusy", "", "")])
    with pytest.raises(TransientRemoteError):
        soap.raise_for_registry(busy)
    meta = soap.registry_response([soap.RegistryError("XDSRegistryMetadataError", "classCode absent", "")])
    with pytest.raises(PermanentRemoteError) as perm:
        soap.raise_for_registry(meta)
    assert "classCode absent" in perm.value.message
    soap.raise_for_registry(soap.registry_response())


def test_find_documents_query_is_schema_valid_and_refuses_quote_injection(reference_dir: Path) -> None:
    body = queries.find_documents("x^^^&1.2&ISO^NH", SearchCriteria(
        type_codes=("87273-9",), class_codes=("45", "10"), created_from="2024-01-01",
        created_to="2024-06-30T12:00:00+02:00", visibility="masked_to_ps", statuses=("approved", "archived")))
    assert validate(xds_schema(reference_dir), body) == []
    slots = {s.get("name"): [v.text for v in s.iter(ebrim.rim("Value"))] for s in body.iter(ebrim.rim("Slot"))}
    assert slots["$XDSDocumentEntryClassCode"] == ["('45','10')"]
    assert slots["$XDSDocumentEntryCreationTimeTo"] == ["20240630100000"]
    assert slots["$XDSDocumentEntryConfidentialityCode"] == ["('MASQUE_PS^^1.2.250.1.213.1.1.4.13')"]
    with pytest.raises(InvalidInput):
        queries.find_documents("x", SearchCriteria(author="O'Brien') OR ('1"))
