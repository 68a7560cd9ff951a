"""Every builder, fed by Hypothesis with the inputs an LGC may send: every optional field present or absent, every
code list of the builder (drawn from the kit's value sets, as the builders read them), identities with accents,
apostrophes, several given names, NIR or NIA, minors; each document is checked with the kit (XSD, structuration
minimale, the volet's schematron, content profile) and must have no error and no warning, except the few named
in ``ACCEPTED_WARNINGS`` with the reason the builder cannot avoid them.

Plus one deterministic pass over every code of the header's code lists (profession, sector, facility type, title,
sex), where sampling would leave most codes unseen. Kept under a minute on two cores: few examples per builder,
one warm validator for the module."""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lxml import etree

from agent.cda import synthese
from agent.cda.service import CdaService
from agent.cda.validation import CdaValidator, ValidationReport
from agent.cda.valuesets import TERMINOLOGIES
from agent.clock import FrozenClock
from agent.domain import catalogue
from agent.domain.ins import compute_key
from agent.errors import InvalidInput
from tests.support.documents import PDF

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def service(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CdaService:
    kit = reference_dir / "ci-sis"
    if not (kit / "schematrons").is_dir():
        pytest.skip(f"kit CI-SIS absent ({kit})")
    validator = CdaValidator(kit, tmp_path_factory.mktemp("cda-cache"))
    return CdaService(clock=FrozenClock(NOW), validator=validator, allow_test_oids=True)


def codes_of(service: CdaService, name: str) -> list[str]:
    return list(service.context.value_sets.get(name).codes)


# Kit warnings a builder cannot avoid, by rule id (the start of the kit's message: "dtr1-4-EN", or
# "CI-SISAddr/d18896e14-true-d18971e0" for a closed template's rule) -> why. Nothing else is tolerated: a new
# warning fails the test until the builder is fixed or the rule is named here with its reason.
# None today: the warnings the builders could meet are prevented at the API (a name beginning with a double quote,
# dtr1-4-EN, is refused with a 422 on its field; see test_inputs_the_kit_warns_about_are_refused_on_their_field).
ACCEPTED_WARNINGS: dict[str, str] = {}
_RULE = re.compile(r"\((?P<template>[\w.-]+)\)/(?P<rule>[\w-]+):|(?P<plain>[\w.-]+):")


def rule_id(message: str) -> str:
    """The kit's rule id at the start of a finding's message ("" if it has none)."""
    match = _RULE.match(message)
    if match is None:
        return ""
    return match["plain"] or f"{match['template']}/{match['rule']}"


def unexpected_warnings(report: ValidationReport) -> list[dict[str, str]]:
    return [w.as_dict() for w in report.warnings if rule_id(w.message) not in ACCEPTED_WARNINGS]


def check(service: CdaService, kind: str, patient: dict[str, Any], author: dict[str, Any],
          data: dict[str, Any]) -> ValidationReport:
    built = service.build_document(kind, patient, author, data)
    report = service.validate(built.cda)
    assert report.valid, (kind, data, [e.as_dict() for e in report.errors[:5]])
    assert unexpected_warnings(report) == [], (kind, patient, author, data)
    return report


def examples(count: int) -> settings:
    """Few examples (each is a full CI-SIS validation), no shrinking: a failure is reported as drawn, in seconds.
    ``RELAIS_CDA_EXAMPLES=<factor>`` multiplies them for a longer hunt."""
    return settings(max_examples=count * int(os.environ.get("RELAIS_CDA_EXAMPLES", "1")), deadline=None,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate),
                    suppress_health_check=[
        HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])

# -- identities -------------------------------------------------------------------------------------------------
# Names as the RNIV writes them, plus what an LGC's own fields may hold: particles in lower case, a nickname in
# quotes (never at the start: the API refuses that, dtr1-4-EN).
NAME = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZÉÈÊËÏÎÔÇ'- ", min_size=1, max_size=25).filter(
    lambda s: any(c.isalpha() for c in s)) | st.sampled_from(["de la Fontaine", "van Dam", "D'ARTAGNAN",
                                                               'MARTIN "DIT" DUPONT', "N'GUYEN"])
GIVEN = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdeéèêïç'-", min_size=1, max_size=15).filter(
    lambda s: any(c.isalpha() for c in s))
LINE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéèàç ABCDEFGHIJKLMNOPQRSTUVWXYZ-'0123456789,", min_size=1,
               max_size=40).filter(lambda s: any(c.isalnum() for c in s))
POSTAL = st.from_regex(r"\A[0-9]{5}\Z")
FREE_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéèàçù ABCDEFGHIJKLMNOPQRSTUVWXYZ-'()<>&\"0123456789.,;:!?%",
                    min_size=1, max_size=80).filter(str.strip)


def _matricule(sex: int, born: date, dept: str, serial: int) -> str:
    """A matricule with a right key; the OID says NIR (.8), NIA (.9) or test NIR (.10)."""
    body = f"{sex}{born.year % 100:02d}{born.month:02d}{dept}{serial:06d}"
    return body + f"{compute_key(body):02d}"


