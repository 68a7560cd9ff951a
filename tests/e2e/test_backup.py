"""`relais backup FILE` while the agent runs and writes (issue 23): the copy opens, passes its integrity check and
holds every order committed before it began; it is one file, readable by this account only."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp

from agent.store import orders as repo
from agent.store.db import Database
from tests.conftest import RELAIS, ROOT
from tests.support.ins import insi_gave_order_patient
from tests.support.queue import order_body


async def test_a_backup_taken_while_the_agent_writes_holds_every_committed_order(
        start_agent: Any, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    agent = await start_agent(queue={"delay_seconds": 3600})
    data_dir = agent.agent.config.data_dir
    await insi_gave_order_patient(agent, order_body())  # the orders' INS came from INSi (EX_GEN-1530)

    async def create() -> str:
        async with http.post(agent.url + "/v1/orders", json=order_body(delay=3600), headers=agent.headers()) as r:
            body = await r.json()
            assert r.status == 201, body
            return str(body["id"])

    committed = [await create() for _ in range(30)]
    stop = asyncio.Event()
    during: list[str] = []

    async def keep_writing() -> None:
        while not stop.is_set():
            during.append(await create())

    writer = asyncio.create_task(keep_writing())
    copy = tmp_path / "sauvegardes" / "relais-backup.db"
    process = await asyncio.create_subprocess_exec(
        *RELAIS, "backup", str(copy), "--data-dir", str(data_dir), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    stop.set()
    await writer
    assert process.returncode == 0, err.decode()
    assert "Sauvegarde écrite" in out.decode() and "clé maîtresse" in err.decode()
    assert during, "the agent kept writing while the backup ran"
    if sys.platform != "win32":
        assert copy.stat().st_mode & 0o777 == 0o600
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    restored = Database(copy)
    restored.open()
    try:
        ids = {o.id for o in await restored.read(lambda c: repo.list_orders(c, limit=1000))}
    finally:
        restored.close()
    assert set(committed) <= ids  # every order acknowledged before the backup began
    assert ids <= set(committed) | set(during)  # and nothing else


def test_a_backup_onto_the_database_itself_is_refused_in_french(tmp_path: Path) -> None:
    import subprocess

    data_dir = tmp_path / "data"
    made = subprocess.run([*RELAIS, "token", "create", "--name", "x", "--data-dir", str(data_dir)], cwd=ROOT,
                          capture_output=True, text=True, check=False, env={**os.environ})
    assert made.returncode == 0, made.stderr
    result = subprocess.run([*RELAIS, "backup", str(data_dir / "relais.db"), "--data-dir", str(data_dir)], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "ne peut pas remplacer la base" in result.stderr, result.stderr
