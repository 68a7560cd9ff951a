"""The CNDA's DMP test book read where it is, and filtered for a perimeter as the CNDA's plan would be."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import InvalidInput
from agent.homologation.book import Book, Perimeter, load_book, plan
from agent.homologation.declarations import TO_COMPLETE, answers


@pytest.fixture(scope="module")
def book(reference_dir: Path) -> Book:
    directory = reference_dir / "cnda" / "dmp"
    if not (directory / "Phase_2_Tests.csv").is_file():
        pytest.skip("le cahier de test CNDA n'est pas dans le kit de référence")
    return load_book(directory)


# A médecin de ville: LGC feeding and consulting the DMP, indirect authentication (structure certificate, the CPS
# holder named in the VIHF), INS through INSi, the doctor often the médecin traitant.
VILLE = Perimeter.parse("alimentation,consultation", "indirecte", options=["médecin traitant", "INSI", "LGC"])


def test_the_book_is_read_by_column_names(book: Book) -> None:
    codes = {t.code: t for t in book.tests}
    assert len(book.tests) > 100 and len(book.prerequisites) > 30 and len(book.declarations) > 80
    feed = codes["2.1-160"]
    assert (feed.transaction_key, feed.auth, feed.profile, feed.mode) == (
        "TD2.1", "Indirecte", "alimentation", "Normal")
    assert codes["3.1-240"].return_code == "DMPAccessForbidden" and codes["3.1-240"].expected == "ERREUR"
    assert codes["0.2-060"].transaction_key == "TD0.2"  # the book leaves its Transaction empty
    assert codes["2.2-720"].transaction_key == "TD2.2"  # written "TD2.2" there, "TD 2.2" elsewhere


def test_plan_for_a_medecin_de_ville_in_indirect_authentication(book: Book) -> None:
    result = plan(book, VILLE)
    codes = {t.code for t in result.tests}
    expected = {
        "0.1-050", "0.1-210",  # server certificate; indirect authentication by the structure certificate
        "0.1-060",  # context data through INSi
        "0.2-010", "0.2-020", "0.2-030",  # TD0.2: no DMP, closed, not authorised
        "2.1-011", "2.1-050", "2.1-060", "2.1-160", "2.1-205", "2.1-970",  # feeds, masking, by the ES, replacement
        "3.1-010", "3.1-040", "3.1-110",  # searches (médecin traitant)
        "3.1-900",  # state of DMP documents kept in the LGC
        "3.2-020", "3.2-400",  # retrievals
        "3.3-080", "3.3-540",  # deletion
    }
    assert expected <= codes, sorted(expected - codes)
    excluded = {
        "0.1-110", "2.1-140", "2.1-950",  # direct authentication (CPS in the VIHF as the authenticated one)
        "0.1-190", "2.1-010",  # Pro Santé Connect
        "0.5-010", "0.1-220", "3.1-240", "LDRM-01",  # centre-15
        "3.1-500", "3.2-600", "0.1-400",  # AIR
        "3.1-150", "1.3a-040",  # bris de glace
        "0.1-300",  # connexion secrète
        "2.1-800", "3.2-800",  # imagerie, not declared
        "2.1-180", "2.1-710", "TNR-01",  # EJ/EG, vaccination, non-regression: not declared
    }
    assert not excluded & codes, sorted(excluded & codes)
    prerequisites = {p.code for p in result.prerequisites}
    assert {"PRE_GEN", "PRE_IND", "PRE_TD0.2", "PRE_ALIM_N1", "PRE_ALIM_SUPPR"} <= prerequisites
    assert not {"PRE_DIR_MED", "PRE_AIR", "PRE_TD0.5_C15", "PRE_MODE_CNXSC", "PRE_ALIM_EJEG"} & prerequisites
    declarations = {d.code.strip() for d in result.declarations}
    assert {"EX_GEN-1180", "EX_0.2-1100", "EX_2.1-1260"} <= declarations
    assert "EX_AIR-010" not in declarations


def test_declaring_more_brings_their_cases_in(book: Book) -> None:
    wider = Perimeter.parse("alimentation,consultation", "indirecte,directe,psc", "bdg",
                            options=["médecin traitant", "vac"])
    codes = {t.code for t in plan(book, wider).tests}
    assert {"0.1-110", "2.1-140", "0.1-190", "2.1-010", "3.1-150", "2.1-710", "2.1-750"} <= codes
    assert "0.1-340" not in codes  # BDG et Connexion secrète: both modes needed
    consultation_only = {t.code for t in plan(book, Perimeter.parse("consultation")).tests}
    assert "2.1-011" not in consultation_only and "3.2-020" in consultation_only and "0.2-010" in consultation_only


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(InvalidInput):
        Perimeter.parse("alimentation,ordonnance")


def test_declarations_name_what_implements_them_or_leave_them_to_the_publisher(book: Book) -> None:
    rows = {a.declaration.code.strip(): a for a in answers(book.declarations)}
    assert rows["EX_2.1-1260"].supported and "soap" in rows["EX_2.1-1260"].implemented_by
    assert rows["EX_0.X-1070"].implemented_by == "[dmp] ca_file"
    assert rows["EX_GEN-1190"].answer == TO_COMPLETE  # the user documentation is the publisher's


def test_relais_homologation_plan_writes_the_plan_as_csv(book: Book, reference_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RELAIS_REFERENCE", str(reference_dir))
    out = tmp_path / "plan.csv"
    config = tmp_path / "relais.toml"
    config.write_text("")
    assert main(["homologation", "plan", "--config", str(config), "--data-dir", str(tmp_path / "data"),
                 "--profile", "alimentation,consultation", "--auth", "indirecte", "--option", "médecin traitant",
                 "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Tests (phase 2)" in printed and "2.1-160" in printed and "0.1-110" not in printed
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    tests = [r for r in rows if r["Phase"] == "Test"]
    assert {"2.1-160", "0.2-010"} <= {r["Code"] for r in tests}
    assert all(r["Authentification"] in ("Tous", "Indirecte") for r in tests)
    assert main(["homologation", "declarations", "--config", str(config), "--data-dir", str(tmp_path / "data"),
                 "--csv", str(tmp_path / "declarations.csv")]) == 0
    assert "à compléter par l'éditeur" in capsys.readouterr().out
