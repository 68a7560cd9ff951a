"""Crash test for MSSanté: the agent is killed with SIGKILL after the operator stored the message and before the
agent heard the 250 to DATA (so before anything could be recorded). The operator runs as its own process
(`relais sandbox`); the restarted agent reconciles by Message-ID and the recipient gets exactly one mail."""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.conftest import AgentProcess, reference_root, spawn_demo, spawn_sandbox
from tests.e2e.test_queue_crash import get_json, post_json

RECIPIENT = "jeanne.martin@medecin.demo.mssante.fr"


def post_sandbox(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def order(reference: Path, rpps: str) -> dict[str, Any]:
    from relais_sandbox.dmp import reidentify
    from relais_sandbox.identities import PAT_TROIS

    p = PAT_TROIS
    data = (reference / "ci-sis/ExemplesCDA/VAC-NOTE_2023.01.xml").read_bytes()
    cda, _ = reidentify(data, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                        f"2.25.{uuid.uuid4().int}")
    root = etree.fromstring(cda)
    author = root.find("{urn:hl7-org:v3}author/{urn:hl7-org:v3}assignedAuthor/{urn:hl7-org:v3}id")
    assert author is not None
    author.set("extension", rpps if rpps.startswith("8") else f"8{rpps}")
    return {"patient": {"ins": p.ins, "oid": p.oid, "identity_status": "QUAL", "birth_name": p.birth_name,
                        "given_names": [p.first_given_name], "sex": p.sex, "birth_date": p.birth_date},
            "author": {"rpps": rpps},
            "document": {"cda_base64": base64.b64encode(etree.tostring(root)).decode()},
            "destinations": {"dmp": False, "mss": [{"address": RECIPIENT}]}, "delay_seconds": 0}


def start(data_dir: Path, sandbox_url: str, config: Path) -> AgentProcess:
    agent = spawn_demo(data_dir, "--sandbox", sandbox_url, "--delay", "0", "--config", str(config), wait=60)
    post_json(f"{agent.url}/v1/cps/login", agent.token, {"pin": "1234"})
    return agent


def test_sigkill_between_data_and_the_record_sends_one_mail(tmp_path: Path) -> None:
    reference = reference_root()
    if not (reference / "ci-sis" / "ExemplesCDA").is_dir():
        pytest.skip(f"kit de référence absent ({reference}) : définissez RELAIS_REFERENCE")
    config = tmp_path / "relais.toml"
    config.write_text("[queue]\nbackoff_base_seconds = 0.5\nbackoff_cap_seconds = 2.0\n"
                      "probe_interval_seconds = 1.0\nattempt_timeout_seconds = 60.0\n"
                      "[mss]\ntimeout_seconds = 60.0\n"
                      f"[sandbox]\nstate_dir = \"{tmp_path / 'sandbox'}\"\n")
    sandbox = spawn_sandbox(tmp_path / "sandbox", tmp_path / "sandbox.log",
                            "--data-dir", str(tmp_path / "sandbox-data"))
    sandbox_url = sandbox.url
    try:
        # The operator will store the message, then keep the client waiting for its 250 to DATA.
        post_sandbox(f"{sandbox_url}/_sandbox/mss/faults", {"mode": "timeout", "timeout_seconds": 120})
        data_dir = tmp_path / "agent"
        agent = start(data_dir, sandbox_url, config)
        rpps = get_json(f"{agent.url}/v1/cards", agent.token)["cps"]["holder"]["rpps"]
        created = post_json(f"{agent.url}/v1/orders", agent.token, order(reference, rpps))
        deadline = time.monotonic() + 60
        while not get_json(f"{sandbox_url}/_sandbox/mss/messages")["items"]:
            assert time.monotonic() < deadline, "the operator never got the message"
            time.sleep(0.1)
        detail = get_json(f"{agent.url}/v1/orders/{created['id']}", agent.token)
        assert detail["deliveries"][0]["state"] == "sending"  # DATA is out, the answer is not in
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(20)

        post_sandbox(f"{sandbox_url}/_sandbox/mss/faults", {"mode": "ok"})
        agent = start(data_dir, sandbox_url, config)
        try:
            deadline = time.monotonic() + 60
            while True:
                detail = get_json(f"{agent.url}/v1/orders/{created['id']}", agent.token)
                if detail["deliveries"][0]["state"] in ("sent", "failed"):
                    break
                assert time.monotonic() < deadline, detail
                time.sleep(0.2)
        finally:
            agent.stop()
        delivery = detail["deliveries"][0]
        assert delivery["state"] == "sent" and delivery["reconciled"], delivery
        messages = get_json(f"{sandbox_url}/_sandbox/mss/messages")["items"]
        assert [m["message_id"] for m in messages] == [delivery["message_id"]]  # one mail, never resent
    finally:
        sandbox.stop()
