"""The CI-SIS validation engine against the ANS kit: its examples pass, mutated copies fail at the right rule,
and what the agent builds passes XSD and schematrons."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from agent.cda.pdfa import is_pdfa1
from agent.cda.schematron import compile_schema
from agent.cda.service import CdaService
from agent.cda.validation import CONTENT_PROFILE, STRUCTURATION_MINIMALE, CdaValidator, ValidationReport
from agent.clock import FrozenClock
from agent.domain.ins import compute_key
from agent.errors import InvalidInput

HL7 = "{urn:hl7-org:v3}"


@pytest.fixture(scope="session")
def validator(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    return CdaValidator(kit, tmp_path_factory.mktemp("cda-cache"))


def examples(kit: Path) -> list[Path]:
    return sorted((kit / "ExemplesCDA").glob("*.xml"))


# Structured kit examples of volets the agent knows but whose schematron the shared kit does not ship (the ANS
# releases do: the CR-BIO's is CI-SIS_BIO-CR-BIO_2024.01.sch): nothing checks their volet's rules here.
NO_VOLET_SCHEMATRON = {"BIO-CR-BIO_2024.01_CR-2nde-intention-PDF.xml"}


def test_every_kit_example_passes_with_zero_failed_assertions(validator: CdaValidator, kit: Path) -> None:
    found = examples(kit)
    assert len(found) >= 15
    for path in found:
        report = validator.validate(path.read_bytes())
        assert "ASIP-STRUCT-MIN-StrucMin.sch" in report.checked
        if path.name in NO_VOLET_SCHEMATRON:
            continue
        assert report.valid, (path.name, [e.as_dict() for e in report.errors[:5]])
        assert report.errors == []


def test_a_volet_without_schematron_is_not_called_valid(validator: CdaValidator, kit: Path) -> None:
    for name in NO_VOLET_SCHEMATRON:
        report = validator.validate((kit / "ExemplesCDA" / name).read_bytes())
        assert not report.valid
        assert [e.source for e in report.errors] == ["relais"]
        assert "CI-SIS_BIO-CR-BIO_2024.01.sch" in report.errors[0].message
        assert "manque dans le kit" in report.errors[0].message
    # A template the agent does not know at all: "volet inconnu".
    example = (kit / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    report = validator.validate(example.replace(b'root="1.2.250.1.213.1.1.1.46"', b'root="1.2.250.1.213.1.1.1.99"'))
    assert not report.valid and any("Volet inconnu" in e.message for e in report.errors)


def test_the_cr_bio_volet_is_checked_when_the_kit_ships_its_schematron(kit: Path, tmp_path: Path) -> None:
    """A kit with the CR-BIO schematron (as the ANS releases have): the agent picks it by templateId
    1.2.250.1.213.1.1.1.55 / 2024.01 and the kit's example passes. The top schematron is assembled here from the
    kit's own CR-BIO includes (a view of the shared kit with links; nothing is copied)."""
    view = tmp_path / "ci-sis"
    (view / "schematrons").mkdir(parents=True)
    for name in ("infrastructure", "jeuxDeValeurs", "ExemplesCDA"):
        (view / name).symlink_to(kit / name)
    for entry in (kit / "schematrons").iterdir():
        (view / "schematrons" / entry.name).symlink_to(entry)
    volet = kit / "schematrons" / "include" / "specificationsVolets" / "BIO-CR-BIO_2024.01"
    includes = sorted(p.relative_to(kit / "schematrons").as_posix() for p in volet.rglob("*.sch"))
    patterns = [etree.parse(str(kit / "schematrons" / i)).getroot().get("id") for i in includes]
    (view / "schematrons" / "CI-SIS_BIO-CR-BIO_2024.01.sch").write_text(
        '<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2" defaultPhase="bio">'
        '<ns prefix="cda" uri="urn:hl7-org:v3"/><ns prefix="xsi" uri="http://www.w3.org/2001/XMLSchema-instance"/>'
        '<ns prefix="jdv" uri="http://esante.gouv.fr"/><ns prefix="svs" uri="urn:ihe:iti:svs:2008"/>'
        '<include href="abstract/dansJeuDeValeurs.sch"/><include href="abstract/IVL_TS.sch"/>'
        + "".join(f'<include href="{i}"/>' for i in includes)
        + '<phase id="bio">' + "".join(f'<active pattern="{p}"/>' for p in patterns if p) + "</phase></schema>",
        encoding="utf-8")
    report = CdaValidator(view, tmp_path / "cache").validate(
        (kit / "ExemplesCDA" / "BIO-CR-BIO_2024.01_CR-2nde-intention-PDF.xml").read_bytes())
    assert "CI-SIS_BIO-CR-BIO_2024.01.sch" in report.checked
    assert report.valid, [e.as_dict() for e in report.errors[:5]]


