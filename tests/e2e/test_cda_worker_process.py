"""`relais demo` with the CI-SIS kit: Saxon (and the schematrons it compiles, about 250 MB with the whole kit) is
loaded by a validation worker process, never by the agent's own (issue 24 item 1: memory and the GIL)."""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from pathlib import Path

import pytest


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def loads_saxon(pid: int) -> bool:
    return "saxonc" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_agent_never_loads_saxon_its_worker_does(demo_process, reference_dir: Path) -> None:
    kit = reference_dir / "ci-sis"
    if not (kit / "schematrons").is_dir():
        pytest.skip("kit CI-SIS absent")
    agent = demo_process("agent", "--cards", "none", env={"RELAIS_REFERENCE": str(reference_dir)})
    example = (kit / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    request = urllib.request.Request(
        f"{agent.url}/v1/cda/validate", data=json.dumps({"cda_base64": base64.b64encode(example).decode()}).encode(),
        headers={"Authorization": f"Bearer {agent.token}", "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=300) as response:
        report = json.loads(response.read())
    assert report["valid"] is True and "CI-SIS_VAC-NOTE_2023.01.sch" in report["checked"]
    assert not loads_saxon(agent.proc.pid)
    assert any(loads_saxon(child) for child in children(agent.proc.pid))
