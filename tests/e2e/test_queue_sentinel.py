"""Document content never rests in clear: a sentinel inside a queued document is nowhere on disk or in logs.

`relais demo` at DEBUG level takes an order whose CDA carries a unique sentinel; the agent is then killed
with SIGKILL (so the WAL is left as it is) and every file of its data directory and logs is searched, for the
sentinel and for the document's base64. The order is also listed and cancelled through `relais orders`.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import RELAIS, ROOT
from tests.queue_support import make_cda, order_body


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


def test_sentinel_in_a_queued_document_is_nowhere_on_disk_or_in_logs(demo_process: Any, tmp_path: Path) -> None:
    config = tmp_path / "relais.toml"
    config.write_text('[agent]\nlog_level = "DEBUG"\n')
    sentinel = f"SENTINEL-{uuid.uuid4().hex}"
    agent = demo_process("agent", "--config", str(config), "--delay", "3600")
    cda = make_cda(extra=sentinel)
    status, order = call(agent, "POST", "/v1/orders", order_body(cda=cda, delay=None, client_ref=sentinel[:20]))
    assert status == 201, order
    status, _ = call(agent, "GET", f"/v1/orders/{order['id']}")
    assert status == 200
    second = make_cda(extra=sentinel + "-2")
    status, other = call(agent, "POST", "/v1/orders", order_body(cda=second, delay=None))
    assert status == 201

    listing = cli(agent.data_dir, "orders", "list")
    assert listing.returncode == 0, listing.stderr
    assert order["id"] in listing.stdout and "programmé" in listing.stdout
    cancelled = cli(agent.data_dir, "orders", "cancel", other["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert call(agent, "GET", f"/v1/orders/{other['id']}")[1]["state"] == "cancelled"

    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(10)
    needles = [sentinel.encode(), base64.b64encode(cda), base64.b64encode(second)]
    files = [p for p in [*agent.data_dir.rglob("*"), agent.log] if p.is_file()]
    assert any(p.name == "relais.db-wal" and p.stat().st_size > 0 for p in files)  # the WAL was searched too
    assert any(p.suffix == ".log" or p == agent.log for p in files)
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"document content found in {path.name}"