def test_an_ep_med_dm_without_its_pdf_copy_fails_its_schematron(validator: CdaValidator, kit: Path) -> None:
    source = (kit / "ExemplesCDA" / "eP-MED-DM_2024.01_PosoNonStruct.xml").read_bytes()
    assert "CI-SIS_EP-MED-DM_2024.01.sch" in validator.validate(source).checked
    root = etree.fromstring(source)
    copies = [s for s in root.iter(f"{HL7}section") if s.find(f"{HL7}code") is not None
              and s.find(f"{HL7}code").get("code") == "55108-5"]
    assert copies, "the example's PDF copy section (LOINC 55108-5)"
    for section in copies:
        section.getparent().getparent().remove(section.getparent())
    report = validator.validate(etree.tostring(root))
    assert not report.valid
    assert any(e.source == "CI-SIS_EP-MED-DM_2024.01.sch" for e in report.errors)


def test_a_wrong_type_id_extension_is_an_error(validator: CdaValidator, kit: Path) -> None:
    source = (kit / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    report = validator.validate(source.replace(b'extension="POCD_HD000040"', b'extension="POCD_HD000041"', 1))
    assert not report.valid and any(e.source == "relais" and "typeId" in e.message for e in report.errors)


def test_the_volet_schematron_is_chosen_by_template_id(validator: CdaValidator, kit: Path) -> None:
    checked = {p.name: validator.validate(p.read_bytes()).checked for p in examples(kit)}
    assert "CI-SIS_VAC-NOTE_2023.01.sch" in checked["VAC-NOTE_2023.01.xml"]
    assert "CI-SIS_CSE-CS8_2025.01.sch" in checked["CSE-CS8_2025.01.xml"]
    assert "CI-SIS_CSE-CS8_2024.01.sch" in checked["CSE-CS8_2024.01.xml"]
    assert "CI-SIS_CSE-MDE_2023.01.sch" in checked["CSE-MDE_2023.01.xml"]
    assert "CI-SIS_IPS-FR_2024.01.sch" in checked["IPS-FR_2024.01.xml"]
    # N1: structuration minimale only (no structured body for the content profile).
    assert checked["DOC_NON_STRUCTURE_CDA-R2-N1.xml"] == ["xsd", "ASIP-STRUCT-MIN-StrucMin.sch"]


def _mutate(kit: Path, name: str, old: str, new: str) -> bytes:
    text = (kit / "ExemplesCDA" / name).read_text(encoding="utf-8-sig")
    assert old in text, f"{name}: {old!r} absent"
    return text.replace(old, new, 1).encode()


MUTATIONS = [
    # (example, old, new, schematron expected, words of the expected rule, location ends with)
    ("VAC-NOTE_2023.01.xml", '<code code="87273-9" displayName="Note de vaccination"',
     '<code code="11488-4" displayName="Note de vaccination"', "CI-SIS_VAC-NOTE_2023.01.sch",
     'L\'élément code doit avoir les attributs @code="87273-9"', "/ClinicalDocument[1]"),
    ("VAC-NOTE_2023.01.xml", '<birthTime value="19790328"/>', "", "CI-SIS_VAC-NOTE_2023.01.sch",
     "La date de naissance du patient est obligatoirement présente", "/patient[1]"),
    # A value-set lookup (document('../../jeuxDeValeurs/...') relative to the .sch): proves the base URI.
    ("VAC-NOTE_2023.01.xml", '<routeCode code="20035000"', '<routeCode code="99999999"', CONTENT_PROFILE,
     "[dansJeuDeValeurs]", "/routeCode[1]"),
    ("CSE-CS8_2025.01.xml", '<realmCode code="FR"/>', "", STRUCTURATION_MINIMALE,
     "element hl7:realmCode[@code = 'FR'] is required", "/ClinicalDocument[1]"),
    # doc('include/voc-...') relative to the structuration minimale's own folder.
    ("DOC_NON_STRUCTURE_CDA-R2-N1.xml", '<confidentialityCode code="N"', '<confidentialityCode code="Z"',
     STRUCTURATION_MINIMALE, "Confidentiality", "/confidentialityCode[1]"),
    ("IPS-FR_2024.01.xml", '<languageCode code="fr-FR"/>', '<languageCode code="francais"/>',
     STRUCTURATION_MINIMALE, "Le languageCode doit respecter la syntaxe", "/languageCode[1]"),
]


@pytest.mark.parametrize(("name", "old", "new", "schematron", "words", "where"), MUTATIONS,
                         ids=[f"{m[0]}:{m[4][:30]}" for m in MUTATIONS])
def test_a_mutated_example_fails_at_the_right_assertion(validator: CdaValidator, kit: Path, name: str, old: str,
                                                        new: str, schematron: str, words: str, where: str) -> None:
    report = validator.validate(_mutate(kit, name, old, new))
    assert not report.valid
    hits = [e for e in report.errors if e.source == Path(schematron).name and words in e.message]
    assert hits, [e.as_dict() for e in report.errors]
    assert any(e.location.endswith(where) for e in hits), [e.location for e in hits]


def test_schema_errors_are_reported_with_line_and_path(validator: CdaValidator, kit: Path) -> None:
    cda = _mutate(kit, "VAC-NOTE_2023.01.xml", "<languageCode", "<unknownElement/><languageCode")
    report = validator.validate(cda)
    xsd = [e for e in report.errors if e.source == "xsd"]
    assert xsd and "unknownElement" in xsd[0].message and "ligne" in xsd[0].message


def test_a_doctype_is_refused_before_any_check(validator: CdaValidator) -> None:
    from agent.errors import InvalidInput

    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><ClinicalDocument xmlns="urn:hl7-org:v3"/>'
    with pytest.raises(InvalidInput):
        validator.validate(evil)


def test_compiled_stylesheets_are_cached_on_disk_and_keep_the_sch_base(kit: Path, tmp_path: Path) -> None:
    first = CdaValidator(kit, tmp_path)
    first.run_schematron("CI-SIS_VAC-NOTE_2023.01.sch", "<x/>")
    cached = list(tmp_path.glob("CI-SIS_VAC-NOTE_2023.01-*.xsl"))
    assert len(cached) == 1
    root = etree.fromstring(cached[0].read_bytes())
    assert root.get("{http://www.w3.org/XML/1998/namespace}base") == (kit / "schematrons" /
                                                                       "CI-SIS_VAC-NOTE_2023.01.sch").resolve().as_uri()
    # A second validator (a restart) reads the file instead of compiling: a marker in the file shows it is used.
    cached[0].write_text(cached[0].read_text().replace("</xsl:stylesheet>", "<!-- reused --></xsl:stylesheet>"))
    second = CdaValidator(kit, tmp_path)
    assert "reused" in second._xslt_text(kit / "schematrons" / "CI-SIS_VAC-NOTE_2023.01.sch")


def test_abstract_patterns_phases_and_lets_compile(kit: Path) -> None:
    # CSE-CS8 uses abstract patterns (is-a with params), a default phase and lets of value-set paths.
    text = compile_schema(kit / "schematrons" / "CI-SIS_CSE-CS8_2025.01.sch")
    assert "$path_jdv" not in text and "is-a" not in text
    assert "../jeuxDeValeurs/" in text


# -- what the agent builds ---------------------------------------------------------------------------------------

PATIENT = {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "birth_name": "PAT-TROIS",
           "given_names": ["DOMINIQUE", "MARIE-LOUISE"], "sex": "F", "birth_date": "1979-03-28", "birth_place": "51215"}
AUTHOR = {"rpps": "01234567897", "family": "MULLER", "given": "Charles", "civility": "M", "title": "DR",
          "organisation": {"id": "1750803447", "name": "Cabinet médical du Dr MULLER",
                           "address": {"lines": ["25 rue Pasteur"], "postal_code": "92100", "city": "EVRY"}}}
from tests.support.documents import PDF  # noqa: E402  a real one-page PDF: Ghostscript turns it into PDF/A-1


@pytest.fixture(scope="session")
def service(validator: CdaValidator) -> CdaService:
    return CdaService(clock=FrozenClock(datetime(2026, 1, 5, 9, 30, tzinfo=UTC)), validator=validator,
                      allow_test_oids=True)


def _assert_valid(report: ValidationReport) -> None:
    assert report.valid, [e.as_dict() for e in report.errors[:5]]
    assert "xsd" in report.checked


@pytest.mark.parametrize("type_code", ["11488-4", "18748-4", "PRESC-BIO", "57833-6", "96349-6", "CERT_DECL",
                                       "59283-2"])
def test_n1_wrapper_passes_for_catalogue_types(service: CdaService, type_code: str) -> None:
    built = service.wrap_pdf(PDF, type_code, "Compte rendu", "2026-01-05T10:00:00+01:00",
                             "2026-01-05T10:20:00+01:00", PATIENT, AUTHOR)
    _assert_valid(service.validate(built.cda))
    root = etree.fromstring(built.cda)
    assert [t.get("root") for t in root.findall(f"{HL7}templateId")] == [
        "2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1", "1.3.6.1.4.1.19376.1.2.20"]
    text = root.find(f"{HL7}component/{HL7}nonXMLBody/{HL7}text")
    assert text is not None and text.get("mediaType") == "application/pdf"
    carried = base64.b64decode(text.text or "")
    assert carried.startswith(b"%PDF-") and is_pdfa1(carried)  # the DMP's PDF/A-1, made by Ghostscript
    assert root.find(f"{HL7}id").get("root") == built.unique_id


@pytest.mark.parametrize("scan", [
    "]d201034009328572411728123110ABC123\x1d21XYZ789",
    "(01)03400932857241(17)281231(10)LOT-42",
    "010340093285724117281231104456672",
])
def test_vaccination_note_from_a_scan_is_valid(service: CdaService, scan: str) -> None:
    built = service.build_document("vaccination_note", PATIENT, AUTHOR,
                                   {"datamatrix": scan, "administered_at": "2026-01-05T10:00:00+01:00"})
    _assert_valid(service.validate(built.cda))
    root = etree.fromstring(built.cda)
    material = root.find(f".//{HL7}manufacturedMaterial")
    assert material is not None
    code = material.find(f"{HL7}code")
    assert code is not None and code.get("code") == "68747507"  # CIS of the pack, from the project's table
    assert [t.get("code") for t in code.findall(f"{HL7}translation")] == ["J07AM", "3400932857241"]
    assert built.type_code == "87273-9"


def test_vaccination_note_with_every_option_is_valid(service: CdaService) -> None:
    built = service.build_document("vaccination_note", PATIENT, AUTHOR, {
        "datamatrix": "]d201034009328572411728123110ABC123\x1d21XYZ789",
        "administered_at": "2026-01-05T10:00:00+01:00", "dose_rank": 3, "immunization": "BOOSTER",
        "route": {"code": "20035000", "display": "Voie intramusculaire"},
        "site": {"code": "16217701000119102", "display": "deltoïde gauche"},
        "comment": "Aucune réaction immédiate."})
    _assert_valid(service.validate(built.cda))


def test_a_pack_missing_from_the_table_needs_the_vaccine_named(service: CdaService) -> None:
    from agent.errors import InvalidInput

    data: dict[str, Any] = {"datamatrix": "(01)03400930000007(17)270101(10)X1",
                            "administered_at": "2026-01-05T10:00:00+01:00"}
    with pytest.raises(InvalidInput) as refused:
        service.build_document("vaccination_note", PATIENT, AUTHOR, data)
    assert refused.value.code == "vaccine_unknown" and "3400930000007" in refused.value.message
    data["vaccine"] = {"cis": "60223722", "name": "BOOSTRIXTETRA, suspension injectable en seringue préremplie",
                       "atc": "J07CA02", "atc_display": "diphtérie-coqueluche-poliomyélite-tétanos"}
    built = service.build_document("vaccination_note", PATIENT, AUTHOR, data)
    _assert_valid(service.validate(built.cda))


def _nir(sex: int, year: int, month: int, dept: str, serial: int) -> str:
    body = f"{sex}{year % 100:02d}{month:02d}{dept}{serial:06d}"
    return body + f"{compute_key(body):02d}"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sex=st.sampled_from(["M", "F"]), year=st.integers(1925, 2025), month=st.integers(1, 12),
    dept=st.sampled_from(["75", "2A", "2B", "13", "99"]), serial=st.integers(1, 999_999),
    family=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ -'ÉÈ", min_size=1, max_size=30).filter(str.strip),
    days=st.integers(0, 3000), rank=st.none() | st.integers(1, 5),
)
def test_generated_identities_give_valid_documents(service: CdaService, sex: str, year: int, month: int, dept: str,
                                                   serial: int, family: str, days: int, rank: Any) -> None:
    patient = {**PATIENT, "ins": _nir(1 if sex == "M" else 2, year, month, dept, serial), "sex": sex,
               "birth_name": family.strip(), "birth_date": f"{year}-{month:02d}-01"}
    when = (datetime(2026, 1, 5, 9, tzinfo=UTC) - timedelta(days=days)).isoformat()
    built = service.build_document("vaccination_note", patient, AUTHOR, {
        "datamatrix": "]d201034009328572411728123110ABC123", "administered_at": when, "dose_rank": rank})
    _assert_valid(service.validate(built.cda))
    n1 = service.wrap_pdf(PDF, "11488-4", f"Consultation {family.strip()}", when, None, patient, AUTHOR)
    _assert_valid(service.validate(n1.cda))


