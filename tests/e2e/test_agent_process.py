"""The agent as a user starts it: `relais demo`, `relais run`, a second agent, SIGTERM, the token commands."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import urllib.request

from tests.conftest import RELAIS, ROOT


def get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAIS, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_demo_starts_writes_a_token_and_answers(demo_process):
    agent = demo_process("a")
    assert get(f"{agent.url}/v1/health")[0] == 200
    status, body = get(f"{agent.url}/v1/status", agent.token)
    assert status == 200 and body["sandbox"] is True
    assert (agent.data_dir.parent / "a.token").stat().st_mode & 0o777 == 0o600
    assert get(f"{agent.url}/v1/status")[0] == 401


def test_second_agent_on_the_same_data_dir_says_who_holds_it(demo_process):
    agent = demo_process("a")
    second = run("demo", "--port", "0", "--data-dir", str(agent.data_dir), "--no-tray", timeout=30)
    assert second.returncode == 2
    assert "Un autre agent Relais utilise déjà" in second.stderr
    assert f"pid {agent.proc.pid}" in second.stderr and f"port {agent.port}" in second.stderr
    assert get(f"{agent.url}/v1/health")[0] == 200  # the first one is untouched


def test_sigterm_exits_0_with_the_store_intact_and_state_resumes(demo_process):
    agent = demo_process("a")
    run_tokens = run("token", "create", "--name", "lgc-test", "--data-dir", str(agent.data_dir))
    assert run_tokens.returncode == 0
    lgc_token = run_tokens.stdout.strip()
    assert get(f"{agent.url}/v1/status", lgc_token)[0] == 200
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(30) == 0
    db = sqlite3.connect(agent.data_dir / "relais.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert not (agent.data_dir / "agent.json").exists()
    # The same data dir resumes the same state: the LGC's token still works.
    again = demo_process("a")
    assert get(f"{again.url}/v1/status", lgc_token)[0] == 200


def test_token_commands_create_list_revoke(demo_process):
    agent = demo_process("a")
    created = run("--data-dir", str(agent.data_dir), "token", "create", "--name", "lgc-x")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert get(f"{agent.url}/v1/status", token)[0] == 200
    listed = run("token", "list", "--data-dir", str(agent.data_dir))
    assert "lgc-x\tactif" in listed.stdout
    revoked = run("token", "revoke", "lgc-x", "--data-dir", str(agent.data_dir))
    assert revoked.returncode == 0
    assert get(f"{agent.url}/v1/status", token)[0] == 401
    again = run("token", "revoke", "lgc-x", "--data-dir", str(agent.data_dir))
    assert again.returncode == 2 and "Aucun jeton actif" in again.stderr


def test_status_command_talks_to_the_running_agent(demo_process):
    agent = demo_process("a")
    result = run("status", "--json", "--data-dir", str(agent.data_dir))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sandbox"] is True


def test_run_refuses_a_config_with_a_public_bind(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[api]\nhost = "0.0.0.0"\n')
    result = run("run", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "api.host" in result.stderr and str(config) in result.stderr


def test_run_serves_with_a_config_file(tmp_path):
    import time

    config = tmp_path / "c.toml"
    config.write_text(f'[api]\nport = 0\n[agent]\ndata_dir = "{tmp_path / "d"}"\n[store]\nmaster_key = "file"\n')
    proc = subprocess.Popen([*RELAIS, "run", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        runtime = tmp_path / "d" / "agent.json"
        deadline = time.monotonic() + 30
        while not runtime.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        port = json.loads(runtime.read_text())["port"]
        assert get(f"http://127.0.0.1:{port}/v1/health")[0] == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
