"""`relais demo` says where the dashboard is once the agent answers; `relais dashboard` gives a new link."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request

from tests.conftest import RELAIS, ROOT

LINK = re.compile(r"Tableau de bord : (http://127\.0\.0\.1:(\d+)/ui/#login=([A-Za-z0-9_-]+))")


def redeem(port: int, code: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/ui/session", data=json.dumps({"code": code}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_demo_prints_a_working_dashboard_link_once_ready(demo_process) -> None:
    agent = demo_process("link")  # returns once the token file is written and the agent answers
    deadline = time.monotonic() + 30
    while not (found := LINK.search(agent.log.read_text())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found, agent.log.read_text()[-2000:]
    assert int(found.group(2)) == agent.port
    assert redeem(agent.port, found.group(3)) == 200
    assert redeem(agent.port, found.group(3)) == 401  # one time only
    result = subprocess.run([*RELAIS, "dashboard", "--data-dir", str(agent.data_dir), "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    url = json.loads(result.stdout)["url"]
    fresh = LINK.search(f"Tableau de bord : {url}")
    assert fresh and redeem(agent.port, fresh.group(3)) == 200