MDE_PATIENT = {**PATIENT, "birth_date": "2025-06-01"}


@pytest.mark.parametrize("data", [
    {"measured_at": "2026-01-05", "weight_g": 7400, "height_cm": 66.5, "head_cm": 43},
    {"measured_at": "2026-01-05T09:00:00+01:00", "weight_g": 3350},
])
def test_mesures_de_l_enfant_are_valid(service: CdaService, data: dict[str, Any]) -> None:
    built = service.build_document("mesures_enfant", MDE_PATIENT, AUTHOR, data)
    report = service.validate(built.cda)
    _assert_valid(report)
    assert "CI-SIS_CSE-MDE_2023.01.sch" in report.checked
    assert built.type_code == "29274-8" and built.format_code == "urn:ans:ci-sis:cse-mde:2023"
    values = etree.fromstring(built.cda).findall(f".//{HL7}observation/{HL7}value")
    assert (values[0].get("value"), values[0].get("unit")) == (f"{data['weight_g']:g}", "g")


@pytest.mark.parametrize("data", [
    {},
    {"problems": [{"code": "E11.9", "display": "Diabète de type 2", "since": "2020-03-01"},
                  {"code": "I10", "display": "Hypertension essentielle"}],
     "allergies": [{"display": "Pénicilline"}],
     "treatments": [{"name": "METFORMINE 1000 mg, comprimé", "cis": "60234100", "atc": "A10BA02",
                     "atc_display": "metformine", "since": "2020-03-01"}, {"name": "Doliprane si douleur"}],
     "procedures": [{"code": "HHFA016", "display": "Appendicectomie par cœlioscopie", "date": "2010-05-04"}],
     "devices": [{"display": "Stimulateur cardiaque", "since": "2019-08-11"}],
     "vital_signs": {"measured_at": "2026-01-05", "weight_g": 81000, "height_cm": 178}},
])
def test_synthese_medicale_is_valid(service: CdaService, data: dict[str, Any]) -> None:
    built = service.build_document("synthese_medicale", PATIENT, AUTHOR, data)
    report = service.validate(built.cda)
    _assert_valid(report)
    assert "CI-SIS_IPS-FR_2024.01.sch" in report.checked and CONTENT_PROFILE.split("/")[-1] in report.checked
    sections = [s.find(f"{HL7}code").get("code")
                for s in etree.fromstring(built.cda).iterfind(f".//{HL7}section")]
    assert {"11450-4", "48765-2", "10160-0", "47519-4", "46264-8"} <= set(sections)


