"""The DMP as a user runs the demo: `relais sandbox` in its own process, `relais demo --sandbox URL`, over HTTP.

The simulated DMP keeps documents, statuses and visibility in its state folder across a restart of the sandbox
process; the agent's DEBUG logs hold no INS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relais_sandbox.identities import PAT_TROIS
from tests.conftest import free_port, spawn_sandbox
from tests.e2e.test_ins_demo import request
from tests.support.ins import traits_search


def test_consult_and_mask_through_a_separate_sandbox_that_restarts(demo_process: Any, tmp_path: Path) -> None:
    port, state = free_port(), tmp_path / "sandbox-state"
    sandbox = spawn_sandbox(state, tmp_path / "sandbox.log", port=port)
    try:
        config = tmp_path / "relais.toml"
        config.write_text('[agent]\nlog_level = "DEBUG"\n')
        agent = demo_process("agent", "--config", str(config), "--sandbox", f"http://127.0.0.1:{port}")
        token, base = agent.token, agent.url
        # The INS through INSi first (EX_GEN-1530): the PIN, then a search by traits.
        assert request(base + "/v1/cps/login", "POST", {"pin": "1234"}, token)[0] == 200
        status, found = request(base + "/v1/ins/search", "POST", traits_search(PAT_TROIS), token)
        assert status == 200 and found["ins"]["value"] == PAT_TROIS.ins, found
        status, notices = request(base + "/v1/notices", token=token)
        assert status == 200, notices
        for notice in notices["items"]:
            assert request(f"{base}/v1/notices/{notice['id']}/ack", "POST", {}, token)[0] == 200
        status, body = request(f"{base}/v1/patients/{PAT_TROIS.ins}/consent?oid={PAT_TROIS.oid}", "PUT",
                               {"dmp_consultation": "granted", "dmp_feeding": "non_opposition", "informed": True},
                               token)
        assert status == 200, body
        status, body = request(f"{base}/v1/dmp/{PAT_TROIS.ins}/documents?oid={PAT_TROIS.oid}", token=token)
        assert status == 200 and len(body["items"]) >= 2, body
        first = next(i for i in body["items"] if i["type_code"] != "87273-9")  # a vaccination is never masked
        status, masked = request(f"{base}/v1/dmp/{PAT_TROIS.ins}/documents/{first['entry_uuid']}/visibility"
                                 f"?oid={PAT_TROIS.oid}", "POST", {"masked_to_ps": True}, token)
        assert status == 200 and masked["visibility"]["masked_to_ps"], masked
        assert agent.stop() == 0
        logs = "".join(p.read_text(errors="replace") for p in agent.data_dir.rglob("*.log*") if p.is_file())
        assert PAT_TROIS.ins not in logs

        sandbox.stop()
        sandbox = spawn_sandbox(state, tmp_path / "sandbox.log", port=port)
        status, held = request(f"http://127.0.0.1:{port}/_sandbox/dmp/documents?ins={PAT_TROIS.ins}")
        assert status == 200
        by_uuid = {i["entry_uuid"]: i for i in held["items"]}
        assert by_uuid[masked["entry_uuid"]]["visibility"]["masked_to_ps"]
        assert by_uuid[first["entry_uuid"]]["status"] == "deprecated"
    finally:
        sandbox.stop()
