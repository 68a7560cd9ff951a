"""Benchmark of MSSanté deliveries: packaging (DMP metadata + DSG signature + XDM zip + MIME) per document, then
submissions over TLS to the sandbox operator on loopback (one connection per delivery, as the queue does), and
one acknowledgement reading of the whole INBOX. Not a test: figures only.

    .venv/bin/python bench/mss.py [--count 50] [--reference ../shared/reference]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/queue.py must not shadow the stdlib queue

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time

from agent.clock import SystemClock
from agent.config import MssSection
from agent.mss import mime, xdm
from agent.mss.factory import settings_from
from agent.mss.service import MssSender, Outgoing
from relais_sandbox.host import SandboxContext
from relais_sandbox.mss import MssSimulator
from relais_sandbox.pki import SandboxPki
from tests.conftest import reference_root
from tests.integration.test_mss_transport import INS, OID, UID, packager


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(count: int, reference: Path) -> None:
    cda = (reference / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        pki = SandboxPki(Path(tmp))
        sim = MssSimulator()
        endpoint = await sim.start(SandboxContext(Path(tmp), pki))
        settings = settings_from(MssSection(), endpoint)
        assert settings is not None
        sender = MssSender(settings, packager(pki), SystemClock())

        build: list[float] = []
        size = 0
        for i in range(count):
            out = Outgoing(f"bench-{i}", "mss:dr.x@medecin.demo.mssante.fr", cda, INS, OID, UID, "1.2.250.1.999.8")
            began = time.perf_counter()
            _, _, data = await sender.build(out, dt.datetime.now(dt.UTC))
            build.append(time.perf_counter() - began)
            size = len(data)
        metadata, docs = await sender.packager(out)
        began = time.perf_counter()
        for _ in range(count):
            xdm.read_xdm(xdm.build_xdm(metadata, docs, sender=settings.sender))
        zip_only = (time.perf_counter() - began) / count

        send: list[float] = []
        for i in range(count):
            out = Outgoing(f"send-{i}", "mss:dr.x@medecin.demo.mssante.fr", cda, INS, OID, UID, "1.2.250.1.999.9")
            began = time.perf_counter()
            await sender.send(out)
            send.append(time.perf_counter() - began)
        began = time.perf_counter()
        batch = await sender.read_acks(0, 0)
        read = time.perf_counter() - began
        await sim.stop()

    print(f"CS9 ({len(cda)} bytes) -> message of {size} bytes, Message-ID like "
          f"{mime.message_id('bench-0', 'mss:x', 'demo.mssante.fr')}")
    print(f"package (DMP metadata + XAdES DSG + XDM + MIME): p50 {statistics.median(build) * 1000:.1f} ms, "
          f"p99 {pct(build, 0.99) * 1000:.1f} ms")
    print(f"XDM zip build + read-back check only: {zip_only * 1000:.2f} ms")
    print(f"send over TLS (package + SMTP session): p50 {statistics.median(send) * 1000:.1f} ms, "
          f"p99 {pct(send, 0.99) * 1000:.1f} ms, {count / sum(send):.1f} deliveries/s sequential")
    print(f"acknowledgements: {len(batch.acks)} reports read in {read * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--reference", type=Path, default=reference_root())
    args = parser.parse_args()
    asyncio.run(main(args.count, args.reference))
