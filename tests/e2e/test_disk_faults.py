"""A full or read-only disk, and a database from a newer agent (issue 23 #12), on real processes.
Linux only (prlimit, unshare); the product's handling is the same on every system.

How the disk is filled without privileges: the agent runs as its own process and the test lowers that process's
file size limit (``RLIMIT_FSIZE``, ``prlimit``) to 0: from then on the kernel refuses every write to a file
(EFBIG), exactly what a full disk or a quota does to SQLite's WAL, the log file and every other file, while reads
and sockets go on. Raising the limit again is the doctor freeing space. A read-only data folder is a folder the
read-only bind mount made in a user and mount namespace (``unshare -rm``), which needs no privilege.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.store.migrations import MIGRATIONS
from relais_sandbox.identities import PAT_TROIS
from tests.conftest import RELAIS, ROOT, AgentProcess
from tests.integration.test_queue_demo import demo_cda
from tests.support.ins import traits_search
from tests.support.queue import order_body

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit(2) is Linux's")


def fill_disk(proc: subprocess.Popen[bytes]) -> None:
    _, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (0, hard))


def free_disk(proc: subprocess.Popen[bytes]) -> None:
    _, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (hard, hard))


async def call(http: aiohttp.ClientSession, agent: AgentProcess, method: str, path: str,
               body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with http.request(method, agent.url + path, json=body,
                            headers={"Authorization": f"Bearer {agent.token}"}) as response:
        return response.status, await response.json(content_type=None)


async def insi_first(http: aiohttp.ClientSession, agent: AgentProcess) -> None:
    """The PIN, then the patient's INS through INSi: the DMP takes no other (EX_GEN-1530)."""
    assert (await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"}))[0] == 200
    status, found = await call(http, agent, "POST", "/v1/ins/search", traits_search(PAT_TROIS))
    assert status == 200 and found["ins"]["value"] == PAT_TROIS.ins, found


def patient_order() -> dict[str, Any]:
    return order_body(delay=3600, ins=PAT_TROIS.ins, oid=PAT_TROIS.oid)


async def wait_until(probe: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    """Poll ``probe`` (async) until it returns something truthy; the deadline only stops a hang."""
    import asyncio

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


async def test_a_full_disk_answers_507_in_french_says_so_in_status_and_recovers_without_restart(
        demo_process: Callable[..., AgentProcess]) -> None:
    # Before: a bare 500, nothing in /v1/status nor in the tray.
    agent = demo_process("full", "--delay", "3600")
    async with aiohttp.ClientSession() as http:
        await insi_first(http, agent)
        status, first = await call(http, agent, "POST", "/v1/orders", patient_order())
        assert status == 201, first
        fill_disk(agent.proc)
        status, problem = await call(http, agent, "POST", "/v1/orders", patient_order())
        assert status == 507, problem
        assert problem["code"] in ("disk_full", "disk_error")
        assert "disque" in problem["detail"] and "rien n'a été enregistré" in problem["detail"]
        status, body = await call(http, agent, "GET", "/v1/status")
        assert status == 200
        assert body["store"]["writable"] is False
        assert body["store"]["problem"]["code"] == problem["code"] and "disque" in body["store"]["problem"]["message"]
        status, listing = await call(http, agent, "GET", "/v1/orders")  # reads go on
        assert status == 200 and [o["id"] for o in listing["items"]] == [first["id"]]
        free_disk(agent.proc)
        status, second = await call(http, agent, "POST", "/v1/orders", patient_order())
        assert status == 201, second
        status, body = await call(http, agent, "GET", "/v1/status")
        assert body["store"]["writable"] is True and body["store"]["problem"] is None
        status, listing = await call(http, agent, "GET", "/v1/orders")
        assert [o["id"] for o in listing["items"]] == [second["id"], first["id"]]  # the refused one never existed
    assert agent.stop() == 0


async def test_a_send_whose_outcome_the_full_disk_refused_does_not_stay_sending_until_a_restart(
        demo_process: Callable[..., AgentProcess], reference_dir: Path, tmp_path: Path) -> None:
    # Before: the executor logged "résultat non enregistré" and the delivery stayed `sending` until a restart.
    config = tmp_path / "relais.toml"
    # A DMP that cannot answer while its own simulator cannot write: the attempt ends at this timeout.
    config.write_text("[queue]\nattempt_timeout_seconds = 10\n")
    agent = demo_process("sending", "--config", str(config), env={"RELAIS_REFERENCE": str(reference_dir)})
    async with aiohttp.ClientSession() as http:
        await insi_first(http, agent)
        _, cards = await call(http, agent, "GET", "/v1/cards")
        rpps = cards["cps"]["holder"]["rpps"]
        status, _ = await call(http, agent, "POST", "/_sandbox/dmp/faults", {"mode": "slow", "slow_seconds": 3})
        assert status == 200
        body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=rpps, delay=0)
        status, order = await call(http, agent, "POST", "/v1/orders", body)
        assert status == 201, order

        async def state() -> str:
            return str((await call(http, agent, "GET", f"/v1/orders/{order['id']}"))[1]["state"])

        await wait_until(lambda: _is(state, "sending"), "the order is being sent")
        fill_disk(agent.proc)  # the DMP answers while the disk is full: its outcome cannot be written

        async def refused() -> bool:
            return (await call(http, agent, "GET", "/v1/status"))[1]["store"]["writable"] is False

        await wait_until(refused, "the store reports the disk refusing writes", 150)
        assert await state() == "sending"
        await call(http, agent, "POST", "/_sandbox/dmp/faults", {"mode": "ok"})
        free_disk(agent.proc)
        final = await wait_until(lambda: _is_not(state, "sending"), "the outcome recorded without a restart")
        assert final in ("sent", "retrying", "ready"), final
    assert agent.stop() == 0


async def _is(probe: Callable[[], Any], expected: str) -> bool:
    return bool(await probe() == expected)


async def _is_not(probe: Callable[[], Any], unexpected: str) -> str | None:
    value = await probe()
    return None if value == unexpected else str(value)


def _run(args: list[str], *, preexec: Callable[[], None] | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAIS, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          preexec_fn=preexec, env={**os.environ, **(env or {})}, check=False)


def _no_room() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as the agent itself does once started
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def _config(tmp: Path) -> Path:
    config = tmp / "relais.toml"
    config.write_text('[api]\nport = 0\n[store]\nmaster_key = "file"\n')
    return config


def test_starting_on_a_full_disk_exits_with_a_french_message_and_no_traceback(tmp_path: Path) -> None:
    # Before: a traceback.
    data = tmp_path / "data"
    result = _run(["run", "--config", str(_config(tmp_path)), "--data-dir", str(data)], preexec=_no_room)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "relais : " in result.stderr and ("disque" in result.stderr or "plein" in result.stderr), result.stderr


def test_a_database_from_a_newer_agent_is_refused_with_a_french_message_and_left_untouched(tmp_path: Path) -> None:
    # Before: a traceback (RuntimeError from the migrations).
    data = tmp_path / "data"
    config = _config(tmp_path)
    made = _run(["token", "create", "--name", "lgc", "--config", str(config), "--data-dir", str(data)])
    assert made.returncode == 0, made.stderr
    with sqlite3.connect(data / "relais.db") as conn:
        conn.execute("UPDATE schema_versions SET version = version + 1 WHERE component = 'orders'")
    result = _run(["run", "--config", str(config), "--data-dir", str(data)])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "version plus récente de Relais" in result.stderr, result.stderr
    with sqlite3.connect(data / "relais.db") as conn:  # not migrated, not rewritten: a newer agent can take it back
        versions = dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())
    assert versions["orders"] == len(MIGRATIONS["orders"]) + 1


def test_starting_on_a_read_only_data_folder_exits_with_a_french_message_and_no_traceback(tmp_path: Path) -> None:
    # A real read-only mount (EROFS), made without privileges in a user and mount namespace (unshare -rm), so that
    # it holds for root too, for whom file modes do not count.
    data = tmp_path / "data"
    config = _config(tmp_path)
    made = _run(["token", "create", "--name", "lgc", "--config", str(config), "--data-dir", str(data)])
    assert made.returncode == 0, made.stderr
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && shift && exec "$@"'
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(data), *RELAIS, "run", "--config",
                             str(config), "--data-dir", str(data)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "lecture seule" in result.stderr, result.stderr
