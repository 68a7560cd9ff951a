"""Builders without the validator (the kit's value sets only): what goes in the header, and what is refused
before any CDA exists."""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from agent.cda.service import CdaService
from agent.cda.valuesets import ValueSets
from agent.clock import FrozenClock
from agent.domain.cps import CpsHolder
from agent.errors import InvalidInput, Unavailable
from agent.xml.cda_header import parse_cda_header
from tests.support.documents import PDF

HL7 = "{urn:hl7-org:v3}"
PATIENT = {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "birth_name": "PAT-TROIS",
           "given_names": ["DOMINIQUE", "MARIE-LOUISE"], "sex": "F", "birth_date": "1979-03-28", "birth_place": "51215"}
AUTHOR = {"rpps": "01234567897", "family": "MULLER", "given": "Charles", "civility": "M", "title": "DR",
          "organisation": {"id": "1750803447", "name": "Cabinet médical du Dr MULLER"}}


@pytest.fixture(scope="session")
def codes(reference_dir: Path) -> ValueSets:
    return ValueSets(reference_dir / "ci-sis")


@pytest.fixture
def service(codes: ValueSets) -> CdaService:
    counter = itertools.count(1)
    return CdaService(clock=FrozenClock(datetime(2026, 1, 5, 9, 30, tzinfo=UTC)), allow_test_oids=True,
                      new_id=lambda: f"2.25.{next(counter)}", value_sets=codes)


def n1(service: CdaService, **changes: Any) -> Any:
    args: dict[str, Any] = {"pdf": PDF, "type_code": "11488-4", "title": "CR de consultation",
                            "service_start": "2026-01-05T10:00:00+01:00", "service_stop": None,
                            "patient": PATIENT, "author": AUTHOR, **changes}
    return service.wrap_pdf(**args)


def test_n1_header_carries_patient_author_and_times(service: CdaService) -> None:
    built = n1(service, service_stop="2026-01-05T10:30:00+01:00")
    root = etree.fromstring(built.cda)
    assert built.unique_id == "2.25.1" and built.set_id == "2.25.2"
    assert root.find(f"{HL7}code").get("code") == "11488-4"
    assert root.find(f"{HL7}effectiveTime").get("value") == "20260105103000+0100"  # Paris time of the clock
    patient_id = root.find(f"{HL7}recordTarget/{HL7}patientRole/{HL7}id")
    assert (patient_id.get("root"), patient_id.get("extension")) == ("1.2.250.1.213.1.4.10", "279035121518989")
    names = root.find(f"{HL7}recordTarget/{HL7}patientRole/{HL7}patient/{HL7}name")
    assert [(n.tag[len(HL7):], n.get("qualifier"), n.text) for n in names] == [
        ("family", "BR", "PAT-TROIS"), ("given", None, "DOMINIQUE MARIE-LOUISE"), ("given", "BR", "DOMINIQUE")]
    author_id = root.find(f"{HL7}author/{HL7}assignedAuthor/{HL7}id")
    assert author_id.get("extension") == "801234567897"
    period = root.find(f"{HL7}documentationOf/{HL7}serviceEvent/{HL7}effectiveTime")
    assert [p.get("value") for p in period] == ["20260105100000+0100", "20260105103000+0100"]
    assert built.class_code == "10" and built.format_code == "urn:ihe:iti:xds-sd:pdf:2008"


@pytest.mark.parametrize("content", [b"<html>not a pdf</html>", b"PK\x03\x04zip", b"%PDF-1.4 truncated"])
def test_a_non_pdf_is_refused(service: CdaService, content: bytes) -> None:
    with pytest.raises(InvalidInput) as refused:
        n1(service, pdf=content)
    assert refused.value.code == "not_pdf"


def test_through_build_document_the_pdf_comes_base64(service: CdaService) -> None:
    built = service.build_document("n1", PATIENT, AUTHOR, {
        "pdf_base64": base64.b64encode(PDF).decode(), "type_code": "PRESC-BIO", "title": "Ordonnance",
        "service_start": "2026-01-05"})
    assert built.type_system == "1.2.250.1.213.1.1.4.12" and built.class_code == "42"
    with pytest.raises(InvalidInput):
        service.build_document("n1", PATIENT, AUTHOR, {"pdf_base64": "%%%", "type_code": "11488-4",
                                                       "title": "x", "service_start": "2026-01-05"})


