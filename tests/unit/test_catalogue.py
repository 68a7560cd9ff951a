"""The Ségur catalogue: codes come from the CI-SIS value sets, destinations follow the seed's lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.domain import catalogue
from agent.domain.catalogue import Level, Profession


def test_keys_are_unique_and_every_n3_has_a_builder() -> None:
    keys = [d.key for d in catalogue.CATALOGUE]
    assert len(keys) == len(set(keys))
    for doc in catalogue.CATALOGUE:
        if doc.level is Level.N3:
            assert catalogue.by_kind(doc.kind) is doc
        else:
            assert doc.format_code == catalogue.FORMAT_N1_PDF


def test_type_codes_are_in_jdv_j07(reference_dir: Path) -> None:
    j07 = reference_dir / "ci-sis" / "jeuxDeValeurs" / "JDV_J07_XdsTypeCode_CISIS.xml"
    codes = set(re.findall(r'code="([^"]+)"', j07.read_text(encoding="utf-8")))
    missing = [d.key for d in catalogue.CATALOGUE if d.type_code not in codes]
    assert missing == []


def test_format_codes_of_structured_documents() -> None:
    assert catalogue.by_kind("vaccination_note").format_code == "urn:asip:ci-sis:vac-note:2021"  # type: ignore[union-attr]
    assert catalogue.by_kind("mesures_enfant").format_code == "urn:ans:ci-sis:cse-mde:2023"  # type: ignore[union-attr]
    assert catalogue.by_kind("synthese_medicale").format_system == catalogue.OID_FORMAT_CODES_IHE  # type: ignore[union-attr]


@pytest.mark.parametrize(("key", "profession", "dmp", "mss"), [
    ("synthese_medicale", Profession.MEDECIN, True, True),
    ("lettre_adressage", Profession.MEDECIN, False, True),  # M only: never to the DMP automatically
    ("note_vaccination", Profession.MEDECIN, True, False),
    ("note_vaccination", Profession.PHARMACIEN, True, True),
    ("mesures_enfant", Profession.MEDECIN, True, False),
    ("prescription_biologie", Profession.SAGE_FEMME, True, False),
    ("cr_entretien_pharma", Profession.PHARMACIEN, True, True),
    ("cse_cs9", Profession.MEDECIN, False, False),
])
def test_default_destinations(key: str, profession: Profession, dmp: bool, mss: bool) -> None:
    doc = catalogue.by_key(key)
    assert doc is not None
    route = catalogue.default_destinations(doc, profession)
    assert (route.dmp, route.mss) == (dmp, mss)


def test_lookups() -> None:
    assert catalogue.n1_type("CERT_DECL").key == "certificat"  # type: ignore[union-attr]
    assert catalogue.by_type_code("87273-9").kind == "vaccination_note"  # type: ignore[union-attr]
    assert catalogue.by_type_code("nope") is None
    assert catalogue.cse_mss_recipient("cse_cs9") == catalogue.CSE_MSS_ADDRESS
    assert catalogue.cse_mss_recipient("cse_cs8") is None
    assert catalogue.cse_mss_recipient("cse_cs24", "Autre@cse.fr") == "autre@cse.fr"
    assert catalogue.cse_mss_recipient("cse_cs9", "") is None


@pytest.mark.parametrize(("age_days", "exam", "kind"), [
    (7, None, "cse_cs8"), (280, None, "cse_cs9"), (730, None, "cse_cs24"),
    (400, "9m", "cse_cs9"),  # the LGC says which exam: it wins over the age
    (120, None, None), (1500, None, None),
])
def test_cse_due_for_the_child_exam(age_days: int, exam: str | None, kind: str | None) -> None:
    from datetime import date, timedelta

    birth = date(2024, 3, 1)
    notice = catalogue.cse_due_for("59283-2", birth, birth + timedelta(days=age_days), exam)
    assert (notice.kind if notice else None) == kind
    if notice is not None:
        assert notice.title in {"Certificat de santé du 8ème jour", "Certificat de santé du 9ème mois",
                                "Certificat de santé du 24ème mois"}
        assert (notice.mss_recipient is not None) == (kind != "cse_cs8")


def test_other_documents_raise_no_cse_notice() -> None:
    from datetime import date

    assert catalogue.cse_due_for("11488-4", date(2024, 3, 1), date(2024, 3, 8)) is None