@st.composite
def addresses(draw: st.DrawFn, *, structured: bool | None = None) -> dict[str, Any] | None:
    shape = draw(st.sampled_from(["structured", "lines"])) if structured is None else (
        "structured" if structured else "lines")
    lines = draw(st.lists(LINE, min_size=0 if shape == "structured" else 1, max_size=3))
    if shape == "lines":
        return {"lines": lines}
    numbered = draw(st.booleans())
    if numbered:
        lines = [f"{draw(st.integers(1, 300))}{draw(st.sampled_from(['', ' bis', ' ter', 'B']))} rue "
                 f"{draw(NAME).strip() or 'PASTEUR'}", *lines]
    # A postal code or a city makes it structured; asked for structured (the CS8), it has both, as the CS8 wants.
    parts = "both" if structured else draw(st.sampled_from(["both", "postal", "city"]))
    address: dict[str, Any] = {"lines": lines}
    if parts != "city":
        address["postal_code"] = draw(POSTAL)
    if parts != "postal":
        address["city"] = draw(NAME).strip() or "PARIS"
    if draw(st.booleans()):
        address["country"] = draw(st.sampled_from(["FRANCE", "Belgique", "Côte d'Ivoire"]))
    return address


@st.composite
def patients(draw: st.DrawFn, *, born_between: tuple[date, date] = (date(1925, 1, 1), date(2025, 12, 31)),
             structured_address: bool | None = None) -> dict[str, Any]:
    sex = draw(st.sampled_from(["M", "F", "U"]))
    born = draw(st.dates(*born_between))
    ins = _matricule(1 if sex == "M" else 2, born, draw(st.sampled_from(["75", "2A", "2B", "13", "99", "97"])),
                     draw(st.integers(1, 999_999)))
    patient: dict[str, Any] = {
        "ins": ins, "oid": draw(st.sampled_from(["1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9",
                                                 "1.2.250.1.213.1.4.10"])),
        "birth_name": draw(NAME).strip() or "MARTIN", "given_names": draw(st.lists(GIVEN, min_size=1, max_size=3)),
        "sex": sex, "birth_date": born.isoformat(),
        "birth_place": draw(st.sampled_from(["75056", "2A004", "2B033", "13055", "99134", "97411"])),
    }
    if draw(st.booleans()):
        patient["used_name"] = draw(NAME).strip() or "DUPONT"
    if draw(st.booleans()):
        patient["used_given"] = draw(GIVEN)
    if structured_address or (structured_address is None and draw(st.booleans())):
        patient["address"] = draw(addresses(structured=structured_address))
    return patient


@st.composite
def authors(draw: st.DrawFn, service: CdaService, *, structured_address: bool | None = None) -> dict[str, Any]:
    organisation: dict[str, Any] = {
        "id": draw(st.sampled_from(["1750803447", "3" + "12345678900011", "4" + "10001234567" + "01"])),
        "name": draw(FREE_TEXT).strip().lstrip('"').strip()[:60] or "Cabinet",  # a leading quote: a 422
    }
    for key, name in (("sector_code", "JDV_J04_XdsPracticeSettingCode_CISIS"),
                      ("facility_code", "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS")):
        if draw(st.booleans()):
            organisation[key] = draw(st.sampled_from(codes_of(service, name)))
    if structured_address or (structured_address is None and draw(st.booleans())):
        organisation["address"] = draw(addresses(structured=structured_address))
    if draw(st.booleans()):
        organisation["telecom"] = draw(st.sampled_from(["01 47 15 00 00", "+33147150000", "cabinet@exemple.fr",
                                                        "tel:0147150000", "fax:0147150001",
                                                        "http://cabinet.exemple.fr"]))
    author: dict[str, Any] = {"rpps": f"{draw(st.integers(0, 99_999_999_999)):011d}", "family": draw(NAME).strip()
                              or "MULLER", "given": draw(GIVEN), "organisation": organisation}
    if draw(st.booleans()):
        author["civility"] = draw(st.sampled_from(["M", "MME"]))
    if draw(st.booleans()):
        author["title"] = draw(st.sampled_from(codes_of(service, "JDV_J246_Titre_CISIS")))
    if draw(st.booleans()):
        author["profession_code"] = draw(st.sampled_from(codes_of(service, "JDV_J01_XdsAuthorSpecialty_CISIS")))
    if draw(st.booleans()):
        author["telecom"] = draw(st.sampled_from(["0601020304", "dr.muller@exemple.mssante.fr"]))
    return author


def instants(start: datetime = datetime(2020, 1, 1, tzinfo=UTC)) -> st.SearchStrategy[datetime]:
    return st.integers(0, int((NOW - start).total_seconds())).map(lambda s: start + timedelta(seconds=s))


def when_text(moment: datetime, *, date_only: bool = False) -> str:
    return moment.date().isoformat() if date_only else moment.isoformat()


def concept(code: str, with_display: bool) -> Any:
    return {"code": code, "display": "ignoré : la valeur vient du jeu de valeurs"} if with_display else code


# -- N1 ---------------------------------------------------------------------------------------------------------
CONTENTS = {
    "text/plain": "Compte rendu\nLigne accentuée é, apostrophe ' et <balise>".encode(),
    "text/rtf": rb"{\rtf1\ansi Compte rendu\par}",
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64),
    "image/tiff": b"II*\x00\x08\x00\x00\x00" + bytes(64),
}
N1_TYPES = sorted({d.type_code for d in catalogue.CATALOGUE})


