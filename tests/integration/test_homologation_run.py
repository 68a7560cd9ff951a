"""`relais homologation run`: CNDA cases played against the DMP simulator, their frames and accounts in the CNDA's
folder tree, and the results in the test book's columns."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from agent.cli.homologation_run import play_cases
from agent.config import load_config
from agent.errors import ConfigError
from agent.homologation.xlsx import RESULT_COLUMNS
from relais_sandbox.dmp import DmpSimulator
from relais_sandbox.host import SandboxContext
from relais_sandbox.pki import SandboxPki

RUTH = "277076322082910"  # the book's patient 59, NESSI Ruth Isabelle: "pour Test INSI en mode RECVITALE", fed


@pytest.fixture
def book(reference_dir: Path) -> Path:
    if not (reference_dir / "cnda" / "dmp" / "Phase_2_Tests.csv").is_file():
        pytest.skip("le cahier de test CNDA n'est pas dans le kit de référence")
    return reference_dir


async def test_cdt_0_2_010_0_2_080_0_3_010_2_1_011_2_1_205_3_3_540_played_with_their_frames_and_results(
        book: Path, tmp_path: Path) -> None:
    out = tmp_path / "preuves"
    codes = ["0.2-010", "0.2-080", "0.3-010", "2.1-011", "2.1-205", "3.3-540", "0.2-060", "0.2-070", "3.2-020"]
    outcomes = await play_cases(codes, book, out)
    assert [(o.case.code, o.played, o.passed) for o in outcomes] == [
        (code, code != "3.2-020", code != "3.2-020") for code in codes]

    def index(code: str) -> list[dict[str, str]]:
        with (out / code / "index.csv").open(encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter=";"))

    # 0.2-010: one TD0.2, its request and response kept raw, the answer saying "no DMP" (NF).
    td02 = index("0.2-010")
    assert [(r["transaction"], r["code_test"]) for r in td02] == [("TD0.2", "0.2-010")]
    assert b"PRPA_IN201307UV02" in (out / "0.2-010" / td02[0]["requete"]).read_bytes()
    assert b'queryResponseCode code="NF"' in (out / "0.2-010" / td02[0]["reponse"]).read_bytes()
    # 0.2-080: a NIA never reaches the DMP: no frame, and the account says why.
    assert index("0.2-080") == []
    assert "NIA" in (out / "0.2-080" / "compte-rendu.txt").read_text(encoding="utf-8")
    # 0.3-010: not authorised, TD0.3 AJOUT, authorised; then put back as the book describes the patient.
    assert [r["transaction"] for r in index("0.3-010")] == ["TD0.2", "TD0.3", "TD0.2", "TD0.3"]
    # 3.3-540: fed, found, its entryUUID looked up (TD3.1b), deleted (TD3.3c), no longer found.
    assert [r["transaction"] for r in index("3.3-540")] == ["TD2.1", "TD3.1", "TD3.1", "TD3.3", "TD3.1"]
    assert b"<rim:Value>urn:asip:ci-sis:2010:StatusType:Deleted</rim:Value>" in (
        out / "3.3-540" / index("3.3-540")[3]["requete"]).read_bytes()
    # 2.1-205: two feeds (the second replacing the first) and the searches that found them, in time order.
    assert [r["transaction"] for r in index("2.1-205")] == ["TD2.1", "TD3.1", "TD2.1", "TD3.1"]
    account = (out / "2.1-205" / "compte-rendu.txt").read_text(encoding="utf-8")
    assert "remplacement" in account and "conforme" in account
    # 0.2-060 / 0.2-070: the authorisation state the CNDA sets through Web-PS, set on the simulator, then TD0.2.
    assert b'code="EXPIREE"' in (out / "0.2-060" / index("0.2-060")[0]["reponse"]).read_bytes()
    assert "bloqué" in (out / "0.2-070" / "compte-rendu.txt").read_text(encoding="utf-8")
    # A case the agent cannot play alone gets no folder; the results say what the LGC must capture.
    assert not (out / "3.2-020").exists()
    with (out / "resultats.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    assert list(rows[0]) == RESULT_COLUMNS
    assert [(r["Code test"], r["Résultat"]) for r in rows] == [
        (code, "Non joué" if code == "3.2-020" else "OK") for code in codes]
    assert rows[-1]["Commentaire éditeur"].startswith("Cas à jouer depuis le LGC")
    assert rows[3]["Résultat attendu en retour"] == "OK"
    assert "Écart avec le cahier" in rows[3]["Commentaire éditeur"]  # the simulator's rehearsal says what differs
    # The same table as XLSX (the CNDA works in Excel): inline strings, header first.
    with zipfile.ZipFile(out / "resultats.xlsx") as workbook:
        sheet = etree.fromstring(workbook.read("xl/worksheets/sheet1.xml"))
    ns = {"s": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    table = [[t.text or "" for t in row.iterfind("s:c/s:is/s:t", ns)]
             for row in sheet.iterfind("s:sheetData/s:row", ns)]
    assert table[0] == RESULT_COLUMNS
    assert [(r[1], r[-1]) for r in table[1:]] == [(r["Code test"], r["Résultat"]) for r in rows]


async def test_against_a_configured_dmp_platform_the_book_patients_are_played_by_configuration_alone(
        book: Path, tmp_path: Path) -> None:
    """The CNDA's test platform is only configuration: [dmp] (URL, certificates, test professional) and the
    [homologation] patient_* keys (the book's "Référentiel Patients"). The simulator stands for it here, started
    apart: the run knows nothing of it but its URL and certificates, and uses no /_sandbox route."""
    ctx = SandboxContext(tmp_path / "platform", SandboxPki(tmp_path / "platform"))
    sim = DmpSimulator(book, seed=False)
    endpoint = await sim.start(ctx)
    try:
        path = tmp_path / "relais.toml"
        path.write_text(f"""
[dmp]
url = "{endpoint['url']}"
ca_file = "{endpoint['ca_file']}"
client_cert = "{endpoint['client_cert']}"
client_key = "{endpoint['client_key']}"
structure_cert = "{endpoint['structure_cert']}"
structure_key = "{endpoint['structure_key']}"
structure_id = "1750803447"
source_id = "1.2.250.1.213.1.1.9.99"
demo_rpps = "10001234567"
demo_family_name = "DEMO"
demo_given_name = "Alice"

[homologation]
platform = "configured"
patient_feed = "{RUTH}"
""", encoding="utf-8")
        config = load_config(path)
        out = tmp_path / "preuves"
        codes = ["0.2-010", "0.2-020", "0.2-080", "0.3-010", "2.1-205", "3.3-540", "0.2-060"]
        outcomes = await play_cases(codes, book, out, config=config)
    finally:
        await sim.stop()
    assert [(o.case.code, o.played, o.passed) for o in outcomes] == [
        (c, c != "0.2-060", c != "0.2-060") for c in codes], [o.account for o in outcomes]
    # The authorisation state the simulator sets itself is the CNDA's to set on its platform: skipped, and said.
    skipped = outcomes[-1].account
    assert "non jouée sur la plateforme configurée ; l'intégrateur" in skipped and "Web-PS" in skipped
    assert not (out / "0.2-060").exists()
    # The feeds went to the book's patient 59 (Ruth NESSI), whom the user first authorised (TD0.3), once.
    with (out / "2.1-205" / "index.csv").open(encoding="utf-8") as handle:
        feed = list(csv.DictReader(handle, delimiter=";"))
    assert [r["transaction"] for r in feed] == ["TD0.2", "TD0.3", "TD2.1", "TD3.1", "TD2.1", "TD3.1"]
    sent = (out / "2.1-205" / feed[2]["requete"]).read_bytes()
    assert RUTH.encode() in sent and b"NESSI" in sent
    account = (out / "2.1-205" / "compte-rendu.txt").read_text(encoding="utf-8")
    assert f"la plateforme DMP configurée ({endpoint['url']})" in account and "simulateur" not in account
    with (out / "3.3-540" / "index.csv").open(encoding="utf-8") as handle:
        first = next(csv.DictReader(handle, delimiter=";"))
    assert first["transaction"] == "TD2.1"  # authorised once per run


async def test_a_configured_platform_without_a_patient_to_feed_names_the_key(book: Path, tmp_path: Path) -> None:
    path = tmp_path / "relais.toml"
    path.write_text('[dmp]\nurl = "https://dmp.test.invalid"\ndemo_rpps = "10001234567"\n\n'
                    '[homologation]\nplatform = "configured"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as missing:
        await play_cases(["0.2-010"], book, tmp_path / "out", config=load_config(path))
    assert missing.value.key == "homologation.patient_feed"
