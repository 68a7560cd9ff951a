"""Benchmark of the localhost API: GET /v1/status over loopback, with 1 and 32 concurrent clients.

Starts `relais demo` as its own process (as an LGC sees it), then prints requests per second, p50/p99
latency, and the agent's resident memory at start and after 10,000 requests. Not a test: figures only.

    .venv/bin/python bench/api.py [--requests 10000]

``--memory`` prints only the idle agent's resident memory, at the first start (a new data folder: the master key is
made) and at a restart on the same folder (the key is read), with the configuration as it is (``store.master_key``
"auto": the OS keyring when there is one), beside its floor in the same run: the same agent with its key in a file
(``store.master_key = "file"``), which never asks any keyring. Set RELAIS_REFERENCE for the kit to be configured.

    .venv/bin/python bench/api.py --memory [--idle 20] [--runs 3] [--alone]

``--alone``: the simulators run in their own ``relais sandbox`` process (``relais demo --sandbox URL``), so the
figure is the agent's alone, as on a workstation; without it they share the demo agent's process.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where bench/queue.py would shadow the standard
# library's queue module: put the project root there instead, before anything imports queue.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence

import aiohttp

from tests.conftest import spawn_demo, spawn_sandbox


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def memory_line(pid: int) -> str:
    """The agent's RSS, and its child processes' (CI-SIS validation workers, multiprocessing's tracker) apart."""
    kids = {c: rss_mib(c) for c in children(pid)}
    detail = ", ".join(f"{Path(f'/proc/{c}/comm').read_text().strip()} {r:.0f}" for c, r in kids.items())
    return f"agent {rss_mib(pid):.1f} MiB; child processes: {detail or 'none'}"


async def run(url: str, token: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency)

    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                async with session.get(f"{url}/v1/status", headers=headers) as response:
                    await response.read()
                    assert response.status == 200
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return total / elapsed, latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def idle_rss(data_dir: Path, idle: float, extra: Sequence[str]) -> float:
    """The agent's RSS ``idle`` seconds after `relais demo` answers (one request first, as an LGC would send)."""
    agent = spawn_demo(data_dir, "--cards", "none", *extra)
    try:
        asyncio.run(run(agent.url, agent.token, 1, 1))
        time.sleep(idle)
        return rss_mib(agent.proc.pid)
    finally:
        agent.stop()


def memory(idle: float, runs: int, alone: bool) -> None:
    """Idle RSS at the first start and at a restart, as configured and with a file key (the floor), interleaved."""
    figures: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        file_config = Path(tmp) / "file-key.toml"
        file_config.write_text('[store]\nmaster_key = "file"\n')
        sandbox = spawn_sandbox(Path(tmp) / "sandbox", Path(tmp) / "sandbox.log") if alone else None
        where: tuple[str, ...] = ("--sandbox", sandbox.url) if sandbox is not None else ()
        print("simulators in their own process: the agent's figure alone" if alone
              else "simulators inside the demo agent's process", flush=True)
        try:
            _memory_runs(Path(tmp), file_config, where, idle, runs, figures)
        finally:
            if sandbox is not None:
                sandbox.stop()
    print(f"idle agent RSS, {idle:g} s after its start, median of {runs}:")
    for moment in ("first start", "restart"):
        configured = statistics.median(figures[("as configured", moment)])
        floor = statistics.median(figures[("file key (floor)", moment)])
        print(f"  {moment:11s}: as configured {configured:.1f} MiB, file key (floor) {floor:.1f} MiB, "
              f"ratio {configured / floor:.3f} ({configured - floor:+.1f} MiB)")


def _memory_runs(tmp: Path, file_config: Path, where: Sequence[str], idle: float, runs: int,
                 figures: dict[tuple[str, str], list[float]]) -> None:
    for run_number in range(runs):
        for label, extra in (("as configured", (*where,)), ("file key (floor)",
                                                             (*where, "--config", str(file_config)))):
            data_dir = tmp / f"run{run_number}-{len(extra)}"
            for moment in ("first start", "restart"):
                rss = idle_rss(data_dir, idle, extra)
                figures.setdefault((label, moment), []).append(rss)
                print(f"run {run_number + 1}, {label:16s} {moment:11s}: agent {rss:.1f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds to wait after the start before measuring "
                        "(lets the background compilation of the kit's schematrons finish)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds idle before the last memory reading "
                        "(the kit's schematrons compile in the background after the start)")
    parser.add_argument("--memory", action="store_true", help="only the idle RSS at the first start and at a restart, "
                        "beside an agent whose master key is a file (see the module's docstring)")
    parser.add_argument("--alone", action="store_true", help="with --memory: the simulators in their own process")
    parser.add_argument("--runs", type=int, default=3, help="with --memory: runs of each case (median printed)")
    args = parser.parse_args()
    if args.memory:
        memory(args.idle, args.runs, args.alone)
        return
    with tempfile.TemporaryDirectory() as tmp:
        agent = spawn_demo(Path(tmp) / "bench", "--cards", "none")
        try:
            time.sleep(0.5 + args.settle)
            start_rss = rss_mib(agent.proc.pid)
            print(f"agent pid {agent.proc.pid}, RSS {args.settle + 0.5:g} s after the start: {start_rss:.1f} MiB")
            asyncio.run(run(agent.url, agent.token, 200, 4))  # warm-up
            done = 0
            for concurrency in (1, 32):
                rps, lat = asyncio.run(run(agent.url, agent.token, args.requests, concurrency))
                done += args.requests
                print(f"GET /v1/status, {concurrency:>2} client(s): {rps:8.0f} req/s  "
                      f"p50 {pct(lat, 0.50):6.2f} ms  p99 {pct(lat, 0.99):6.2f} ms  "
                      f"(mean {statistics.mean(lat) * 1000:.2f} ms, n={len(lat)})")
            print(f"RSS after {done + 200} requests: {rss_mib(agent.proc.pid):.1f} MiB")
            time.sleep(args.idle)
            print(f"RSS idle {args.idle:g} s later: {memory_line(agent.proc.pid)}")
        finally:
            agent.stop()


if __name__ == "__main__":
    main()
