"""Benchmark of the send-order queue. Not a test: it prints figures.

1. Durable creates: POST /v1/orders through the API of a `relais demo` process (as an LGC sees it), with 1 and
   32 concurrent clients: orders per second, p50/p99 latency, and how many fsynced commits carried them.
   Beside it, in the same run and on the same disk: bare SQLite, one INSERT of a row of the same size per
   commit, WAL with synchronous=FULL (one fsync per order). The ratio is the figure: with 32 clients the
   agent's grouped commits should beat one fsync per order.
2. Drain: N orders made due at the same instant, sent by the queue to the DMP simulator (`relais sandbox`,
   its own process) with the configured concurrency; beside it, the simulator's own throughput at the same
   concurrency (the same submissions straight from a DmpClient, no queue).

    .venv/bin/python bench/queue.py [--orders 2000] [--drain 10000] [--skip-drain]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib's queue module: take its folder off the path before anything imports it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402 - after the path fix above
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import spawn_demo  # noqa: E402
from tests.queue_support import make_cda, order_body  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def bodies(count: int, delay: int | None = 3600) -> list[dict[str, Any]]:
    return [order_body(delay=delay, cda=make_cda(extra="x" * 1500)) for _ in range(count)]


async def create(url: str, token: str, items: list[dict[str, Any]], concurrency: int
                 ) -> tuple[float, list[float], list[str]]:
    latencies: list[float] = []
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    queue = list(reversed(items))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            while queue:
                body = queue.pop()
                start = time.perf_counter()
                async with session.post(f"{url}/v1/orders", json=body, headers=headers) as response:
                    answer = await response.json()
                    assert response.status == 201, answer
                latencies.append(time.perf_counter() - start)
                ids.append(answer["id"])

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return len(items) / elapsed, latencies, ids


def bare_sqlite(path: Path, count: int, size: int) -> tuple[float, list[float]]:
    """One fsynced commit per row: what a naive durable queue pays per order."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    payload = os.urandom(size)
    latencies = []
    began = time.perf_counter()
    for _ in range(count):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t(body) VALUES (?)", (payload,))
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - start)
    elapsed = time.perf_counter() - began
    conn.close()
    return count / elapsed, latencies


async def status(url: str, token: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/v1/status", headers={"Authorization": f"Bearer {token}"}) as response:
        return dict((await response.json())["queue"])


def bench_creates(work: Path, orders: int) -> None:
    agent = spawn_demo(work / "agent-create", "--delay", "3600")
    try:
        print(f"Durable creates, {orders} orders per run, CDA of about 2 KB (disk: {work})")
        print(f"{'':28} {'orders/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        size = len(json.dumps(bodies(1)[0]))
        rate, lat = bare_sqlite(work / "bare.db", orders, size)
        print(f"{'bare SQLite, 1 commit/order':28} {rate:10.0f} {pct(lat, .5):8.2f} {pct(lat, .99):8.2f}")
        baseline = rate
        for concurrency in (1, 32):
            rate, lat, _ = asyncio.run(create(agent.url, agent.token, bodies(orders), concurrency))
            print(f"{f'API, {concurrency} client(s)':28} {rate:10.0f} {pct(lat, .5):8.2f} {pct(lat, .99):8.2f}"
                  f"   x{rate / baseline:.2f} of bare SQLite")
    finally:
        agent.stop()


def bench_drain(work: Path, count: int) -> None:
    import subprocess

    from tests.conftest import RELAIS, ROOT

    port = 7490 + os.getpid() % 100
    sandbox = subprocess.Popen([*RELAIS, "sandbox", "--port", str(port), "--state-dir", str(work / "sandbox"),
                                "--data-dir", str(work / "sandbox-data")], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent = None
    try:
        time.sleep(3)
        agent = spawn_demo(work / "agent-drain", "--sandbox", f"http://127.0.0.1:{port}", "--delay", "3600")
        asyncio.run(_login(agent.url, agent.token))
        lead = 30 + count // 300
        due = time.time() + lead
        items = bodies(count, delay=None)
        for body in items:
            body["delay_seconds"] = lead  # all due at about the same instant
        began = time.time()
        asyncio.run(create(agent.url, agent.token, items, 32))
        print(f"Drain: {count} orders created in {time.time() - began:.1f} s, due in {due - time.time():.0f} s")
        while time.time() < due:
            time.sleep(0.2)
        start = time.perf_counter()
        while True:
            counts = asyncio.run(status(agent.url, agent.token))
            if counts.get("sent", 0) + counts.get("failed", 0) >= count:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        print(f"  queue -> simulator: {count / elapsed:.0f} orders/s ({counts})")
    finally:
        if agent is not None:
            agent.stop()
        sandbox.terminate()
        sandbox.wait(20)


async def _login(url: str, token: str) -> None:
    async with aiohttp.ClientSession() as session:
        await session.post(f"{url}/v1/cps/login", json={"pin": "1234"}, headers={"Authorization": f"Bearer {token}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--drain", type=int, default=10000)
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--dir", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relais-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        bench_creates(work, args.orders)
        if not args.skip_drain:
            bench_drain(work, args.drain)


if __name__ == "__main__":
    main()