@pytest.mark.parametrize(("changes", "field"), [
    ({"type_code": "00000-0"}, "type_code"),
    ({"title": ""}, "title"),
    ({"service_start": "hier"}, "service_start"),
    ({"service_stop": "2026-01-04T10:00:00+01:00"}, "service_stop"),
    ({"patient": {**PATIENT, "ins": "279035121518988"}}, "patient.ins"),
    ({"patient": {**PATIENT, "given_names": []}}, "patient.given_names"),
    ({"patient": {k: v for k, v in PATIENT.items() if k != "birth_place"}}, "patient.birth_place"),
    ({"author": {**AUTHOR, "rpps": "123"}}, "author.rpps"),
    ({"author": {k: v for k, v in AUTHOR.items() if k != "organisation"}}, "author.organisation"),
])
def test_refusals_name_the_field(service: CdaService, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        n1(service, **changes)
    assert field in [e.field for e in refused.value.errors]


def test_test_oids_are_refused_outside_the_sandbox(codes: ValueSets) -> None:
    production = CdaService(clock=FrozenClock(), allow_test_oids=False, value_sets=codes)
    with pytest.raises(InvalidInput) as refused:
        n1(production)
    assert "patient.oid" in [e.field for e in refused.value.errors]


def test_vaccination_note_prefilled_from_the_scan(service: CdaService) -> None:
    built = service.build_document("vaccination_note", PATIENT, AUTHOR, {
        "datamatrix": "]d201034009328572411728123110ABC123\x1d21XYZ789",
        "administered_at": "2026-01-05T10:00:00+01:00", "dose_rank": 2})
    root = etree.fromstring(built.cda)
    entry = root.find(f".//{HL7}substanceAdministration")
    assert entry.find(f"{HL7}effectiveTime").get("value") == "20260105"
    assert entry.find(f".//{HL7}lotNumberText").text == "ABC123"
    assert entry.find(f".//{HL7}observation/{HL7}value").get("value") == "2"
    assert built.kind == "vaccination_note" and built.level == "N3" and built.class_code == "45"


def test_a_scan_without_lot_needs_the_lot(service: CdaService) -> None:
    with pytest.raises(InvalidInput) as refused:
        service.build_document("vaccination_note", PATIENT, AUTHOR, {
            "datamatrix": "(01)03400932857241(17)281231", "administered_at": "2026-01-05T10:00:00+01:00"})
    assert refused.value.errors[0].field == "data.lot"


def test_unknown_kind(service: CdaService) -> None:
    with pytest.raises(InvalidInput) as refused:
        service.build_document("ordonnance_magique", PATIENT, AUTHOR, {})
    assert refused.value.code == "unknown_kind"


def test_an_author_given_by_rpps_only_is_completed_from_the_cps_and_the_practice(codes: ValueSets) -> None:
    holder = CpsHolder(rpps="01234567897", family_name="MULLER", given_name="Charles", profession="10",
                       specialty="SM54")
    service = CdaService(clock=FrozenClock(), allow_test_oids=True, cps_holder=lambda: holder, value_sets=codes,
                         organisation={"id": "1750803447", "name": "Cabinet du Dr MULLER",
                                       "address": {"postal_code": "92100", "city": "BOULOGNE"}})
    built = n1(service, author={"rpps": "01234567897"})
    author = etree.fromstring(built.cda).find(f"{HL7}author/{HL7}assignedAuthor")
    assert author.find(f"{HL7}code").get("code") == "G15_10/SM54"
    assert author.find(f"{HL7}assignedPerson/{HL7}name/{HL7}family").text == "MULLER"
    assert author.find(f"{HL7}representedOrganization/{HL7}name").text == "Cabinet du Dr MULLER"
    # Another doctor's RPPS is never completed with the inserted CPS's identity.
    with pytest.raises(InvalidInput) as refused:
        n1(service, author={"rpps": "10003456789"})
    assert "author.family" in [e.field for e in refused.value.errors]


def test_the_ins_unknown_sex_is_written_as_the_value_set_s_un(service: CdaService) -> None:
    root = etree.fromstring(n1(service, patient={**PATIENT, "sex": "U"}).cda)
    gender = root.find(f"{HL7}recordTarget/{HL7}patientRole/{HL7}patient/{HL7}administrativeGenderCode")
    assert (gender.get("code"), gender.get("codeSystem")) == ("UN", "2.16.840.1.113883.5.1")


def test_a_profession_outside_its_value_set_is_a_422_on_its_field(service: CdaService) -> None:
    with pytest.raises(InvalidInput) as refused:
        n1(service, author={**AUTHOR, "profession_code": "G15_99/XX"})
    assert [e.field for e in refused.value.errors] == ["author.profession_code"]


def test_a_service_stop_equal_to_its_start_writes_no_high(service: CdaService) -> None:
    root = etree.fromstring(n1(service, service_stop="2026-01-05T10:00:00+01:00").cda)
    period = root.find(f"{HL7}documentationOf/{HL7}serviceEvent/{HL7}effectiveTime")
    assert [p.tag[len(HL7):] for p in period] == ["low"]  # dtr1-6-IVL_TS: a high equal to the low is refused


@pytest.mark.parametrize(("content", "media_type", "format_code"), [
    (b"Compte rendu en texte libre\nligne 2", "text/plain", "urn:ihe:iti:xds-sd:text:2008"),
    (b"{\\rtf1\\ansi Compte rendu}", "text/rtf", "urn:ihe:iti-fr:xds-sd:rtf:2010"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00rest", "image/jpeg", "urn:ihe:iti-fr:xds-sd:jpeg:2010"),
    (b"II*\x00\x08\x00\x00\x00rest", "image/tiff", "urn:ihe:iti-fr:xds-sd:tiff:2010"),
])
def test_n1_carries_the_formats_the_test_book_names(service: CdaService, content: bytes, media_type: str,
                                                   format_code: str) -> None:
    built = service.build_document("n1", PATIENT, AUTHOR, {
        "content_base64": base64.b64encode(content).decode(), "type_code": "11488-4", "title": "CR",
        "service_start": "2026-01-05"})
    text = etree.fromstring(built.cda).find(f"{HL7}component/{HL7}nonXMLBody/{HL7}text")
    assert text.get("mediaType") == media_type and base64.b64decode(text.text) == content
    assert built.format_code == format_code


def test_n1_refuses_a_content_that_is_not_what_it_claims(service: CdaService) -> None:
    with pytest.raises(InvalidInput) as refused:
        service.build_document("n1", PATIENT, AUTHOR, {
            "content_base64": base64.b64encode(b"plain text").decode(), "media_type": "image/jpeg",
            "type_code": "11488-4", "title": "CR", "service_start": "2026-01-05"})
    assert refused.value.code == "format_mismatch" and refused.value.errors[0].field == "data.content_base64"


def test_without_the_kit_nothing_coded_is_written() -> None:
    service = CdaService(clock=FrozenClock(), allow_test_oids=True)
    with pytest.raises(Unavailable) as refused:
        n1(service)
    assert refused.value.code == "cda_kit_missing"


async def test_without_the_kit_an_order_is_refused_unless_configured(codes: ValueSets) -> None:
    document = {"cda_base64": base64.b64encode(b"<ClinicalDocument/>").decode()}
    closed = CdaService(clock=FrozenClock(), value_sets=codes)
    with pytest.raises(Unavailable) as refused:
        await closed.order_document(document, PATIENT, AUTHOR)
    assert refused.value.code == "cda_kit_missing" and not closed.validated
    opened = CdaService(clock=FrozenClock(), value_sets=codes, allow_unvalidated=True)
    assert await opened.order_document(document, PATIENT, AUTHOR) == b"<ClinicalDocument/>"


def test_cse_notice_is_the_notice_an_order_makes_due(service: CdaService) -> None:
    body = {"patient": {**PATIENT, "birth_date": "2025-04-02"},
            "document": {"type_code": "59283-2", "service_start": "2026-01-05T10:00:00+01:00"}}
    notice = service.cse_notice(body)
    assert notice is not None and notice["kind"] == "cse_cs9"
    assert service.cse_notice({"document": {"type_code": "11488-4"}}) is None


async def test_cdt_2_1_900_a_document_built_here_carries_its_sender_as_a_second_author(codes: ValueSets) -> None:
    service = CdaService(clock=FrozenClock(datetime(2026, 1, 5, 9, 30, tzinfo=UTC)), allow_test_oids=True,
                         value_sets=codes, allow_unvalidated=True)
    document = {"pdf_base64": base64.b64encode(PDF).decode(), "type_code": "11488-4", "title": "DOC-auteurA-envoiB",
                "service_start": "2026-01-05T10:00:00+01:00"}
    sender = {"id": "10009999999", "family": "AUTRE", "given": "Bruno", "profession_code": "10"}
    header = parse_cda_header(await service.order_document(document, PATIENT, AUTHOR, sender))
    # A and B in distinct author blocks of the header, B in A's structure (EX_2.1-1140).
    assert header.author_ids == ("801234567897", "810009999999")
    assert header.institution_ids == ("1750803447", "1750803447")
    assert header.other_authors[0].family == "AUTRE"
    # A sender who is the author adds nothing; one the agent cannot name as a CDA author is refused.
    alone = parse_cda_header(await service.order_document(document, PATIENT, AUTHOR,
                                                          {**sender, "id": AUTHOR["rpps"]}))
    assert alone.other_authors == ()
    with pytest.raises(InvalidInput) as refused:
        await service.order_document(document, PATIENT, AUTHOR, {**sender, "id": "3123456789/SEC1"})
    assert [e.field for e in refused.value.errors] == ["sender.id"]


def test_the_document_type_is_written_as_the_kit_s_jdv_j07(service: CdaService, codes: ValueSets) -> None:
    """ClinicalDocument/code's system comes from the kit's value set, not from the builder (N1 keeps the
    catalogue's display, the one its XDS metadata carries)."""
    code = etree.fromstring(n1(service, type_code="56445-0").cda).find(f"{HL7}code")
    expected = codes.get("JDV_J07_XdsTypeCode_CISIS").find("56445-0")
    assert code is not None and expected is not None
    assert (code.get("code"), code.get("codeSystem")) == (expected.code, expected.system)
    built = service.build_document("mesures_enfant", {**PATIENT, "birth_date": "2024-03-01"}, AUTHOR,
                                   {"measured_at": "2025-01-10", "weight_g": 8600})
    code = etree.fromstring(built.cda).find(f"{HL7}code")
    kit = codes.get("JDV_J07_XdsTypeCode_CISIS").find("29274-8")
    assert code is not None and kit is not None
    assert (code.get("code"), code.get("codeSystem"), code.get("displayName")) == (kit.code, kit.system, kit.display)
