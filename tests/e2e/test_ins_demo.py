"""INSi as a user runs it: `relais sandbox` in its own process, `relais demo --sandbox URL`, driven over HTTP.

The agent's logs (DEBUG) must not hold the patient's traits or INS; the simulator's journal survives a restart
of the sandbox process.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from agent.sandbox.identities import LEFEVRE
from tests.conftest import RELAIS, ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def start_sandbox(state_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([*RELAIS, "sandbox", "--port", str(port), "--state-dir", str(state_dir)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if request(f"http://127.0.0.1:{port}/_sandbox/endpoints")[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"relais sandbox did not start: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(20)


def test_search_through_a_separate_sandbox(demo_process: Any, tmp_path: Path) -> None:
    port, state = free_port(), tmp_path / "sandbox-state"
    sandbox = start_sandbox(state, port, tmp_path / "sandbox.log")
    try:
        config = tmp_path / "relais.toml"
        config.write_text('[agent]\nlog_level = "DEBUG"\n')
        agent = demo_process("agent", "--config", str(config), "--sandbox", f"http://127.0.0.1:{port}")
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
        stop(sandbox)
    sandbox = start_sandbox(state, port, tmp_path / "sandbox.log")
    try:
        status, calls = request(f"http://127.0.0.1:{port}/_sandbox/insi/calls")
        assert status == 200
        assert [(c["code"], c["ins"]) for c in calls["items"]] == [("00", LEFEVRE.ins)]
    finally:
        stop(sandbox)
