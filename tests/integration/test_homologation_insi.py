"""`relais homologation plan|run --service insi`: the CNDA's INSi cases played against the INSi simulator (the CNDA's
test identities read from the reference kit), their frames and accounts in one folder per case, the results table;
and the same run against a "configured" platform, where the simulator-only steps are skipped and say so."""

from __future__ import annotations

import csv
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from agent.cli import main
from agent.cli.homologation_insi import CASES, play_insi_cases
from agent.config import load_config
from agent.homologation.xlsx import RESULT_COLUMNS
from relais_sandbox.host import SandboxContext
from relais_sandbox.insi import InsiSimulator
from relais_sandbox.pki import SandboxPki

PLAYABLE = ["1.01", "1.07", "2.02", "2.02 bis", "2.03", "3.01", "3.02", "WS_INS4-lot1", "WS_INS4-lot2",
            "WS_INS4-lot3"]
LGC = ["1.02", "1.03", "2.01"]


@pytest.fixture
def material(reference_dir: Path) -> Path:
    if not (reference_dir / "cnda" / "insi" / "test1_01.json").is_file():
        pytest.skip("le matériel de test INSi du CNDA n'est pas dans le kit de référence")
    return reference_dir


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def test_relais_homologation_plan_service_insi_lists_the_cases(material: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RELAIS_REFERENCE", str(material))
    config = tmp_path / "relais.toml"
    config.write_text("")
    assert main(["homologation", "plan", "--service", "insi", "--config", str(config), "--data-dir",
                 str(tmp_path / "data"), "--csv", str(tmp_path / "plan.csv")]) == 0
    printed = capsys.readouterr().out
    assert "Cas INSi du CNDA : 13" in printed and "1.07" in printed
    rows = _csv(tmp_path / "plan.csv")
    assert [r["Code test"] for r in rows] == [c.code for c in CASES]
    how = {r["Code test"]: r["Jeu"] for r in rows}
    assert all(how[c] == "joué par Relais" for c in PLAYABLE)
    assert all(how[c].startswith("à jouer depuis le LGC") for c in LGC)


def test_relais_homologation_run_service_insi_writes_the_case_folders(material: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RELAIS_REFERENCE", str(material))
    config = tmp_path / "relais.toml"
    config.write_text("")
    out = tmp_path / "preuves"
    assert main(["homologation", "run", "--service", "insi", "--only", "3.01", "1.03", "--config", str(config),
                 "--data-dir", str(tmp_path / "data"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3.01\tconforme" in printed and "1.03\tnon joué" in printed
    assert sorted(p.name for p in out.iterdir()) == ["3.01", "resultats.csv", "resultats.xlsx"]
    assert [r["Résultat"] for r in _csv(out / "resultats.csv")] == ["OK", "Non joué"]


async def test_insi_cnda_cases_played_against_the_simulator_with_their_frames_and_results(
        material: Path, tmp_path: Path) -> None:
    out = tmp_path / "preuves-insi"
    outcomes = await play_insi_cases(None, material, out)
    assert [(o.case.code, o.played, o.passed) for o in outcomes] == [
        (c.code, c.code in PLAYABLE, c.code in PLAYABLE) for c in CASES], [o.account for o in outcomes]

    def index(folder: str) -> list[dict[str, str]]:
        return _csv(out / folder / "index.csv")

    # 1.01: one search by carte Vitale, Ruth's INS in the answer, the card's serial number in the request.
    (vitale,) = index("1.01")
    assert (vitale["transaction"], vitale["code_test"]) == ("INSi rechercher (carte Vitale)", "1.01")
    assert b"468929507" in (out / "1.01" / vitale["requete"]).read_bytes()
    assert b"2770763220829" in (out / "1.01" / vitale["reponse"]).read_bytes()
    # 1.07: the injected technical error, then the CR 01, then other criteria: at least three exchanges.
    requery = index("1.07")
    assert len(requery) >= 3 and "fault" in requery[0]["resultat"]
    # 3.01: one verification; 3.02: the wrong pair does not verify; the lots: one request per identity.
    assert len(index("3.01")) == 1
    assert "n'est pas qualifiée" in (out / "3.02" / "compte-rendu.txt").read_text(encoding="utf-8")
    assert len(index("WS_INS4-lot3")) == 4
    assert (out / "2.02_bis" / "compte-rendu.txt").is_file()
    for code in LGC:
        assert not (out / code).exists()
    rows = _csv(out / "resultats.csv")
    assert list(rows[0]) == RESULT_COLUMNS
    assert [(r["Code test"], r["Résultat"]) for r in rows] == [
        (c.code, "OK" if c.code in PLAYABLE else "Non joué") for c in CASES]
    assert rows[1]["Commentaire éditeur"].startswith("À jouer depuis le LGC")
    with zipfile.ZipFile(out / "resultats.xlsx") as workbook:
        sheet = etree.fromstring(workbook.read("xl/worksheets/sheet1.xml"))
    ns = {"s": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    table = [[t.text or "" for t in row.iterfind("s:c/s:is/s:t", ns)]
             for row in sheet.iterfind("s:sheetData/s:row", ns)]
    assert table[0] == RESULT_COLUMNS and len(table) == len(CASES) + 1


@pytest.fixture
async def platform(tmp_path: Path, material: Path) -> AsyncIterator[dict[str, Any]]:
    """An INSi "test platform" the run knows only by configuration: the simulator, started apart."""
    ctx = SandboxContext(tmp_path / "platform", SandboxPki(tmp_path / "platform"))
    sim = InsiSimulator(reference_dir=material)
    endpoint = await sim.start(ctx)
    structure = ctx.pki.issue("structure", common_name="Cabinet (INSI-AUTO)", client=True)
    yield {"endpoint": endpoint, "structure": structure, "sim": sim}
    await sim.stop()


async def test_against_a_configured_platform_the_simulator_only_steps_are_skipped_and_say_so(
        platform: dict[str, Any], material: Path, tmp_path: Path) -> None:
    endpoint, structure = platform["endpoint"], platform["structure"]
    path = tmp_path / "relais.toml"
    path.write_text(f"""
[insi]
url = "{endpoint['url']}"
ca_file = "{endpoint['ca_file']}"
client_cert = "{structure.cert_path}"
client_key = "{structure.key_path}"
structure_id = "10B0152872"
structure_cert = "{structure.cert_path}"
structure_key = "{structure.key_path}"
billing_id = "123456789"
allow_test_oids = true

[homologation]
platform = "configured"
""", encoding="utf-8")
    config = load_config(path)
    out = tmp_path / "preuves"
    outcomes = await play_insi_cases(None, material, out, config=config)
    by_code = {o.case.code: o for o in outcomes}
    # The answer injector is the CNDA's on its platform: skipped, saying what the integrator must do.
    assert not by_code["1.07"].played
    skipped = by_code["1.07"].account
    assert "non jouée sur la plateforme configurée ; l'intégrateur" in skipped and "REP_CR01" in skipped
    assert platform["sim"].injection is None
    # Cases signed by a CPS are the LGC's (the agent alone holds the structure certificate only).
    assert not by_code["1.01"].played and "CPS" in by_code["1.01"].account
    played = [o for o in outcomes if o.played]
    assert {o.case.code for o in played} == {"2.02 bis", "2.03", "3.01", "3.02", "WS_INS4-lot1", "WS_INS4-lot2",
                                             "WS_INS4-lot3"}
    assert all(o.passed for o in played), [o.account for o in played]
    # Every call went over mutual TLS, signed by the configured structure: no /_sandbox route was used.
    assert {c["channel"] for c in platform["sim"].calls} == {"mtls"}
    assert "la plateforme INSi configurée" in (out / "3.01" / "compte-rendu.txt").read_text(encoding="utf-8")
    rows = {r["Code test"]: r for r in _csv(out / "resultats.csv")}
    assert rows["1.07"]["Résultat"] == "Non joué" and "REP_CR01" in rows["1.07"]["Commentaire éditeur"]