CHILD = {**PATIENT, "birth_name": "MARTIN", "given_names": ["LEA"], "birth_date": "2024-04-01"}
CSE_DATA: dict[str, Any] = {
    "exam_date": "2025-01-10",
    "parents": [{"relation": "MTH", "birth_date": "1990-05-31", "family": "MARTIN", "given": "Marie",
                 "profession": {"code": "3", "display": "Cadre ou profession intellectuelle supérieure"},
                 "activity": {"code": "PAT-040", "display": "Activité salariée"}},
                {"relation": "FTH", "birth_date": "1988-02-02",
                 "profession": {"code": "2", "display": "Artisan, commerçant ou chef d'entreprise"}}],
    "children_at_home": 2, "childcare": True, "childcare_type": {"code": "PAT-050", "display": "Accueil collectif"},
    "breastfeeding_exclusive_weeks": 12, "breastfeeding_mixed_weeks": 8,
    "domestic_accidents": [{"code": "NE2Z", "display": "Brûlures, sans précision"}],
    "measures": {"weight_g": 8600, "height_cm": 71, "head_cm": 45},
    "neurodevelopment": {"code": "ORG-197",
                         "display": "Orientation vers une plateforme de coordination et d'orientation"},
    "development": [{"code": "MED-200", "display": "Marche acquise", "value": False}],
    "vaccinations": [{"atc": "J07AN", "display": "vaccins de la tuberculose", "rank": 1},
                     {"atc": "J07AL", "display": "vaccins pneumococciques", "rank": 2, "date": "2024-08-01"}],
    "treatments": [{"atc": "J06BD", "display": "anticorps monoclonaux antiviraux"}],
    "care_plan": [{"code": "ORG-194", "display": "Orientation vers un autre professionnel de santé"}],
}
CS9_MINIMAL: dict[str, Any] = {
    "exam_date": "2025-01-10", "childcare": False, "measures": {"weight_g": 8600},
    "parents": [{"relation": "MTH", "birth_date": "1990-05-31",
                 "profession": {"code": "3", "display": "Cadre ou profession intellectuelle supérieure"}}],
    "neurodevelopment": {"code": "ORG-197",
                         "display": "Orientation vers une plateforme de coordination et d'orientation"},
}


