"""An LGC in a user session finds that session's agent, gets its own token through the CLI, and calls it."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

from tests.conftest import ROOT


def test_an_lgc_finds_its_sessions_agent_from_the_session_file(demo_process, tmp_path):
    sessions = tmp_path / "sessions"
    agent = demo_process("session", env={"RELAIS_SESSION_DIR": str(sessions)})
    (found,) = sessions.glob("session-*.json")
    info = json.loads(found.read_text())
    assert info["port"] == agent.port and info["url"] == f"http://127.0.0.1:{agent.port}"
    assert info["pid"] == agent.proc.pid and info["data_dir"] == str(agent.data_dir)
    # The LGC's own token, from the agent's CLI as the session file says to run it.
    created = subprocess.run([*info["cli"], "token", "create", "--name", "mon-lgc"], capture_output=True,
                             text=True, timeout=60, cwd=ROOT, env={**os.environ})
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    request = urllib.request.Request(f"{info['url']}/v1/status", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["version"] == info["agent_version"]
    assert agent.stop() == 0
    assert not found.exists()
