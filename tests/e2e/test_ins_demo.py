"""INSi as a user runs it: `relais sandbox` in its own process, `relais demo --sandbox URL`, driven over HTTP.

The agent's logs (DEBUG) must not hold the patient's traits or INS; the simulator's journal survives a restart
of the sandbox process.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from relais_sandbox.identities import LEFEVRE
from tests.conftest import spawn_sandbox


def request(url: str, method: str = "GET", body: dict[str, Any] | None = None,
            token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers),
                                    timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_search_through_a_separate_sandbox(demo_process: Any, tmp_path: Path) -> None:
    state = tmp_path / "sandbox-state"
    sandbox = spawn_sandbox(state, tmp_path / "sandbox.log")
    try:
        config = tmp_path / "relais.toml"
        config.write_text('[agent]\nlog_level = "DEBUG"\n')
        agent = demo_process("agent", "--config", str(config), "--sandbox", sandbox.url)
        status, body = request(agent.url + "/v1/cps/login", "POST", {"pin": "1234"}, agent.token)
        assert status == 200, body
        status, body = request(agent.url + "/v1/ins/search", "POST", {"source": "traits", "traits": {
            "birth_name": "Lefèvre", "given_names": ["Hélène"], "sex": "F", "birth_date": "1955-01-30"}},
            agent.token)
        assert status == 200 and body["result"] == "found", body
        assert body["ins"]["value"] == LEFEVRE.ins
        assert agent.stop() == 0
        logs = "".join(p.read_text(errors="replace") for p in agent.data_dir.rglob("*.log*") if p.is_file())
        logs += agent.log.read_text(errors="replace")
        for secret in (LEFEVRE.ins, LEFEVRE.ins[:13], "LEFEVRE", "Lefèvre", "HELENE"):
            assert secret not in logs, secret
    finally:
        sandbox.stop()
    # The same state folder, restarted on the same port: the call journal survived.
    sandbox = spawn_sandbox(state, tmp_path / "sandbox.log", port=int(sandbox.url.rsplit(":", 1)[1]))
    try:
        status, calls = request(f"{sandbox.url}/_sandbox/insi/calls")
        assert status == 200
        assert [(c["code"], c["ins"]) for c in calls["items"]] == [("00", LEFEVRE.ins)]
    finally:
        sandbox.stop()