@pytest.mark.parametrize(("kind", "data"), [
    ("cse_cs9", CSE_DATA),
    ("cse_cs9", CS9_MINIMAL),
    ("cse_cs24", {**CSE_DATA, "exam_date": "2026-04-10", "premature": False,
                  "screens": {"code": "GEN-311", "display": "Jamais"},
                  "history": [{"code": "MED-183", "display": "Prématurité inf. à 33 semaines"}]}),
], ids=["cs9-full", "cs9-minimal", "cs24"])
def test_certificats_de_sante_are_valid(service: CdaService, kind: str, data: dict[str, Any]) -> None:
    built = service.build_document(kind, CHILD, AUTHOR, data)
    report = service.validate(built.cda)
    _assert_valid(report)
    volet = {"cse_cs9": "CI-SIS_CSE-CS9_2025.01.sch", "cse_cs24": "CI-SIS_CSE-CS24_2025.01.sch"}[kind]
    assert volet in report.checked
    assert built.type_code == "CERT_DECL" and built.class_code == "52"


def test_a_certificate_with_a_code_outside_its_value_set_is_refused_then_reported(service: CdaService) -> None:
    # The builder refuses it, naming the field, before any CDA exists...
    data = {**CSE_DATA, "care_plan": [{"code": "ORG-999", "display": "Orientation imaginaire"}]}
    with pytest.raises(InvalidInput) as refused:
        service.build_document("cse_cs9", CHILD, AUTHOR, data)
    assert refused.value.code == "code_not_in_value_set"
    assert [e.field for e in refused.value.errors] == ["data.care_plan[0]"]
    # ... and a CDA carrying it anyway (an LGC's own) fails the volet's schematron at that rule.
    good = service.build_document("cse_cs9", CHILD, AUTHOR, {**CSE_DATA, "care_plan": [
        {"code": "ORG-194", "display": "Orientation vers un autre professionnel de santé"}]}).cda
    report = service.validate(good.replace(b'code="ORG-194"', b'code="ORG-999"'))
    assert not report.valid
    assert any("[dansJeuDeValeurs]" in e.message and "ORG-999" in e.message for e in report.errors)