@examples(10)
@given(data=st.data())
def test_generated_n1_documents_are_valid(service: CdaService, data: st.DataObject) -> None:
    patient = data.draw(patients())
    author = data.draw(authors(service))
    start = data.draw(instants())
    media = data.draw(st.sampled_from([*CONTENTS, "application/pdf"] if data.draw(st.integers(0, 4)) == 0
                                      else list(CONTENTS)))
    body: dict[str, Any] = {"type_code": data.draw(st.sampled_from(N1_TYPES)), "title": data.draw(FREE_TEXT),
                            "service_start": when_text(start)}
    if media == "application/pdf":
        body["pdf_base64"] = base64.b64encode(PDF).decode()
    else:
        body["content_base64"] = base64.b64encode(CONTENTS[media]).decode()
        if data.draw(st.booleans()):
            body["media_type"] = media
    if data.draw(st.booleans()):
        body["service_stop"] = when_text(start + timedelta(minutes=data.draw(st.integers(0, 600))))
    check(service, "n1", patient, author, body)


# -- note de vaccination ----------------------------------------------------------------------------------------
GTIN = "03400932857241"


@st.composite
def scans(draw: st.DrawFn) -> tuple[str, bool]:
    """A DataMatrix of the table's pack, in one of the forms scanners send; and whether it carries a lot."""
    expiry = draw(st.dates(date(2026, 1, 1), date(2031, 12, 31))).strftime("%y%m%d")
    lot = draw(st.none() | st.from_regex(r"\A[A-Z0-9]{3,10}\Z"))
    serial = draw(st.none() | st.from_regex(r"\A[A-Z0-9]{4,12}\Z"))
    form = draw(st.sampled_from(["raw", "symbology", "parenthesised"]))
    if form == "parenthesised":
        text = f"(01){GTIN}(17){expiry}" + (f"(10){lot}" if lot else "") + (f"(21){serial}" if serial else "")
        return text, lot is not None
    parts = f"01{GTIN}17{expiry}" + (f"10{lot}" if lot else "") + (f"\x1d21{serial}" if serial and lot else
                                                                     f"21{serial}" if serial else "")
    return ("]d2" if form == "symbology" else "") + parts, lot is not None


@examples(10)
@given(data=st.data())
def test_generated_vaccination_notes_are_valid(service: CdaService, data: st.DataObject) -> None:
    scan, has_lot = data.draw(scans())
    body: dict[str, Any] = {"datamatrix": scan, "administered_at": when_text(data.draw(instants()))}
    if not has_lot or data.draw(st.booleans()):
        body["lot"] = data.draw(st.from_regex(r"\A[A-Z0-9]{2,12}\Z"))
    if data.draw(st.booleans()):
        body["dose_rank"] = data.draw(st.integers(1, 6))
    if data.draw(st.booleans()):
        body["immunization"] = data.draw(st.sampled_from(
            codes_of(service, "JDV_HL7_ActSubstanceAdministrationImmunizationCode_CISIS")))
    for key, name in (("route", "JDV_ImmunizationRouteCodes_CISIS"),
                      ("site", "JDV_ImmunizationApproachSiteCode_CISIS")):
        if data.draw(st.booleans()):
            body[key] = concept(data.draw(st.sampled_from(codes_of(service, name))), data.draw(st.booleans()))
    if data.draw(st.booleans()):
        body["comment"] = data.draw(FREE_TEXT)
    check(service, "vaccination_note", data.draw(patients()), data.draw(authors(service)), body)


def test_a_pack_outside_the_table_named_by_the_lgc_is_valid(service: CdaService) -> None:
    body = {"datamatrix": "010340093000000717281231" + "10LOT1", "administered_at": "2026-01-05T10:00:00+01:00",
            "vaccine": {"cis": "60223722", "name": "BOOSTRIXTETRA, suspension injectable",
                        "atc": "J07CA02", "atc_display": "diphtérie-coqueluche-poliomyélite-tétanos"}}
    patient = {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "birth_name": "PAT-TROIS",
               "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28", "birth_place": "51215"}
    author = {"rpps": "01234567897", "family": "MULLER", "given": "Charles",
              "organisation": {"id": "1750803447", "name": "Cabinet"}}
    check(service, "vaccination_note", patient, author, body)


# -- synthèse médicale ------------------------------------------------------------------------------------------
DAY = st.dates(date(1950, 1, 1), date(2025, 12, 31)).map(date.isoformat)


