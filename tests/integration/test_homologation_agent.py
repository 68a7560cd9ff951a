"""The frames journal inside a running agent (`relais demo`'s simulators): build() taps the DMP, INSi and MSSanté
transports, the switch and the test code of `relais frames` reach it through the store, and the CLI exports."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.cli import main
from agent.cli.wiring import DemoOptions
from agent.mss import smtp
from agent.store import frames as repo
from relais_sandbox.identities import PAT_TROIS
from relais_sandbox.pki import SandboxPki
from tests.support.ins import obtain_ins

CORRESPONDENT = "jeanne.martin@medecin.demo.mssante.fr"


@pytest.fixture
def sandbox_state(tmp_path: Path) -> Path:
    return tmp_path / "sandbox-state"


@pytest.fixture
async def agent(start_agent: Any, sandbox_state: Path) -> Any:
    creds = SandboxPki(sandbox_state).issue("structure", common_name="Cabinet de test", client=True)
    return await start_agent(
        demo=DemoOptions(cards="cps", tray=False), sandbox={"state_dir": str(sandbox_state)},
        insi={"structure_id": "10B0152872", "structure_cert": str(creds.cert_path),
              "structure_key": str(creds.key_path)},
        homologation={"frames": True, "test_code": "0.2-030"}, mss={"ack_poll_seconds": 3600.0})


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str,
               body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with http.request(method, agent.url + path, json=body, headers=agent.headers()) as response:
        return response.status, await response.json(content_type=None)


async def test_an_agent_keeps_the_frames_of_the_dmp_insi_and_mssante(
        agent: Any, http: aiohttp.ClientSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = agent.services.frames
    assert journal is not None and journal.enabled
    status, _ = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})  # no DMP call before the PIN
    assert status == 200
    await obtain_ins(http, agent, PAT_TROIS)  # the DMP is asked only about an INS INSi gave (EX_GEN-1530)
    status, access = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/access?identity_status=QUAL")
    assert status == 200, access
    status, found = await call(http, agent, "POST", "/v1/ins/search", {"source": "traits", "traits": {
        "birth_name": "lefèvre", "given_names": ["hélène"], "sex": "f", "birth_date": "1955-01-30"}})
    assert status == 200, found
    sender = agent.services.mss.sender
    assert sender is not None and sender.settings.smtp.frames is journal
    assert sender.settings.imap is not None and sender.settings.imap.frames is journal  # reports read back too
    message = (f"From: <{sender.settings.sender}>\r\nTo: <{CORRESPONDENT}>\r\nSubject: essai\r\n"
               "Message-ID: <frames-test@relais>\r\n\r\nCorps du message d'essai.\r\n").encode()
    await smtp.submit(sender.settings.smtp, sender.settings.sender, [CORRESPONDENT], message, "<frames-test@relais>")
    await journal.flush()

    rows = await agent.services.db.read(lambda c: c.execute(
        "SELECT service, transaction_name, test_code, outcome FROM frames ORDER BY seq").fetchall())
    seen = {(r[0], r[1]) for r in rows}
    assert ("dmp", "TD0.2") in seen and ("insi", "INSi rechercher (traits)") in seen
    assert ("mss", "MSSanté envoi") in seen
    assert {r[2] for r in rows} == {"0.2-030"}
    mss_outcome = next(r[3] for r in rows if (r[0], r[1]) == ("mss", "MSSanté envoi"))
    assert mss_outcome.startswith("SMTP 250")

    # An LGC playing a case through its own screens files the next frames under the case's code.
    status, state = await call(http, agent, "PUT", "/v1/homologation/frames", {"test_code": "3.1-010"})
    assert status == 200 and state["test_code"] == "3.1-010" and state["enabled"] is True
    status, _ = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/access?identity_status=QUAL")
    await journal.flush()
    filed = await agent.services.db.read(lambda c: c.execute(
        "SELECT transaction_name FROM frames WHERE test_code = '3.1-010' AND service != 'mss'").fetchall())
    assert [r[0] for r in filed] == ["TD0.2"]
    status, problem = await call(http, agent, "PUT", "/v1/homologation/frames", {"test_code": "../../etc"})
    assert status == 422 and problem["errors"][0]["field"] == "test_code"
    status, state = await call(http, agent, "PUT", "/v1/homologation/frames", {"test_code": "0.2-030"})
    assert status == 200

    # `relais frames off` writes the switch into the store; the running agent follows it.
    data_dir = str(agent.services.config.data_dir)
    config = tmp_path / "relais.toml"
    config.write_text('[store]\nmaster_key = "file"\n')
    common = ["--config", str(config), "--data-dir", data_dir]
    assert main(["frames", "off", *common]) == 0
    await journal.refresh()
    assert not journal.enabled
    count = (await agent.services.db.read(repo.count))[0]
    # The agent reads its reports (IMAP) on its own schedule: those sessions are filed under whichever code is set.
    elsewhere = (await agent.services.db.read(lambda c: c.execute(
        "SELECT COUNT(*) FROM frames WHERE test_code != '0.2-030'").fetchone()))[0]
    status, _ = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/access?identity_status=QUAL")
    await journal.flush()
    assert (await agent.services.db.read(repo.count))[0] == count
    assert main(["frames", "test-code", "2.1-010", *common]) == 0
    assert main(["frames", "status", *common]) == 0
    printed = capsys.readouterr().out
    assert "désactivé" in printed and "2.1-010" in printed

    out = tmp_path / "preuves"
    assert main(["frames", "export", "--test", "0.2-030", "--since", "2000-01-01", *common, str(out)]) == 0
    with (out / "index.csv").open(encoding="utf-8") as handle:
        index = list(csv.DictReader(handle, delimiter=";"))
    assert len(index) == count - elsewhere  # all but the exchanges filed under 3.1-010
    assert {r["code_test"] for r in index} == {"0.2-030"}
    mss = next(r for r in index if r["transaction"] == "MSSanté envoi")
    dialog = (out / mss["requete"]).read_bytes()
    assert b"Corps du message d'essai." in dialog and dialog.lower().startswith(b"mail from:")
    assert not [line for line in dialog.split(b"\r\n") if line.upper().startswith(b"AUTH")]  # no credential
    assert b"250" in (out / mss["reponse"]).read_bytes()
