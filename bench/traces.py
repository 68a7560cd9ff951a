"""Benchmark of the trace log. Not a test: it prints figures.

1. Appends: TraceLog.record (one hash-chained row, durable before it returns) with 1 and 32 concurrent callers,
   as the DMP routes, the queue and the INSi routes call it: rows per second, p50/p99 latency, fsynced commits.
2. Verify and export: `verify` and a CSV export of the whole chain, rows per second.

    .venv/bin/python bench/traces.py [--rows 5000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a queue.py that would shadow the stdlib's: take the folder off the path before anything imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import secrets
import tempfile
import time

from agent.audit import chain
from agent.audit.recorder import TraceLog, export_rows, verify_conn
from agent.clock import SystemClock
from agent.domain.policy import Actor, TraceEvent
from agent.store.crypto import ContentCipher
from agent.store.db import Database
from agent.store.traces import TraceFilter

ACTOR = Actor(rpps="10003456789", workstation="poste-1", client="lgc")
CIPHER = ContentCipher(secrets.token_bytes(32))  # as the agent: every row MAC-authenticated


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def appends(db: Database, rows: int, concurrency: int) -> None:
    log = TraceLog(db, SystemClock(), CIPHER)
    latencies: list[float] = []
    commits = db.commits
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(rows):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            start = time.perf_counter()
            await log.record(TraceEvent("dmp.search", ACTOR, ins="279035121518989", object=f"doc-{i}",
                                        details={"count": i % 7}))
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    print(f"append, {concurrency:>2} callers: {rows / elapsed:8.0f} rows/s, p50 {pct(latencies, 50) * 1000:6.2f} ms, "
          f"p99 {pct(latencies, 99) * 1000:6.2f} ms, {db.commits - commits} fsynced commits")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Database(Path(folder) / "relais.db")
        db.open()
        try:
            await appends(db, max(200, args.rows // 10), 1)
            await appends(db, args.rows, 32)
            total = await db.read(lambda conn: conn.execute("SELECT count(*) FROM traces").fetchone()[0])
            start = time.perf_counter()
            result = await db.read(lambda conn: verify_conn(conn, CIPHER))
            elapsed = time.perf_counter() - start
            print(f"verify: {total} rows in {elapsed:.3f} s ({total / elapsed:.0f} rows/s), ok={result.ok}, "
                  f"authenticated={result.authenticated}")
            start = time.perf_counter()
            size = await db.read(lambda conn: sum(len(chain.csv_row(r)) for r in export_rows(conn, TraceFilter())))
            elapsed = time.perf_counter() - start
            print(f"CSV export: {total} rows, {size / 1e6:.1f} MB in {elapsed:.3f} s ({total / elapsed:.0f} rows/s)")
        finally:
            db.close()


if __name__ == "__main__":
    asyncio.run(main())