def optional(draw: st.DrawFn, item: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        item[key] = draw(strategy)


# The LGC's own codes, per terminology the field allows (named by name or by OID: both are accepted).
PROBLEM_CODES = {"CIM-10": ["E11.9", "I10", "J45.9", "E78.0", "F32.9"], "CISP-2": ["T90", "K86"],
                 "OrphaCodes": ["658", "586"], "SNOMED CT": ["44054006", "38341003"]}
ALLERGEN_CODES = {"SNOMED CT": ["91936005", "294505008", "300913006"], "ATC": ["J01CA04", "N02BE01"]}


def system_named(draw: st.DrawFn, name: str, *, default: bool) -> dict[str, str]:
    """How a request names a terminology: not at all (the field's default), by name, or by OID."""
    forms = [{"system": name}, {"system": TERMINOLOGIES[name].oid}] + ([{}] if default else [])
    return draw(st.sampled_from(forms))


@st.composite
def problems(draw: st.DrawFn, service: CdaService) -> dict[str, Any]:
    system = draw(st.sampled_from(synthese.PROBLEM_SYSTEMS))
    item: dict[str, Any] = {"code": draw(st.sampled_from(PROBLEM_CODES[system])), "display": draw(FREE_TEXT),
                            **system_named(draw, system, default=system == synthese.PROBLEM_SYSTEMS[0])}
    optional(draw, item, "since", DAY)
    if draw(st.booleans()):
        item["kind"] = concept(draw(st.sampled_from(codes_of(service, synthese.JDV_PROBLEM_KIND))),
                               draw(st.booleans()))
    return item


@st.composite
def allergies(draw: st.DrawFn, service: CdaService) -> dict[str, Any]:
    item: dict[str, Any] = {"display": draw(FREE_TEXT)}
    if draw(st.booleans()):
        system = draw(st.sampled_from(synthese.ALLERGEN_SYSTEMS))
        item["code"] = draw(st.sampled_from(ALLERGEN_CODES[system]))
        item.update(system_named(draw, system, default=system == synthese.ALLERGEN_SYSTEMS[0]))
    optional(draw, item, "since", DAY)
    if draw(st.booleans()):
        item["type"] = concept(draw(st.sampled_from(codes_of(service, synthese.JDV_ALLERGY_TYPE))),
                               draw(st.booleans()))
    return item


TREATMENT = st.fixed_dictionaries({"name": FREE_TEXT}, optional={"since": DAY}).flatmap(
    lambda item: st.sampled_from([item, {**item, "cis": "60234100", "atc": "A10BA02", "atc_display": "metformine"},
                                  {**item, "code": "60234100", "system": "CIS"}, {**item, "cis": 60234100},
                                  {**item, "atc": "A10BA02"},
                                  {**item, "atc": "N02BE01", "atc_display": "paracétamol"}]))
PROCEDURE = st.fixed_dictionaries({"code": st.sampled_from(["HHFA016", "JQGA002", "NFKA006"]), "display": FREE_TEXT,
                                   "date": DAY}, optional={"system": st.sampled_from(["CCAM", "1.2.250.1.215.300.1"])})
DEVICE = st.fixed_dictionaries({"display": FREE_TEXT}, optional={"since": DAY, "code": st.sampled_from(
    ["J0105", "P0703", "Z12"])})  # EMDN


@st.composite
def synthese_data(draw: st.DrawFn, service: CdaService) -> dict[str, Any]:
    data: dict[str, Any] = {"problems": draw(st.lists(problems(service), max_size=3)),
                            "allergies": draw(st.lists(allergies(service), max_size=2)),
                            "treatments": draw(st.lists(TREATMENT, max_size=3)),
                            "procedures": draw(st.lists(PROCEDURE, max_size=2)),
                            "devices": draw(st.lists(DEVICE, max_size=2))}
    if draw(st.booleans()):
        data["vital_signs"] = {"measured_at": draw(DAY), **draw(measures())}
    optional(draw, data, "title", FREE_TEXT)
    return data


@st.composite
def measures(draw: st.DrawFn, *, child: bool = False) -> dict[str, Any]:
    values = {
        "weight_g": draw(st.none() | st.integers(400, 30_000 if child else 150_000)),
        "height_cm": draw(st.none() | st.floats(30, 130 if child else 210).map(lambda f: round(f, 1))),
        "head_cm": draw(st.none() | st.floats(25, 60).map(lambda f: round(f, 1))),
    }
    chosen = {k: v for k, v in values.items() if v is not None}
    return chosen or {"weight_g": 3000}


@examples(8)
@given(data=st.data())
def test_generated_syntheses_are_valid(service: CdaService, data: st.DataObject) -> None:
    check(service, "synthese_medicale", data.draw(patients()), data.draw(authors(service)),
          data.draw(synthese_data(service)))


def test_every_code_of_the_synthese_code_lists_gives_a_valid_document(service: CdaService) -> None:
    """Every problem kind (JDV_ProblemCodes_CISIS), allergy type (JDV_TypeEvenementIndesirablePrevisible_CISIS)
    and terminology a coded item may name, each at least once, where sampling would leave most unseen: a few
    documents carrying them side by side, each checked by the kit (its volet, content profile included)."""
    kinds = codes_of(service, synthese.JDV_PROBLEM_KIND)
    types = codes_of(service, synthese.JDV_ALLERGY_TYPE)
    systems = list(synthese.PROBLEM_SYSTEMS)
    allergens = list(synthese.ALLERGEN_SYSTEMS)
    per_document = 4
    failures = []
    for start in range(0, max(len(kinds), len(types)), per_document):
        turn = range(start, start + per_document)
        data = {
            "problems": [{"code": PROBLEM_CODES[systems[i % len(systems)]][0], "system": systems[i % len(systems)],
                          "display": f"Problème {i}", "kind": kinds[i % len(kinds)]} for i in turn],
            "allergies": [{"display": f"Allergie {i}", "type": types[i % len(types)],
                           "code": ALLERGEN_CODES[allergens[i % len(allergens)]][0],
                           "system": allergens[i % len(allergens)]} for i in turn],
        }
        report = service.validate(service.build_document("synthese_medicale", PATIENT, AUTHOR, data).cda)
        if not report.valid or unexpected_warnings(report):
            failures.append((data, [e.message for e in report.errors[:3]], unexpected_warnings(report)[:3]))
    assert failures == []


@pytest.mark.parametrize(("item", "field", "code"), [
    ({"problems": [{"code": "E11.9", "display": "Diabète", "kind": "73211009"}]}, "data.problems[0].kind",
     "code_not_in_value_set"),
    ({"problems": [{"code": "E11.9", "display": "Diabète", "system": "2.16.840.1.113883.6.1"}]},
     "data.problems[0].system", "code_system_not_allowed"),
    ({"problems": [{"code": "E11 9", "display": "Diabète"}]}, "data.problems[0].code", "code_invalid"),
    ({"problems": [{"display": "Diabète"}]}, "data.problems[0].code", "code_required"),
    ({"allergies": [{"display": "Pénicilline", "type": "ALG"}]}, "data.allergies[0].type", "code_not_in_value_set"),
    ({"allergies": [{"display": "Pénicilline", "code": "764146007", "system": "CIM-10"}]},
     "data.allergies[0].system", "code_system_not_allowed"),
    ({"allergies": [{"display": "Pénicilline", "system": "SNOMED CT"}]}, "data.allergies[0].system",
     "code_required"),
    ({"treatments": [{"name": "Metformine", "code": "A10BA02", "system": "ATC"}]}, "data.treatments[0].system",
     "code_system_not_allowed"),
    ({"treatments": [{"name": "Metformine", "atc": {"code": "A10BA02"}}]}, "data.treatments[0].atc",
     "code_invalid"),
    ({"procedures": [{"code": "HHFA016", "display": "Appendicectomie", "system": "CIM-10"}]},
     "data.procedures[0].system", "code_system_not_allowed"),
    ({"devices": [{"display": "Stimulateur", "code": "J0105", "system": "SNOMED CT"}]}, "data.devices[0].system",
     "code_system_not_allowed"),
])
def test_a_synthese_code_outside_its_value_set_or_terminology_is_refused_on_its_field(
        service: CdaService, item: dict[str, Any], field: str, code: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        service.build_document("synthese_medicale", PATIENT, AUTHOR, item)
    assert [(e.field, refused.value.code) for e in refused.value.errors] == [(field, code)]


def test_the_synthese_codes_are_the_kit_s(service: CdaService) -> None:
    """The codes the volet fixes carry the system and display of the kit's value set, and each terminology the
    agent names has the OID the kit's IPS-FR example writes under that codeSystemName."""
    data = {"problems": [{"code": "E11.9", "display": "Diabète de type 2"}],
            "allergies": [{"display": "Pénicilline", "type": "416098002"}],
            "treatments": [{"name": "Metformine", "cis": "60234100"}]}
    cda = etree.fromstring(service.build_document("synthese_medicale", PATIENT, AUTHOR, data).cda)
    hl7 = "{urn:hl7-org:v3}"
    kinds = {(c.get("code"), c.get("codeSystem"), c.get("displayName"))
             for c in cda.iterfind(f".//{hl7}observation/{hl7}code")}
    value_sets = service.context.value_sets
    for name, code in (("JDV_ProblemCodes_CISIS", "282291009"),
                       ("JDV_TypeEvenementIndesirablePrevisible_CISIS", "416098002")):
        found = value_sets.get(name).find(code)
        assert found is not None and (found.code, found.system, found.display) in kinds
    drug = value_sets.get("JDV_HL7_ActSubstanceAdministrationCode_CISIS").find("DRUG")
    administration = cda.find(f".//{hl7}substanceAdministration/{hl7}code")
    assert drug is not None and administration is not None
    assert (administration.get("code"), administration.get("codeSystem")) == (drug.code, drug.system)

    kit = service.context.value_sets.kit_dir
    assert kit is not None
    example = etree.parse(str(kit / "ExemplesCDA" / "IPS-FR_2024.01.xml")).getroot()
    written = {(e.get("codeSystemName"), e.get("codeSystem")) for e in example.iter() if e.get("codeSystemName")}
    named = {name for name, _ in written}
    for terminology in TERMINOLOGIES.values():
        if terminology.name in named:
            assert (terminology.name, terminology.oid) in written, terminology
    assert {"CIM-10", "CCAM", "CIS", "ATC", "EMDN", "SNOMED CT"} <= named


# -- mesures de l'enfant ----------------------------------------------------------------------------------------
@examples(8)
@given(data=st.data())
def test_generated_child_measures_are_valid(service: CdaService, data: st.DataObject) -> None:
    patient = data.draw(patients(born_between=(date(2015, 1, 1), date(2025, 6, 1))))
    moment = data.draw(instants(datetime(2025, 6, 2, tzinfo=UTC)))
    body = {"measured_at": when_text(moment, date_only=data.draw(st.booleans())), **data.draw(measures(child=True))}
    optional(data.draw, body, "title", FREE_TEXT)
    check(service, "mesures_enfant", patient, data.draw(authors(service)), body)


# -- certificats de santé (CS9, CS24, CS8) ----------------------------------------------------------------------
@st.composite
def parents(draw: st.DrawFn, service: CdaService, *, mother: bool = False) -> list[dict[str, Any]]:
    relations = codes_of(service, "JDV_HL7_PersonalRelationshipRoleType_CISIS")
    count = draw(st.integers(1, 2))
    out = []
    for index in range(count):
        relation = "MTH" if mother and index == 0 else draw(st.sampled_from(relations))
        parent: dict[str, Any] = {"relation": relation, "profession": concept(
            draw(st.sampled_from(codes_of(service, "JDV_Profession_CISIS"))), draw(st.booleans()))}
        if index == 0 or draw(st.booleans()):
            parent["birth_date"] = draw(st.dates(date(1960, 1, 1), date(2006, 1, 1))).isoformat()
        if (mother and index == 0) or draw(st.booleans()):
            parent["family"] = draw(NAME).strip() or "MARTIN"
            parent["given"] = draw(GIVEN)
        if draw(st.booleans()):
            parent["activity"] = concept(draw(st.sampled_from(codes_of(service, "JDV_Activite_CISIS"))), False)
        out.append(parent)
    return out


def some(draw: st.DrawFn, service: CdaService, name: str, max_size: int = 3) -> list[str]:
    return draw(st.lists(st.sampled_from(codes_of(service, name)), max_size=max_size, unique=True))


@st.composite
def common_cse(draw: st.DrawFn, service: CdaService, kind: str) -> dict[str, Any]:
    """What CS8, CS9 and CS24 share: children at home, vaccinations, treatments, care plan."""
    vaccines = {"cse_cs8": "JDV_VaccinCSE8_CISIS", "cse_cs9": "JDV_VaccinCSE9_CISIS",
                "cse_cs24": "JDV_VaccinCSE24_CISIS"}[kind]
    plan = "JDV_Rencontre_CS8_CISIS" if kind == "cse_cs8" else "JDV_Rencontre_CS9_CS24_CISIS"
    data: dict[str, Any] = {
        "vaccinations": [{"atc": c, **({"rank": draw(st.integers(1, 4))} if draw(st.booleans()) else {}),
                          **({"lot": draw(st.from_regex(r"\A[A-Z0-9]{2,12}\Z"))} if draw(st.booleans()) else {}),
                          **({"date": draw(st.dates(date(2024, 1, 1), date(2025, 12, 31))).isoformat()}
                             if draw(st.booleans()) else {})}
                         for c in some(draw, service, vaccines)],
        "care_plan": [{"code": c} for c in some(draw, service, plan, 2)],
    }
    if draw(st.booleans()):
        data["treatments"] = [{"atc": draw(st.sampled_from(["J06BD", "A11CC05", "B03AA"])),
                               "display": draw(FREE_TEXT)}]
    if kind == "cse_cs8" or draw(st.booleans()):  # required by the CS8 (its builder says so with a 422)
        data["children_at_home"] = draw(st.integers(0 if kind == "cse_cs8" else 1, 8))
    return data


@st.composite
def cs9_cs24_data(draw: st.DrawFn, service: CdaService, kind: str) -> dict[str, Any]:
    history = "JDV_AntecedentsCSE9_CISIS" if kind == "cse_cs9" else "JDV_AntecedentsCSE24_CISIS"
    exam = date(2025, 1, 10) if kind == "cse_cs9" else date(2026, 4, 10)
    childcare = draw(st.booleans())
    data: dict[str, Any] = {
        **draw(common_cse(service, kind)),
        "exam_date": exam.isoformat(), "parents": draw(parents(service)), "childcare": childcare,
        "measures": draw(measures(child=True)),
        "neurodevelopment": concept(draw(st.sampled_from(
            codes_of(service, "JDV_ReperageTroubleNeurodeveloppement_CISIS"))), draw(st.booleans())),
        "domestic_accidents": [{"code": c} for c in some(draw, service, "JDV_CauseAccidentDom_CISIS")],
        "history": [{"code": c} for c in some(draw, service, history)],
        "development": [{"code": c, **draw(st.sampled_from([{"value": True}, {"value": False},
                                                            {"value": 14, "unit": "mo"}]))}
                        for c in some(draw, service, "JDV_DeveloppementPsychomoteur_CS24_CISIS", 4)],
    }
    if childcare and draw(st.booleans()):
        data["childcare_type"] = concept(draw(st.sampled_from(codes_of(service, "JDV_TypeGarde_CISIS"))), False)
    optional(draw, data, "breastfeeding_exclusive_weeks", st.integers(0, 40))
    optional(draw, data, "breastfeeding_mixed_weeks", st.integers(0, 40))
    if kind == "cse_cs24":
        data["premature"] = draw(st.booleans())
        data["screens"] = concept(draw(st.sampled_from(codes_of(service, "JDV_EnfantExposeAuxEcrans_CS24_CISIS"))),
                                  False)
    return data


@examples(6)
@given(data=st.data())
def test_generated_cs9_are_valid(service: CdaService, data: st.DataObject) -> None:
    child = data.draw(patients(born_between=(date(2024, 3, 1), date(2024, 5, 1))))
    check(service, "cse_cs9", child, data.draw(authors(service)), data.draw(cs9_cs24_data(service, "cse_cs9")))


@examples(6)
@given(data=st.data())
def test_generated_cs24_are_valid(service: CdaService, data: st.DataObject) -> None:
    child = data.draw(patients(born_between=(date(2024, 3, 1), date(2024, 5, 1))))
    check(service, "cse_cs24", child, data.draw(authors(service)), data.draw(cs9_cs24_data(service, "cse_cs24")))


def _answers(draw: st.DrawFn, service: CdaService, table: dict[str, tuple[str, str, str, str, str]],
             required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Answers for a CS8 table: each key present or absent (required ones always), typed as the table says."""
    out: dict[str, Any] = {}
    for key, (_, _, _, kind, extra) in table.items():
        if key not in required and not draw(st.booleans()):
            continue
        if kind == "BL":
            out[key] = draw(st.booleans())
        elif kind == "INT":
            out[key] = draw(st.integers(0, 12))
        elif kind == "PQ":
            out[key] = draw(st.integers(1, 180))
        else:
            out[key] = concept(draw(st.sampled_from(codes_of(service, extra))), draw(st.booleans()))
    return out


@st.composite
def cs8_data(draw: st.DrawFn, service: CdaService) -> dict[str, Any]:
    from agent.cda import cse8

    newborn: dict[str, Any] = {"measures": draw(measures(child=True)), "specialised_care": draw(st.booleans())}
    for key in ("apgar_1", "apgar_5", "apgar_10"):
        optional(draw, newborn, key, st.integers(0, 10))
    if draw(st.booleans()):
        newborn["hearing_screening"] = concept(draw(st.sampled_from(
            codes_of(service, cse8.JDV_HEARING))), draw(st.booleans()))
    if draw(st.booleans()):
        newborn["transfer"] = concept(draw(st.sampled_from(codes_of(service, cse8.JDV_TRANSFER))), False)
    if draw(st.booleans()):
        newborn["problems"] = [{"code": "P59.9", "display": "Ictère néonatal, sans précision",
                                "present": draw(st.booleans())}]
    data: dict[str, Any] = {
        **draw(common_cse(service, "cse_cs8")),
        "exam_date": "2026-01-08", "parents": draw(parents(service, mother=True)),
        "mother": {"alcohol": draw(st.integers(0, 20)), "tobacco": draw(st.integers(0, 40)),
                   "other_addiction": draw(st.booleans())},
        "feeding": concept(draw(st.sampled_from(codes_of(service, cse8.JDV_FEEDING))), draw(st.booleans())),
        "tb_family_risk": draw(st.booleans()),
        "pregnancy": _answers(draw, service, cse8.PREGNANCY),
        "antenatal": {**_answers(draw, service, cse8.ANTENATAL, tuple(cse8.ANTENATAL)),  # all required
                      "hbs": draw(st.sampled_from(["negative", "positive", "not_done"]))},
        "delivery": _answers(draw, service, cse8.DELIVERY, ("labour", "analgesia", "method")),
        "newborn": newborn,
    }
    if draw(st.booleans()):
        data["coverage"] = concept(draw(st.sampled_from(codes_of(service, cse8.JDV_COVERAGE))), False)
    return data


@examples(6)
@given(data=st.data())
def test_generated_cs8_are_valid(service: CdaService, data: st.DataObject) -> None:
    child = data.draw(patients(born_between=(date(2026, 1, 1), date(2026, 1, 1)), structured_address=True))
    author = data.draw(authors(service, structured_address=True))
    check(service, "cse_cs8", child, author, data.draw(cs8_data(service)))


# -- every code of the header's code lists -----------------------------------------------------------------------
def test_every_code_of_the_header_code_lists_gives_a_valid_document(service: CdaService) -> None:
    """Profession (JDV_J01), sector (J04), facility type (J02), title (J246), sex (J143): every code once, in N1
    text documents (the cheapest to check: XSD and structuration minimale, which check these codes)."""
    lists = {name: codes_of(service, name) for name in (
        "JDV_J01_XdsAuthorSpecialty_CISIS", "JDV_J04_XdsPracticeSettingCode_CISIS",
        "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS", "JDV_J246_Titre_CISIS")}
    sexes = ["M", "F", "U"]
    patient = {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "birth_name": "PAT-TROIS",
               "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28", "birth_place": "51215"}
    body = {"content_base64": base64.b64encode(b"Compte rendu").decode(), "type_code": "11488-4",
            "title": "Compte rendu", "service_start": "2026-01-05T10:00:00+01:00"}
    failures = []
    for turn in range(max(len(v) for v in lists.values())):
        pick = {name: values[turn % len(values)] for name, values in lists.items()}
        author = {"rpps": "01234567897", "family": "MULLER", "given": "Charles",
                  "profession_code": pick["JDV_J01_XdsAuthorSpecialty_CISIS"],
                  "title": pick["JDV_J246_Titre_CISIS"],
                  "organisation": {"id": "1750803447", "name": "Cabinet",
                                   "sector_code": pick["JDV_J04_XdsPracticeSettingCode_CISIS"],
                                   "facility_code": pick["JDV_J02_XdsHealthcareFacilityTypeCode_CISIS"]}}
        try:
            built = service.build_document("n1", {**patient, "sex": sexes[turn % 3]}, author, body)
        except InvalidInput as refused:
            failures.append((pick, refused.message, [e.message for e in refused.errors]))
            continue
        report = service.validate(built.cda)
        if not report.valid or unexpected_warnings(report):
            failures.append((pick, [e.message for e in report.errors[:3]], unexpected_warnings(report)[:3]))
    assert failures == []


def test_an_address_of_several_lines_keeps_one_additional_locator(service: CdaService) -> None:
    """Found by the generated inputs: three lines and a postal code gave two additionalLocator (CI-SISAddr: one)."""
    patient = {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "birth_name": "PAT-TROIS",
               "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28", "birth_place": "51215",
               "address": {"lines": ["Résidence Les Pins", "Bâtiment B", "12 bis rue de l'Église"],
                           "postal_code": "92100", "city": "BOULOGNE"}}
    author = {"rpps": "01234567897", "family": "MULLER", "given": "Charles",
              "organisation": {"id": "1750803447", "name": "Cabinet"}}
    body = {"content_base64": base64.b64encode(b"Compte rendu").decode(), "type_code": "11488-4",
            "title": "Compte rendu", "service_start": "2026-01-05T10:00:00+01:00"}
    built = service.build_document("n1", patient, author, body)
    addr = etree.fromstring(built.cda).find("{urn:hl7-org:v3}recordTarget/{urn:hl7-org:v3}patientRole/"
                                            "{urn:hl7-org:v3}addr")
    assert [(etree.QName(c).localname, c.text) for c in addr] == [
        ("additionalLocator", "Résidence Les Pins, Bâtiment B"), ("houseNumber", "12 bis"),
        ("streetName", "rue de l'Église"), ("postalCode", "92100"), ("city", "BOULOGNE")]
    report = service.validate(built.cda)
    assert report.valid and report.warnings == []


PATIENT = {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "birth_name": "PAT-TROIS",
           "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28", "birth_place": "51215"}
AUTHOR = {"rpps": "01234567897", "family": "MULLER", "given": "Charles",
          "organisation": {"id": "1750803447", "name": "Cabinet"}}
N1_BODY = {"content_base64": base64.b64encode(b"Compte rendu").decode(), "type_code": "11488-4",
           "title": "Compte rendu", "service_start": "2026-01-05T10:00:00+01:00"}


@pytest.mark.parametrize(("patient", "author", "field"), [
    ({**PATIENT, "birth_name": '"MARTIN'}, AUTHOR, "patient.birth_name"),
    ({**PATIENT, "given_names": ["JEAN", ' "Jo"']}, AUTHOR, "patient.given_names[1]"),
    ({**PATIENT, "used_name": '"DUPONT"'}, AUTHOR, "patient.used_name"),
    ({**PATIENT, "used_given": '"Jo'}, AUTHOR, "patient.used_given"),
    (PATIENT, {**AUTHOR, "family": '"MULLER'}, "author.family"),
    (PATIENT, {**AUTHOR, "given": '"Charles"'}, "author.given"),
    (PATIENT, {**AUTHOR, "organisation": {"id": "1750803447", "name": '"Les Tilleuls" cabinet'}},
     "author.organisation.name"),
    (PATIENT, {**AUTHOR, "telecom": "https://exemple.fr/dr-muller"}, "author.telecom"),
    (PATIENT, {**AUTHOR, "organisation": {"id": "1750803447", "name": "Cabinet", "telecom": "https://exemple.fr"}},
     "author.organisation.telecom"),
])
def test_inputs_the_kit_warns_about_are_refused_on_their_field(service: CdaService, patient: dict[str, Any],
                                                               author: dict[str, Any], field: str) -> None:
    """Found by measuring the kit's warnings: a name beginning with a double quote (dtr1-4-EN, a warning of the
    structuration minimale) and an https: telecom (CI-SISTelecom, an error: tel, fax, mailto, http, ftp, mllp
    only) are refused with a 422 naming the field, rather than written into a document the kit flags."""
    with pytest.raises(InvalidInput) as refused:
        service.build_document("n1", patient, author, N1_BODY)
    assert field in [e.field for e in refused.value.errors]


def test_a_parent_named_with_a_leading_quote_is_refused_on_its_field(service: CdaService) -> None:
    """The CS8 mother is the document's informant, in the header the structuration minimale checks (dtr1-4-EN)."""
    data = {"exam_date": "2026-01-08", "parents": [{"relation": "MTH", "family": '"MARTIN', "given": "Anne",
                                                     "birth_date": "1990-01-01"}]}
    with pytest.raises(InvalidInput) as refused:
        service.build_document("cse_cs8", PATIENT, AUTHOR, data)
    assert "data.parents[0].family" in [e.field for e in refused.value.errors]