CS8_CHILD = {**CHILD, "birth_date": "2026-01-01", "address": {"postal_code": "75007", "city": "PARIS"}}
CS8_AUTHOR = {**AUTHOR, "organisation": {**AUTHOR["organisation"],
                                         "address": {"postal_code": "75005", "city": "PARIS"}}}
CS8_DATA: dict[str, Any] = {'exam_date': '2026-01-08',
     'parents': [{'relation': 'MTH',
                  'birth_date': '1990-05-31',
                  'family': 'MARTIN',
                  'given': 'Marie',
                  'profession': {'code': '3',
                                 'display': 'Cadre ou profession intellectuelle supérieure'}},
                 {'relation': 'FTH',
                  'profession': {'code': '2', 'display': "Artisan, commerçant ou chef d'entreprise"}}],
     'mother': {'alcohol': 0, 'tobacco': 0, 'other_addiction': False},
     'children_at_home': 1,
     'feeding': {'code': 'MED-1256', 'display': 'Alimentation lait maternel exclusif'},
     'tb_family_risk': False,
     'coverage': {'code': 'GEN-105', 'display': 'Protection universelle maladie (PUMa)'},
     'pregnancy': {'gravidity': 1,
                   'parity': 1,
                   'premature_children': 0,
                   'under_2500g': 0,
                   'previous_caesarean': False,
                   'first_visit': {'code': '57630001', 'display': 'premier trimestre de la grossesse'},
                   'weight_before_kg': 58,
                   'height_cm': 172,
                   'preeclampsia': False,
                   'gestational_diabetes': False,
                   'other_disease': False},
     'antenatal': {'trisomy_screening': True,
                   'ultrasounds': 4,
                   'morphology_ultrasound': True,
                   'early_interview': False,
                   'hbs': 'negative'},
     'delivery': {'fetuses': 1,
                  'gestational_age_weeks': 39,
                  'presentation': {'code': '70028003', 'display': 'présentation du sommet'},
                  'membranes_over_12h': False,
                  'labour': {'code': '11466000', 'display': 'césarienne'},
                  'analgesia': {'code': '50697003', 'display': 'anesthésie générale'},
                  'method': {'code': 'MED-1273', 'display': 'Césarienne programmée'}},
     'newborn': {'measures': {'weight_g': 3400, 'height_cm': 50, 'head_cm': 34},
                 'apgar_1': 9,
                 'apgar_5': 10,
                 'specialised_care': False,
                 'hearing_screening': {'code': 'MED-179', 'display': 'Audition à recontrôler'}},
     'vaccinations': [{'atc': 'J07BC01', 'display': 'hépatite B, antigène purifié', 'rank': 1}],
     'care_plan': []}


@pytest.mark.parametrize("changes", [
    {},
    {"newborn": {**CS8_DATA["newborn"], "hearing_screening": None, "specialised_care": True,
                 "transfer": {"code": "2603003", "display": "secondaire"}},
     "antenatal": {**CS8_DATA["antenatal"], "hbs": "not_done"}, "pregnancy": {}, "coverage": None},
], ids=["full", "hearing-not-done-transfer"])
def test_certificat_du_8e_jour_is_valid(service: CdaService, changes: dict[str, Any]) -> None:
    built = service.build_document("cse_cs8", CS8_CHILD, CS8_AUTHOR, {**CS8_DATA, **changes})
    report = service.validate(built.cda)
    _assert_valid(report)
    assert "CI-SIS_CSE-CS8_2025.01.sch" in report.checked
    informant = etree.fromstring(built.cda).find(f"{HL7}informant/{HL7}relatedEntity/{HL7}code")
    assert informant is not None and informant.get("code") == "MTH"


