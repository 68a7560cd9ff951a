"""Document content never rests in clear: a sentinel inside a queued document is nowhere on disk or in logs.

`relais demo` at DEBUG level takes three orders whose CDAs carry a unique sentinel: one is sent to the DMP
simulator, one waits out its delay, one is cancelled through `relais orders cancel`. The agent is then killed
with SIGKILL (so the WAL is left as it is) and every file of its data directory and logs is searched, for the
sentinel and for each document's base64.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RELAIS, ROOT, reference_root
from tests.support.ins import traits_search
from tests.support.queue import order_body


def call(agent: Any, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(agent.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {agent.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAIS, *args, "--data-dir", str(data_dir)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def demo_document(sentinel: str) -> bytes:
    """An ANS example given to a demo patient, with the sentinel in its title: the simulated DMP accepts it."""
    from lxml import etree

    from relais_sandbox.dmp import reidentify
    from relais_sandbox.identities import PAT_TROIS

    example = (reference_root() / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    p = PAT_TROIS
    cda, _ = reidentify(example, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                        f"2.25.{uuid.uuid4().int}")
    root = etree.fromstring(cda)
    title = root.find("{urn:hl7-org:v3}title")
    assert title is not None
    title.text = f"Note de vaccination {sentinel}"
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_sentinel_in_a_queued_document_is_nowhere_on_disk_or_in_logs(demo_process: Any, tmp_path: Path) -> None:
    if not (reference_root() / "ci-sis" / "ExemplesCDA").is_dir():
        pytest.skip("kit de référence absent : définissez RELAIS_REFERENCE")
    from relais_sandbox.identities import PAT_TROIS

    config = tmp_path / "relais.toml"
    config.write_text('[agent]\nlog_level = "DEBUG"\n')
    sentinel = f"SENTINEL-{uuid.uuid4().hex}"
    agent = demo_process("agent", "--config", str(config), "--delay", "3600")
    assert call(agent, "POST", "/v1/cps/login", {"pin": "1234"})[0] == 200

    # The DMP takes only an INS obtained through INSi (EX_GEN-1530): the LGC searches it first.
    assert call(agent, "POST", "/v1/ins/search", traits_search(PAT_TROIS))[0] == 200
    rpps = call(agent, "GET", "/v1/cards")[1]["cps"]["holder"]["rpps"]
    ins, oid = PAT_TROIS.ins, PAT_TROIS.oid

    # One document goes all the way to the (simulated) DMP...
    sent_cda = demo_document(sentinel)
    status, sent = call(agent, "POST", "/v1/orders", order_body(cda=sent_cda, ins=ins, oid=oid, rpps=rpps,
                                                                delay=0, client_ref=sentinel[:20]))
    assert status == 201, sent
    # ...one waits out its delay, one is cancelled from the command line.
    waiting_cda = demo_document(sentinel + "-2")
    status, waiting = call(agent, "POST", "/v1/orders", order_body(cda=waiting_cda, ins=ins, oid=oid, rpps=rpps,
                                                                   delay=None))
    assert status == 201, waiting
    cancelled_cda = demo_document(sentinel + "-3")
    status, other = call(agent, "POST", "/v1/orders", order_body(cda=cancelled_cda, ins=ins, oid=oid, rpps=rpps,
                                                                 delay=None))
    assert status == 201, other
    for _ in range(100):
        if call(agent, "GET", f"/v1/orders/{sent['id']}")[1]["state"] == "sent":
            break
        time.sleep(0.2)
    assert call(agent, "GET", f"/v1/orders/{sent['id']}")[1]["state"] == "sent"

    listing = cli(agent.data_dir, "orders", "list")
    assert listing.returncode == 0, listing.stderr
    assert waiting["id"] in listing.stdout and "programmé" in listing.stdout
    cancelled = cli(agent.data_dir, "orders", "cancel", other["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert call(agent, "GET", f"/v1/orders/{other['id']}")[1]["state"] == "cancelled"
    refused = cli(agent.data_dir, "orders", "cancel", sent["id"])
    assert refused.returncode == 2 and "déjà été envoyé" in refused.stderr
    retry_all = cli(agent.data_dir, "orders", "retry-failed")  # "Réessayer tout" from the command line
    assert retry_all.returncode == 0 and "Aucun envoi en échec." in retry_all.stdout, retry_all.stderr

    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(10)
    needles = [sentinel.encode()] + [base64.b64encode(c) for c in (sent_cda, waiting_cda, cancelled_cda)]
    # The simulated DMP keeps what it received in <data_dir>/sandbox: that is the DMP's copy, not the agent's.
    simulated = agent.data_dir / "sandbox"
    files = [p for p in [*agent.data_dir.rglob("*"), agent.log] if p.is_file() and simulated not in p.parents]
    assert any(p.name == "relais.db-wal" and p.stat().st_size > 0 for p in files)  # the WAL was searched too
    assert any(p.suffix == ".log" for p in files)
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"document content found in {path.name}"
