"""Benchmark of INSi searches through the agent: POST /v1/ins/search (traits) against the simulator over mTLS.

Starts `relais demo` as its own process, logs the virtual CPS in (each search signs an assertion with it), then
prints searches per second and p50/p99 latency with 1 and 8 concurrent clients for a search INSi answers "found",
one it answers "not found" (one given name: no re-query), and a search refused by the pre-checks (422, no INSi
call) to show what they save. Not a test: figures only.

    .venv/bin/python bench/insi.py [--requests 300]
"""

from __future__ import annotations

import sys
from pathlib import Path

# The project root, not bench/, first on the path: bench/queue.py would shadow the standard library's queue.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import tempfile
import time
from typing import Any

import aiohttp

from tests.conftest import spawn_demo

FOUND = {"source": "traits", "traits": {"birth_name": "Lefèvre", "given_names": ["Hélène"], "sex": "F",
                                        "birth_date": "1955-01-30"}}
NOT_FOUND = {"source": "traits", "traits": {"birth_name": "Moreau", "given_names": ["Hélène"], "sex": "F",
                                            "birth_date": "1955-01-30"}}
REFUSED = {"source": "traits", "traits": {"birth_name": "Lefèvre", "given_names": ["Hélène"],
                                          "birth_date": "1955-02-30"}}


async def run(url: str, token: str, body: dict[str, Any], expected: int, total: int,
              concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    remaining = total
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                async with session.post(f"{url}/v1/ins/search", json=body, headers=headers) as response:
                    await response.read()
                    assert response.status == expected, response.status
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return total / elapsed, latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def bench(url: str, token: str, total: int) -> None:
    async with aiohttp.ClientSession() as session, \
            session.post(f"{url}/v1/cps/login", json={"pin": "1234"},
                         headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()
    await run(url, token, FOUND, 200, 10, 1)  # warm up: TLS session, imports
    for label, body, expected in (("found (INSi call)", FOUND, 200), ("not found (INSi call)", NOT_FOUND, 200),
                                  ("refused (422, no call)", REFUSED, 422)):
        for concurrency in (1, 8):
            rate, latencies = await run(url, token, body, expected, total, concurrency)
            print(f"{label:24} concurrency {concurrency}: {rate:7.1f} req/s  p50 {pct(latencies, 0.5):6.1f} ms  "
                  f"p99 {pct(latencies, 0.99):6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        agent = spawn_demo(Path(tmp) / "agent")
        try:
            asyncio.run(bench(agent.url, agent.token, args.requests))
        finally:
            agent.stop()


if __name__ == "__main__":
    main()
