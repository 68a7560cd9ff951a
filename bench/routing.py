"""Benchmark of order forwarding between the practice's workstations. Not a test: it prints figures.

Two `relais demo` processes on loopback, paired through `relais practice` as a practice would: "Accueil" has no
card, "Cabinet" holds the demo CPS. For each order: the origin's 201 (accepted, on disk) is time zero; the
holder's own ``created_at`` (stamped in the transaction that stores it, acknowledged after its fsync) is the
end. Both processes read the same system clock. Orders carry a one-hour delay, so nothing leaves for the DMP.

1. One at a time: 200 orders, each measured alone (the next one starts once the holder has the previous).
2. Burst: 200 orders posted at once by 16 clients: the latency each one sees, and the forwarding throughput.

    .venv/bin/python bench/routing.py [--orders 200]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py is named like the stdlib's queue module: take this folder off the path before anything imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import socket
import subprocess
import tempfile
import time
from datetime import datetime
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import RELAIS, ROOT, AgentProcess, spawn_demo
from tests.support.queue import make_cda, order_body

DOCTOR = "01234567897"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def cli(data_dir: Path, config: Path, *args: str) -> str:
    done = subprocess.run([*RELAIS, *args, "--data-dir", str(data_dir), "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    return done.stdout


def start(root: Path, name: str, cards: str, peers: dict[str, int]) -> tuple[AgentProcess, Path]:
    others = [f"127.0.0.1:{port}" for other, port in peers.items() if other != name]
    config = root / f"{name}.toml"
    config.write_text(f'[agent]\nworkstation_id = "{name}"\nlog_level = "WARNING"\n[practice]\ndiscovery = false\n'
                      f'presence_interval_seconds = 1.0\nstatic_peers = {json.dumps(others)}\n')
    agent = spawn_demo(root / name, "--config", str(config), "--cards", cards, "--peer-port", str(peers[name]),
                       "--delay", "3600", wait=60)
    return agent, config


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def stored_at(http: aiohttp.ClientSession, holder: AgentProcess, order_id: str) -> float:
    headers = {"Authorization": f"Bearer {holder.token}"}
    while True:
        async with http.get(f"{holder.url}/v1/orders/{order_id}", headers=headers) as response:
            if response.status == 200:
                return stamp((await response.json())["created_at"])
        await asyncio.sleep(0.002)


async def post(http: aiohttp.ClientSession, origin: AgentProcess, body: dict[str, Any]) -> tuple[str, float]:
    headers = {"Authorization": f"Bearer {origin.token}"}
    async with http.post(f"{origin.url}/v1/orders", json=body, headers=headers) as response:
        accepted = time.time()
        assert response.status == 201, await response.text()
        return str((await response.json())["id"]), accepted


async def run(count: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="relais-bench-routing-"))
    ports = {"Cabinet": free_port(), "Accueil": free_port()}
    holder, holder_config = start(root, "Cabinet", "cps", ports)
    origin, origin_config = start(root, "Accueil", "none", ports)
    try:
        cli(holder.data_dir, holder_config, "practice", "init")
        code = cli(holder.data_dir, holder_config, "practice", "invite").split()[0]
        cli(origin.data_dir, origin_config, "practice", "join", code, "--peer", f"127.0.0.1:{ports['Cabinet']}")
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {origin.token}"}
            for _ in range(300):
                async with http.get(f"{origin.url}/v1/peers", headers=headers) as response:
                    peers = (await response.json())["peers"]
                if any((p.get("cps") or {}).get("rpps") == DOCTOR for p in peers):
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the origin never saw the CPS holder")
            bodies = [order_body(rpps=DOCTOR, delay=3600, cda=make_cda(extra="x" * 1500)) for _ in range(2 * count)]

            single: list[float] = []
            for body in bodies[:count]:
                order_id, accepted = await post(http, origin, body)
                single.append(await stored_at(http, holder, order_id) - accepted)
            print(f"one at a time, {count} orders: added latency origin accepted -> holder stored "
                  f"p50 {pct(single, 0.5):.1f} ms, p99 {pct(single, 0.99):.1f} ms, max {max(single) * 1000:.1f} ms")

            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            for body in bodies[count:]:
                queue.put_nowait(body)
            accepted_at: dict[str, float] = {}

            async def client() -> None:
                while not queue.empty():
                    order_id, accepted = await post(http, origin, queue.get_nowait())
                    accepted_at[order_id] = accepted

            began = time.time()
            await asyncio.gather(*(client() for _ in range(16)))
            ends = {i: await stored_at(http, holder, i) for i in accepted_at}
            burst = [ends[i] - accepted_at[i] for i in accepted_at]
            span = max(ends.values()) - began
            print(f"burst of {count} from 16 clients: p50 {pct(burst, 0.5):.1f} ms, p99 {pct(burst, 0.99):.1f} ms; "
                  f"all stored at the holder {span:.2f} s after the first post ({count / span:.0f} orders/s)")
    finally:
        for agent in (origin, holder):
            agent.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.orders))


if __name__ == "__main__":
    main()
