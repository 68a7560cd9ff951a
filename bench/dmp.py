"""Benchmark of DMP submissions (ITI-41): a 100 kB CDA to the DMP simulator over mutual TLS.

Starts `relais sandbox` as its own process (so the simulator's work does not share this process's event loop),
then submits N documents one after the other and with C concurrent submissions, and prints submissions per
second, TD0.2 and ObjectRef look-up latency, and how the client's time splits between building the metadata,
signing (IHE DSG XAdES + VIHF) and the network round trip (which includes the simulator's checks: schema, VIHF and
DSG verification, hash, storage).
Not a test: figures only.

    .venv/bin/python bench/dmp.py [--requests 100] [--concurrency 4]
"""

from __future__ import annotations

import sys
from pathlib import Path

# The project root, not bench/, first on the path: bench/queue.py would shadow the standard library's queue.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from agent.clock import SystemClock
from agent.dmp import client as client_module
from agent.dmp import submission, vihf
from agent.dmp.factory import client_for_sandbox
from agent.dmp.models import Professional, SubmissionRequest
from relais_sandbox.dmp import reidentify
from relais_sandbox.identities import PAT_TROIS
from tests.conftest import ROOT, reference_root

DOCTOR = Professional("10001234567", "DEMO", "Alice")


class Timings:
    def __init__(self) -> None:
        self.build: list[float] = []
        self.sign: list[float] = []


def instrument(t: Timings) -> None:
    """Wrap the signing calls and the metadata build so their share of the client's time can be printed."""
    import agent.xml.signing as signing

    original_detached = submission.sign_xades_detached
    original_build = client_module.build_submission
    original_assertion = client_module.signed_assertion

    def timed_detached(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return original_detached(*a, **k)
        finally:
            t.sign.append(time.perf_counter() - start)

    def timed_build(*a: Any, **k: Any) -> Any:
        before = len(t.sign)
        start = time.perf_counter()
        result = original_build(*a, **k)
        signing_time = sum(t.sign[before:])
        t.build.append(time.perf_counter() - start - signing_time)
        return result

    def timed_assertion(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return original_assertion(*a, **k)
        finally:
            t.sign.append(time.perf_counter() - start)

    submission.sign_xades_detached = timed_detached  # type: ignore[assignment]
    client_module.build_submission = timed_build  # type: ignore[assignment]
    client_module.signed_assertion = timed_assertion  # type: ignore[assignment]
    _ = (signing, vihf)


def make_cda(template: bytes, size: int) -> tuple[bytes, str]:
    uid = f"2.25.{uuid.uuid4().int}"
    cda, uid = reidentify(template, PAT_TROIS.ins, PAT_TROIS.oid, PAT_TROIS.birth_name, PAT_TROIS.first_given_name,
                          PAT_TROIS.sex, PAT_TROIS.birth_date, uid)
    pad = max(0, size - len(cda))
    filler = base64.b64encode(os.urandom(pad * 3 // 4 + 3))[:pad]
    cda = cda.replace(b"</ClinicalDocument>", b"<!-- " + filler + b" --></ClinicalDocument>")
    return cda, uid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(requests: int, concurrency: int, size: int) -> None:
    reference = reference_root()
    template = (reference / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "RELAIS_REFERENCE": str(reference)}
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "sandbox", "--port", str(port), "--state-dir",
                                 tmp], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            described = None
            for _ in range(300):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/endpoints") as r:
                        described = json.loads(r.read())
                    break
                except OSError:
                    time.sleep(0.1)
            assert described is not None, "relais sandbox did not start"
            client = client_for_sandbox(described["endpoints"]["dmp"], SystemClock(), lambda: DOCTOR,
                                        reference_dir=reference, total_timeout=60.0)
            timings = Timings()
            instrument(timings)
            docs = [make_cda(template, size) for _ in range(requests * 2 + 2)]

            async def submit(i: int) -> float:
                cda, uid = docs[i]
                start = time.perf_counter()
                await client.submit(SubmissionRequest(cda=cda, submission_set_unique_id=f"2.25.{uuid.uuid4().int}",
                                                      document_unique_id=uid, ins=PAT_TROIS.ins,
                                                      ins_oid=PAT_TROIS.oid))
                return time.perf_counter() - start

            await submit(len(docs) - 1)  # warm up (TLS session, schema caches)
            timings.build.clear()
            timings.sign.clear()
            start = time.perf_counter()
            latencies = [await submit(i) for i in range(requests)]
            sequential = time.perf_counter() - start
            build, sign = sum(timings.build), sum(timings.sign)
            total = sum(latencies)
            print(f"document: {len(docs[0][0]) / 1024:.0f} kB CDA, {requests} ITI-41 submissions")
            p50 = statistics.median(latencies) * 1000
            p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
            print(f"sequential: {requests / sequential:.1f} submissions/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms")
            print(f"  client time split: metadata build {build / total:.0%} ({build / requests * 1000:.1f} ms), "
                  f"signing DSG+VIHF {sign / total:.0%} ({sign / requests * 1000:.1f} ms), "
                  f"network + simulator {(total - build - sign) / total:.0%} "
                  f"({(total - build - sign) / requests * 1000:.1f} ms)")

            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(requests, requests * 2):
                queue.put_nowait(i)

            async def worker() -> None:
                while not queue.empty():
                    await submit(queue.get_nowait())

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            print(f"concurrency {concurrency}: {requests / (time.perf_counter() - start):.1f} submissions/s")

            async def timed(call: Callable[[], Awaitable[object]]) -> float:
                begin = time.perf_counter()
                await call()
                return time.perf_counter() - begin

            td02 = [await timed(lambda: client.td02(PAT_TROIS.ins, PAT_TROIS.oid)) for _ in range(requests)]
            lookups = [await timed(lambda i=i: client.entry_uuids(PAT_TROIS.ins, PAT_TROIS.oid, [docs[i][1]]))
                       for i in range(requests)]
            for name, values in (("TD0.2 (HL7v3)", td02), ("GetDocuments ObjectRef by uniqueId", lookups)):
                print(f"{name}: p50 {statistics.median(values) * 1000:.0f} ms, "
                      f"p99 {sorted(values)[int(len(values) * 0.99) - 1] * 1000:.0f} ms")
            await client.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--size", type=int, default=100 * 1024)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency, args.size))
