"""Card benchmarks on the real stack: pcscd + vpcd + our emulators, SoftHSM2, a real agent on a loopback port.

1. Latency from an emulator's connection to vpcd to the ``card.inserted`` event on ``/v1/events`` (20 runs), against
   a baseline in the same process: the same insertion seen by a bare ``PcscBackend`` listener (no identification,
   no bus, no HTTP).
2. Signatures per second through ``POST /v1/sign`` (raw, SHA256-RSA PKCS#1 v1.5, 2048-bit key in SoftHSM2), against
   the baseline of signing straight through the PKCS#11 token (measured before and after the HTTP figures: their
   mean is the floor). The HTTP clients run in a process of their own, as an LGC does: in the agent's process they
   would share its event loop and its GIL, and the figure would be the client's cost as much as the agent's.

Run: ``.venv/bin/python bench/cards.py`` (starts pcscd if none runs, and stops it afterwards); ``--sign-only`` skips
the insertion figures. Prints figures only.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on the path, where other benchmarks' names (queue.py...) would shadow
# the standard library's: the project root goes there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse
import asyncio
import base64
import multiprocessing
import os
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import aiohttp

from agent.cards.pcsc import PcscBackend
from agent.cli.wiring import Agent
from agent.config import load_config
from agent.domain.vitale import VitaleBeneficiary
from agent.store.tokens import create_token
from relais_sandbox.cards_vpcd import PRIVATE_VPCD_PORT, VPCD_READERS, CpsApplet, VitaleApplet, VpcdCard
from tests.support.cards import _readers, create_softhsm_token, event_stream, spawn_pcscd

RUNS = 20
SIGN_SECONDS = 3.0
# Between a removal and the next insertion, as in both measured loops: pcscd polls its readers on a cycle, and an
# insertion right after its poll waits the whole cycle; the pause puts every run at the same point of the cycle,
# so the difference between the agent and the bare listener is the agent's own cost.
PACE_SECONDS = 0.6
BENEFICIARIES = [VitaleBeneficiary(0, "279035121518989", "PAT-TROIS", ["DOMINIQUE"], "PAT-TROIS", "1979-03-28")]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def show(name: str, values_ms: list[float]) -> None:
    print(f"  {name:<44} median {statistics.median(values_ms):7.1f} ms   p90 {pct(values_ms, 0.9):7.1f} ms   "
          f"min {min(values_ms):6.1f}   max {max(values_ms):6.1f}   (n={len(values_ms)})")


def ensure_pcscd() -> subprocess.Popen[bytes] | None:
    if _readers() is not None:
        return None  # the system's pcscd, with vsmartcard's configuration
    try:
        proc = spawn_pcscd(Path(tempfile.mkdtemp(prefix="relais-bench-pcscd-")))
    except RuntimeError as exc:
        raise SystemExit(f"{exc}\n(install vsmartcard-vpcd before starting pcscd)") from exc
    os.environ["RELAIS_VPCD_PORT"] = str(PRIVATE_VPCD_PORT)
    return proc


def baseline_insertion() -> list[float]:
    """Connection to callback, bare monitor."""
    seen = threading.Event()

    class Listener:
        def service_changed(self, up: bool, detail: str = "") -> None: ...

        def readers_changed(self, readers: list[str]) -> None: ...

        def card_inserted(self, reader: str, atr: bytes) -> None:
            seen.set()

        def card_removed(self, reader: str) -> None: ...

    backend = PcscBackend()
    backend.start(Listener())
    time.sleep(0.5)
    out = []
    try:
        for _ in range(RUNS):
            seen.clear()
            start = time.perf_counter()
            card = VpcdCard(VitaleApplet(BENEFICIARIES), slot=0).insert()
            if not seen.wait(10):
                raise SystemExit("no insertion seen")
            out.append((time.perf_counter() - start) * 1000)
            card.pull()
            time.sleep(PACE_SECONDS)
    finally:
        backend.stop()
    return out


def http_rate(url: str, token: str, what: str, clients: int, seconds: float) -> tuple[int, float]:
    """(requests, seconds) of ``clients`` concurrent keep-alive clients, each sending ``what`` back to back. Runs in
    the client process (an LGC is another process than the agent)."""
    body = {"format": "raw", "data_base64": base64.b64encode(b"x" * 1024).decode()}
    headers = {"Authorization": f"Bearer {token}"}
    method, path, payload, status = {
        "sign": ("POST", "/v1/sign", body, 200),
        # The HTTP round trip alone: this client, aiohttp, the guard, no token, nothing signed.
        "health": ("GET", "/v1/health", None, 200),
        # The same request refused before the card: HTTP, guard, token, JSON, the body's schema.
        "refused": ("POST", "/v1/sign", {**body, "format": "none"}, 422),
    }[what]

    async def run() -> tuple[int, float]:
        done = 0
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(f"{url}", connector=connector) as http:
            async def send() -> None:
                async with http.request(method, path, json=payload, headers=headers) as response:
                    assert response.status == status, await response.text()
                    await response.read()

            for _ in range(10 * clients):  # connections open, both sides warm
                await send()
            began = time.perf_counter()

            async def client() -> None:
                nonlocal done
                while time.perf_counter() - began < seconds:
                    await send()
                    done += 1

            await asyncio.gather(*(client() for _ in range(clients)))
            return done, time.perf_counter() - began

    return asyncio.run(run())


async def agent_figures(softhsm: Any, tmp: Path, *, insertions: bool
                        ) -> tuple[list[float], list[float], list[float], dict[int, tuple[float, float]], float,
                                   float]:
    config = load_config(None, agent={"data_dir": str(tmp / "data")}, api={"port": 0},
                         store={"master_key": "file"},
                         cards={"pcsc": True, "pkcs11_module": softhsm.module, "token_label": softhsm.token_label})
    # Started before the agent, so that its start-up competes with nothing measured.
    clients = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    clients.submit(time.sleep, 0).result()
    agent = Agent(config)
    await agent.start()
    assert agent.services is not None
    token = await agent.services.db.write(lambda conn: create_token(conn, "bench", "2026-01-01T00:00:00Z"))

    class Client:
        url = f"http://127.0.0.1:{agent.port}"

        @staticmethod
        def headers() -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

    vitale_ms: list[float] = []
    cps_ms: list[float] = []
    loop = asyncio.get_running_loop()

    async def over_http(what: str, count: int) -> tuple[float, float]:
        """(requests per second, CPU seconds of the agent's event loop thread per request)."""
        cpu = time.thread_time()  # this coroutine runs on the loop's thread, as the agent does
        done, elapsed = await loop.run_in_executor(clients, http_rate, Client.url, token, what, count, SIGN_SECONDS)
        return done / elapsed, (time.thread_time() - cpu) / done

    try:
        async with aiohttp.ClientSession() as http, event_stream(http, Client) as events:
            await asyncio.sleep(0.5)
            for _ in range(RUNS if insertions else 0):
                start = time.perf_counter()
                card = VpcdCard(VitaleApplet(BENEFICIARIES), slot=0).insert()
                await events.wait("card.inserted", reader=VPCD_READERS[0])
                vitale_ms.append((time.perf_counter() - start) * 1000)
                card.pull()
                await events.wait("card.removed", reader=VPCD_READERS[0])
                await asyncio.sleep(PACE_SECONDS)
            for _ in range(RUNS if insertions else 0):
                start = time.perf_counter()
                card = VpcdCard(CpsApplet(), slot=1).insert()
                await events.wait("card.inserted", reader=VPCD_READERS[1])
                cps_ms.append((time.perf_counter() - start) * 1000)
                card.pull()
                await events.wait("card.removed", reader=VPCD_READERS[1])
                await asyncio.sleep(PACE_SECONDS)

            cps = VpcdCard(CpsApplet(), slot=1).insert()
            await events.wait("card.inserted", reader=VPCD_READERS[1])
            async with http.post(f"{Client.url}/v1/cps/login", json={"pin": softhsm.pin},
                                 headers=Client.headers()) as response:
                assert response.status == 200, await response.text()
            signer = agent.services.cards.require_signer()

            async def direct() -> float:
                count, start = 0, time.perf_counter()
                while time.perf_counter() - start < SIGN_SECONDS:
                    await asyncio.to_thread(signer.sign, b"x" * 1024)
                    count += 1
                return count / (time.perf_counter() - start)

            directs = [await direct()]
            rates = {clients: await over_http("sign", clients) for clients in (1, 4)}
            directs.append(await direct())
            round_trip = (await over_http("health", 1))[0]
            post_trip = (await over_http("refused", 1))[0]
            cps.pull()
    finally:
        await agent.stop()
        clients.shutdown()
    return vitale_ms, cps_ms, directs, rates, round_trip, post_trip


def main() -> None:
    parser = argparse.ArgumentParser(description="Card benchmarks (figures only).")
    parser.add_argument("--sign-only", action="store_true", help="signatures only, no insertion figures")
    args = parser.parse_args()
    pcscd = ensure_pcscd()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            softhsm = create_softhsm_token(Path(tmp))
            if not args.sign_only:
                print("card insertion: emulator connects to vpcd -> event")
                baseline = baseline_insertion()
                show("baseline: PcscBackend callback", baseline)
            vitale_ms, cps_ms, directs, over_http, round_trip, post_trip = asyncio.run(
                agent_figures(softhsm, Path(tmp), insertions=not args.sign_only))
            if not args.sign_only:
                show("Vitale -> card.inserted on /v1/events (read)", vitale_ms)
                show("CPS -> card.inserted on /v1/events (PKCS#11)", cps_ms)
                floor = statistics.median(baseline)
                print(f"  the agent's own cost (median - baseline median): Vitale "
                      f"{statistics.median(vitale_ms) - floor:+.1f} ms, "
                      f"CPS {statistics.median(cps_ms) - floor:+.1f} ms")
            direct = statistics.mean(directs)
            print("signatures, RSA-2048 PKCS#1 v1.5 SHA-256, SoftHSM2, 1 KiB of data; HTTP clients in another process")
            print(f"  baseline: Signer.sign in a thread, sequential   {direct:8.0f} /s   "
                  f"(before {directs[0]:.0f}, after {directs[1]:.0f})")
            for clients, (value, cpu) in over_http.items():
                print(f"  POST /v1/sign format raw, {clients} client(s)            {value:8.0f} /s   "
                      f"x{value / direct:.2f} of the baseline   (event loop CPU {cpu * 1e6:.0f} µs/request)")
            print(f"  GET /v1/health, 1 client (HTTP round trip alone) {round_trip:8.0f} /s")
            extra = 1000 / over_http[1][0] - 1000 / direct - 1000 / post_trip
            print(f"  POST /v1/sign refused (422) before the card      {post_trip:8.0f} /s   "
                  f"/v1/sign's cost beyond signer + this round trip: {extra:+.2f} ms")
    finally:
        if pcscd is not None:
            pcscd.terminate()
            pcscd.wait(10)


if __name__ == "__main__":
    main()