@pytest.mark.parametrize(("patient", "author", "changes", "field"), [
    (CS8_CHILD, CS8_AUTHOR, {"parents": CS8_DATA["parents"][1:]}, "data.parents"),
    (CHILD, CS8_AUTHOR, {}, "patient.address.postal_code"),
    (CS8_CHILD, {**AUTHOR, "organisation": {"id": "1750803447", "name": "Cabinet"}}, {},
     "author.organisation.address.postal_code"),
    (CS8_CHILD, CS8_AUTHOR, {"antenatal": {**CS8_DATA["antenatal"], "hbs": "peut-être"}}, "data.antenatal.hbs"),
    (CS8_CHILD, CS8_AUTHOR, {"mother": {"alcohol": 0, "tobacco": 0}}, "data.mother.other_addiction"),
    (CS8_CHILD, CS8_AUTHOR, {"pregnancy": {"parity": "un"}}, "data.pregnancy.parity"),
])
def test_certificat_du_8e_jour_refusals(service: CdaService, patient: dict[str, Any], author: dict[str, Any],
                                        changes: dict[str, Any], field: str) -> None:
    from agent.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        service.build_document("cse_cs8", patient, author, {**CS8_DATA, **changes})
    assert refused.value.errors[0].field == field


LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéèàç ABCDEFGHIJKLMNOPQRSTUVWXYZ-'()0123456789", min_size=1,
                max_size=60).filter(str.strip)
DAY = st.dates(min_value=datetime(1950, 1, 1).date(), max_value=datetime(2025, 12, 31).date()).map(str)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    problems=st.lists(st.tuples(st.sampled_from(["E11.9", "I10", "J45.9", "E78.0"]), LABEL, st.none() | DAY),
                      max_size=3),
    allergies=st.lists(LABEL, max_size=2),
    treatments=st.lists(st.tuples(LABEL, st.none() | DAY), max_size=3),
    procedures=st.lists(st.tuples(LABEL, DAY), max_size=2),
    devices=st.lists(LABEL, max_size=2),
    weight=st.none() | st.integers(2000, 150_000),
)
def test_generated_synthese_medicale_is_valid(service: CdaService, problems: Any, allergies: Any, treatments: Any,
                                             procedures: Any, devices: Any, weight: Any) -> None:
    data: dict[str, Any] = {
        "problems": [{"code": c, "display": d.strip(), **({"since": s} if s else {})} for c, d, s in problems],
        "allergies": [{"display": a.strip()} for a in allergies],
        "treatments": [{"name": n.strip(), **({"since": s} if s else {})} for n, s in treatments],
        "procedures": [{"code": "HHFA016", "display": d.strip(), "date": s} for d, s in procedures],
        "devices": [{"display": d.strip()} for d in devices],
    }
    if weight:
        data["vital_signs"] = {"measured_at": "2026-01-05", "weight_g": weight}
    _assert_valid(service.validate(service.build_document("synthese_medicale", PATIENT, AUTHOR, data).cda))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weight=st.none() | st.integers(400, 30_000), height=st.none() | st.floats(30, 130).map(lambda f: round(f, 1)),
       head=st.none() | st.floats(25, 60).map(lambda f: round(f, 1)), day=DAY)
def test_generated_mesures_de_l_enfant_are_valid(service: CdaService, weight: Any, height: Any, head: Any,
                                                day: str) -> None:
    data = {k: v for k, v in (("weight_g", weight), ("height_cm", height), ("head_cm", head)) if v is not None}
    if not data:
        data["weight_g"] = 3000
    built = service.build_document("mesures_enfant", MDE_PATIENT, AUTHOR, {"measured_at": day, **data})
    _assert_valid(service.validate(built.cda))


def test_a_changed_included_file_invalidates_the_disk_cache(tmp_path: Path) -> None:
    import os
    import shutil

    kit = tmp_path / "kit"
    (kit / "schematrons" / "inc").mkdir(parents=True)
    main = kit / "schematrons" / "main.sch"
    main.write_text('<schema xmlns="http://purl.oclc.org/dsdl/schematron"><include href="inc/p.sch"/></schema>')
    included = kit / "schematrons" / "inc" / "p.sch"
    included.write_text('<pattern xmlns="http://purl.oclc.org/dsdl/schematron" id="p"><rule context="a">'
                        '<assert test="@x">sans x</assert></rule></pattern>')
    cache = tmp_path / "cache"
    first = CdaValidator(kit, cache)._xslt_text(main)
    included.write_text(included.read_text().replace("sans x", "il manque x"))
    os.utime(included, ns=(1, 1))
    second = CdaValidator(kit, cache)._xslt_text(main)
    assert "sans x" in first and "il manque x" in second
    assert len(list(cache.glob("main-*.xsl"))) == 2
    shutil.rmtree(cache)


