"""`relais demo --sandbox URL` against a `relais sandbox` process, with nothing else configured: the demo doctor's
virtual CPS signs what the separate simulated DMP accepts."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from relais_sandbox.identities import PAT_TROIS
from tests.conftest import reference_root, spawn_sandbox
from tests.support.documents import PDF
from tests.support.ins import traits_search


def call(url: str, token: str | None = None, body: dict[str, Any] | None = None) -> Any:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers,
                                                       method="POST" if data else "GET"), timeout=20) as r:
        return json.loads(r.read())


def test_an_order_from_the_demo_reaches_the_separate_simulator(demo_process: Any, tmp_path: Path) -> None:
    sandbox = spawn_sandbox(tmp_path / "sandbox-state", tmp_path / "sandbox.log")
    try:
        # The kit, as scripts/demo.sh gives it: the N1 is coded from its value sets and validated.
        agent = demo_process("agent", "--sandbox", sandbox.url, "--delay", "0",
                             env={"RELAIS_REFERENCE": str(reference_root())})
        call(f"{agent.url}/v1/cps/login", agent.token, {"pin": "1234"})
        # The DMP takes only an INS obtained through INSi (EX_GEN-1530): the LGC searches it first.
        found = call(f"{agent.url}/v1/ins/search", agent.token, traits_search(PAT_TROIS))
        assert found["ins"]["value"] == PAT_TROIS.ins, found
        before = len(call(f"{sandbox.url}/_sandbox/dmp/submissions")["items"])
        order = call(f"{agent.url}/v1/orders", agent.token, {
            "client_ref": "e2e-sandbox-1",
            "patient": {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "identity_status": "QUAL",
                        "birth_name": "PAT-TROIS", "given_names": ["DOMINIQUE"], "sex": "F",
                        "birth_date": "1979-03-28", "birth_place": "51215"},
            "author": {"rpps": "01234567897"},
            "document": {"pdf_base64": base64.b64encode(PDF).decode(), "type_code": "11488-4",
                         "title": "Compte rendu", "service_start": "2026-01-05T10:00:00+01:00"},
            "destinations": {"dmp": True}})
        deadline = time.monotonic() + 60
        while (detail := call(f"{agent.url}/v1/orders/{order['id']}", agent.token))["state"] not in ("sent", "failed"):
            assert time.monotonic() < deadline, detail
            time.sleep(0.2)
        assert detail["state"] == "sent", detail["deliveries"]
        received = call(f"{sandbox.url}/_sandbox/dmp/submissions")["items"]
        assert len(received) == before + 1
        assert received[-1]["documents"][0]["unique_id"] == order["document"]["unique_id"]
    finally:
        sandbox.stop()