def test_every_kit_example_without_its_realm_code_fails_at_that_rule(validator: CdaValidator, kit: Path) -> None:
    for path in examples(kit):
        root = etree.fromstring(path.read_bytes())
        realm = root.find(f"{HL7}realmCode")
        assert realm is not None, path.name
        root.remove(realm)
        report = validator.validate(etree.tostring(root))
        hits = [e for e in report.errors if e.source == "ASIP-STRUCT-MIN-StrucMin.sch"
                and "element hl7:realmCode[@code = 'FR'] is required" in e.message]
        assert not report.valid and hits and hits[0].location == "/ClinicalDocument[1]", path.name


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["cse_cs9", "cse_cs24"]), childcare=st.booleans(), premature=st.booleans(),
       weight=st.integers(5000, 16000), children=st.none() | st.integers(1, 6),
       accident=st.booleans(), mother_born=DAY, vaccines=st.integers(0, 4))
def test_generated_certificates_are_valid(service: CdaService, kind: str, childcare: bool, premature: bool,
                                         weight: int, children: Any, accident: bool, mother_born: str,
                                         vaccines: int) -> None:
    data: dict[str, Any] = {
        **CS9_MINIMAL, "childcare": childcare, "measures": {"weight_g": weight},
        "parents": [{**CS9_MINIMAL["parents"][0], "birth_date": mother_born}],
        "vaccinations": CSE_DATA["vaccinations"][:1] * vaccines,
        "domestic_accidents": CSE_DATA["domestic_accidents"] if accident else [],
    }
    if children is not None:
        data["children_at_home"] = children
    if kind == "cse_cs24":
        data.update({"premature": premature, "screens": {"code": "GEN-311", "display": "Jamais"}})
    _assert_valid(service.validate(service.build_document(kind, CHILD, AUTHOR, data).cda))


@pytest.mark.parametrize("kind", ["cse_cs9", "cse_cs24"])
def test_every_answer_the_certificate_allows_gives_a_valid_document(service: CdaService, kind: str) -> None:
    """Each coded answer of the form, for every code of its value set (read from the kit, as the builder does):
    the lists all at once, the single answers in turn."""
    codes = service.context.value_sets

    def every(name: str) -> list[str]:
        return codes.get(name).codes

    history = "JDV_AntecedentsCSE9_CISIS" if kind == "cse_cs9" else "JDV_AntecedentsCSE24_CISIS"
    vaccines = "JDV_VaccinCSE9_CISIS" if kind == "cse_cs9" else "JDV_VaccinCSE24_CISIS"
    singles = {name: every(name) for name in ("JDV_Profession_CISIS", "JDV_Activite_CISIS", "JDV_TypeGarde_CISIS",
                                              "JDV_EnfantExposeAuxEcrans_CS24_CISIS",
                                              "JDV_ReperageTroubleNeurodeveloppement_CISIS")}
    rounds = max(len(v) for v in singles.values())
    for turn in range(rounds):
        pick = {name: values[turn % len(values)] for name, values in singles.items()}
        data = {**CSE_DATA, "premature": turn % 2 == 0,
                "parents": [{**CSE_DATA["parents"][0], "profession": pick["JDV_Profession_CISIS"],
                             "activity": pick["JDV_Activite_CISIS"]}, CSE_DATA["parents"][1]],
                "childcare_type": pick["JDV_TypeGarde_CISIS"], "screens": pick["JDV_EnfantExposeAuxEcrans_CS24_CISIS"],
                "neurodevelopment": pick["JDV_ReperageTroubleNeurodeveloppement_CISIS"],
                "domestic_accidents": [{"code": c} for c in every("JDV_CauseAccidentDom_CISIS")],
                "history": [{"code": c} for c in every(history)],
                "development": [{"code": c, "value": True} for c in every("JDV_DeveloppementPsychomoteur_CS24_CISIS")],
                "vaccinations": [{"atc": c, "rank": 1} for c in every(vaccines)],
                "care_plan": [{"code": c} for c in every("JDV_Rencontre_CS9_CS24_CISIS")]}
        report = service.validate(service.build_document(kind, CHILD, AUTHOR, data).cda)
        assert report.valid, (turn, pick, [e.as_dict() for e in report.errors[:5]])
        assert report.warnings == [], [w.as_dict() for w in report.warnings[:5]]


async def test_cdt_2_1_900_a_built_document_with_its_sender_as_second_author_passes_ci_sis(
        service: CdaService) -> None:
    document = {"pdf_base64": base64.b64encode(PDF).decode(), "type_code": "11488-4", "title": "DOC-auteurA-envoiB",
                "service_start": "2026-01-05T10:00:00+01:00"}
    sender = {"id": "10009999999", "family": "AUTRE", "given": "Bruno", "profession_code": "10"}
    cda = await service.order_document(document, PATIENT, AUTHOR, sender)  # refused (422) unless valid
    _assert_valid(service.validate(cda))
    ids = [i.get("extension") for i in etree.fromstring(cda).findall(f"{HL7}author/{HL7}assignedAuthor/{HL7}id")]
    assert ids == ["801234567897", "810009999999"]
