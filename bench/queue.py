"""Benchmark of the send-order queue. Not a test: it prints figures.

1. Durable creates: POST /v1/orders through the API of a `relais demo` process (as an LGC sees it), with 1 and
   32 concurrent clients: orders per second, p50/p99 latency, and how many fsynced commits carried them.
   Beside it, in the same run and on the same disk: bare SQLite, one INSERT of a row of the same size per
   commit, WAL with synchronous=FULL (one fsync per order). The ratio is the figure: with 32 clients the
   agent's grouped commits should beat one fsync per order.
2. List and filter at scale: a store of 10,000 and 50,000 orders (mostly sent, a few failed: the rare state an
   LGC looks for), served by a `relais demo` process: p50/p99 of `GET /v1/orders` unfiltered, by rare and common
   state, by INS and by author, and of `/v1/status`; beside it, the longest write the retention clean-up holds
   (one batch) on the same store.
3. Drain: N ready orders (created while sending is paused, then resumed), for several patients in turn
   (--drain-patients), sent by the queue to the DMP simulator (`relais sandbox`, its own process) with the
   configured concurrency; beside it, the simulator's own throughput at the same concurrency (the same submissions
   straight from a DmpClient, no queue): submit alone, TD0.2 then TD2.1 per document, and the same with one
   patient's documents one after the other (the order the queue keeps; with one patient, one at a time).
4. Commits per order of the drain, in-process (the executor's loop and a protocol-level DMP): the figure the
   "state changes of one attempt in one commit" rule is about.
5. With --faults N: each DMP fault mode (down, error500, timeout, slow, malformed) in turn while N orders fall
   due: requests the failing DMP received, time to settle every order once it recovers, sent / failed / stored
   twice.

    .venv/bin/python bench/queue.py [--orders 2000] [--drain 10000] [--drain-patients 6] [--skip-drain]
                                    [--list 10000,50000] [--commits 2000] [--faults 100 --outage 20]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib's queue module: take its folder off the path before anything imports it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import os
import random
import sqlite3
import tempfile
import time
import uuid
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from relais_sandbox.identities import D_ARCY, FONTAINE, LEFEVRE, ORSONI, PAT_TROIS, PAT_TROIS_CAMILLE
from tests.conftest import spawn_demo
from tests.support.ins import traits_search
from tests.support.queue import TransactionCounter, make_cda, order_body

# Demo patients the INSi simulator finds by their traits alone, each with an open DMP in the simulator: a drain
# after an outage holds several patients' documents (one patient's go one after the other).
DRAIN_PATIENTS = (PAT_TROIS, PAT_TROIS_CAMILLE, ORSONI, D_ARCY, LEFEVRE, FONTAINE)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def bodies(count: int, delay: int | None = 3600, patient: Any = None) -> list[dict[str, Any]]:
    """Orders of about 2 KB; for ``patient`` (an INSi test identity searched first) or a made-up INS."""
    if patient is None:
        return [order_body(delay=delay, cda=make_cda(extra="x" * 1500)) for _ in range(count)]
    return [order_body(delay=delay, ins=patient.ins, oid=patient.oid,
                       cda=make_cda(ins=patient.ins, oid=patient.oid, extra="x" * 1500)) for _ in range(count)]



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
    # CI-SIS validation off (no kit): its cost is the documents part's, measured on its own.
    agent = spawn_demo(work / "agent-create", "--delay", "3600", env={"RELAIS_REFERENCE": ""})
    try:
        print(f"Durable creates, {orders} orders per run, CDA of about 2 KB (disk: {work})")
        print(f"{'':28} {'orders/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        size = len(json.dumps(bodies(1)[0]))
        rate, lat = bare_sqlite(work / "bare.db", orders, size)
        print(f"{'bare SQLite, 1 commit/order':28} {rate:10.0f} {pct(lat, .5):8.2f} {pct(lat, .99):8.2f}")
        baseline = rate
        asyncio.run(_login(agent.url, agent.token))  # PIN, then the INSi searches the DMP requires (EX_GEN-1530)
        for concurrency in (1, 32):
            rate, lat, _ = asyncio.run(create(agent.url, agent.token, bodies(orders, patient=PAT_TROIS), concurrency))
            print(f"{f'API, {concurrency} client(s)':28} {rate:10.0f} {pct(lat, .5):8.2f} {pct(lat, .99):8.2f}"
                  f"   x{rate / baseline:.2f} of bare SQLite")
    finally:
        agent.stop()


def build_store(data_dir: Path, count: int) -> tuple[str, str]:
    """``count`` orders written straight into a data folder (as months of use would leave it): 99.8 % sent, 0.2 %
    failed, the rest scheduled; 50 patients, 5 authors. Returns an INS and an author to filter on."""
    from agent.domain.orders import NewOrder
    from agent.store import orders as repo
    from agent.store.crypto import ContentCipher
    from agent.store.db import Database
    from agent.store.masterkey import load_master_key

    db = Database(data_dir / "relais.db")
    db.open()
    cipher = ContentCipher(load_master_key(data_dir, "file").key)
    ins_list = [f"2790351215{i:05d}" for i in range(50)]
    began = time.time() - count  # recent: the agent's own retention leaves them alone while it is measured

    def chunk(start: int, size: int) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            for i in range(start, start + size):
                now = began + i
                order, _ = repo.insert_order(conn, cipher, NewOrder(
                    order_id=str(uuid.uuid4()), client_ref=None, client_name="bench", body_hash="h",
                    ins=ins_list[i % 50], ins_oid="1.2.250.1.213.1.4.10", identity_status="QUAL",
                    author_rpps=f"1000000000{i % 5}", document_unique_id=f"2.25.{uuid.uuid4().int}",
                    submission_set_unique_id=f"2.25.{uuid.uuid4().int}", type_code="11488-4",
                    payload=os.urandom(1500), destinations=("dmp",), delay_seconds=0), now, "2026-01-01T00:00:00Z")
                delivery = order.deliveries[0].id
                if i % 500 == 7:
                    state = "failed"
                elif i % 100 == 3:
                    state = "scheduled"
                else:
                    state = "sent"
                conn.execute("UPDATE deliveries SET state = ?, updated_at = ? WHERE id = ?", (state, now, delivery))
        db.submit(fn).result()

    for start in range(0, count, 2000):
        chunk(start, min(2000, count - start))
    db.close()
    return ins_list[3], "10000000002"


async def list_latencies(url: str, token: str, ins: str, author: str, rounds: int) -> dict[str, list[float]]:
    queries = {"GET /v1/orders": "", "state=failed (rare)": "?state=failed", "state=sent": "?state=sent",
               "ins=...": f"?ins={ins}", "author=...": f"?author={author}",
               "state=failed&author=...": f"?state=failed&author={author}"}
    out: dict[str, list[float]] = {name: [] for name in [*queries, "GET /v1/status"]}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            for name, query in queries.items():
                start = time.perf_counter()
                async with session.get(f"{url}/v1/orders{query}", headers=headers) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
                out[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            async with session.get(f"{url}/v1/status", headers=headers) as response:
                await response.read()
            out["GET /v1/status"].append(time.perf_counter() - start)
    return out


def clean_up_hold(data_dir: Path) -> tuple[float, float, int]:
    """The retention clean-up of every order on a copy of the store: the longest single write (what a create
    waits for at worst) and the total, in ms; and how many orders it erased."""
    import shutil

    from agent.store import orders as repo
    from agent.store.db import Database

    copy = data_dir.parent / f"{data_dir.name}-cleanup"
    shutil.copytree(data_dir, copy)
    db = Database(copy / "relais.db")
    db.open()
    cutoff = time.time() + 1  # every settled order is past its retention
    longest, total, erased, cursor = 0.0, 0.0, 0, 0
    batched = hasattr(repo, "erase_expired_batch")
    while cursor is not None:
        after = cursor or 0
        start = time.perf_counter()
        if batched:
            done, cursor = db.submit(
                lambda c, a=after: repo.erase_expired_batch(c, cutoff, cutoff, after_seq=a)).result()
        else:  # the agent before issue 24 #5: one transaction
            done, cursor = db.submit(lambda c: repo.erase_expired_content(c, cutoff, cutoff)).result(), None
        held = time.perf_counter() - start
        longest, total, erased = max(longest, held), total + held, erased + done
    db.close()
    return longest * 1000, total * 1000, erased


def bench_list(work: Path, sizes: list[int], rounds: int) -> None:
    print("List and filter at scale (API of a `relais demo` process, one client)")
    config = work / "list.toml"
    config.write_text('[store]\nmaster_key = "file"\n')
    for size in sizes:
        data_dir = work / f"agent-list-{size}"
        data_dir.mkdir()
        began = time.perf_counter()
        ins, author = build_store(data_dir, size)
        print(f"  {size} orders stored in {time.perf_counter() - began:.1f} s")
        agent = spawn_demo(data_dir, "--delay", "3600", "--config", str(config), env={"RELAIS_REFERENCE": ""},
                           wait=120)
        try:
            result = asyncio.run(list_latencies(agent.url, agent.token, ins, author, rounds))
        finally:
            agent.stop()
        print(f"  {'':30} {'p50 ms':>8} {'p99 ms':>8}")
        for name, values in result.items():
            print(f"  {name:30} {pct(values, .5):8.2f} {pct(values, .99):8.2f}")
        longest, total, erased = clean_up_hold(data_dir)
        print(f"  retention clean-up of {erased} orders: longest write held {longest:.1f} ms, {total:.0f} ms in all")


class DemoDocuments:
    """Fresh CDAs for demo patients (an ANS example re-identified), in turn: the simulated DMP validates them."""

    def __init__(self, rpps: str, patients: int = 1) -> None:
        from agent.reference import find_reference
        from relais_sandbox.dmp import reidentify

        reference = find_reference(marker="ihe")
        assert reference is not None, "kit de référence introuvable (RELAIS_REFERENCE)"
        self.example = (reference / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
        self.reference = reference
        self.patients = DRAIN_PATIENTS[:max(1, patients)]
        self.patient = self.patients[0]
        self.rpps = rpps
        self.reidentify = reidentify
        self._turn = 0

    def next_patient(self) -> Any:
        p = self.patients[self._turn % len(self.patients)]
        self._turn += 1
        return p

    def cda(self, patient: Any = None) -> tuple[bytes, str]:
        p = patient or self.patient
        return self.reidentify(self.example, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                               f"2.25.{uuid.uuid4().int}")

    def body(self, delay: int) -> dict[str, Any]:
        p = self.next_patient()
        cda, _ = self.cda(p)
        return order_body(cda=cda, ins=p.ins, oid=p.oid, rpps=self.rpps, delay=delay)


def bench_drain(work: Path, count: int, concurrency: int, patients: int) -> None:
    import subprocess

    from tests.conftest import RELAIS, ROOT

    port = 7490 + os.getpid() % 100
    state = work / "sandbox"
    sandbox = subprocess.Popen([*RELAIS, "sandbox", "--port", str(port), "--state-dir", str(state),
                                "--data-dir", str(work / "sandbox-data")], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = work / "drain.toml"
    config.write_text(f"[queue]\nconcurrency = {concurrency}\n[sandbox]\nstate_dir = \"{state}\"\n")
    agent = None
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(f"{url}/_sandbox/endpoints")
        agent = spawn_demo(work / "agent-drain", "--sandbox", url, "--delay", "3600", "--config", str(config))
        rpps = asyncio.run(_login(agent.url, agent.token))
        docs = DemoDocuments(rpps, patients)
        direct = min(count, 500)
        # The simulator's own throughput before and after the drain (its registry grows), same concurrency.
        before = asyncio.run(_direct(url, state, docs, direct, concurrency))
        checked_before = asyncio.run(_direct(url, state, docs, direct, concurrency, check_first=True))
        # Created while sending is paused, then resumed: every order is ready when the drain starts, however long
        # the creation took on a busy machine (a due time set in advance could pass while orders were still made).
        asyncio.run(_queue_paused(agent.url, agent.token, True))
        began = time.time()
        items = [docs.body(delay=0) for _ in range(count)]
        asyncio.run(create(agent.url, agent.token, items, 32))
        print(f"Drain: {count} orders created in {time.time() - began:.1f} s, sending paused; all ready when resumed")
        start = time.perf_counter()
        asyncio.run(_queue_paused(agent.url, agent.token, False))
        while True:
            counts = asyncio.run(status(agent.url, agent.token))
            if counts.get("sent", 0) + counts.get("failed", 0) >= count:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        rate = count / elapsed
        after = asyncio.run(_direct(url, state, docs, direct, concurrency))
        checked = asyncio.run(_direct(url, state, docs, direct, concurrency, check_first=True))
        ordered = asyncio.run(_direct(url, state, docs, direct, concurrency, check_first=True, ordered=True))
        print(f"  queue -> simulator, concurrency {concurrency}, {len(docs.patients)} patient(s) in turn: "
              f"{rate:7.1f} orders/s (sent {counts.get('sent')}, failed {counts.get('failed')})")
        print(f"  simulator alone (DmpClient.submit x{direct}, same concurrency): {before:7.1f} submissions/s before,"
              f" {after:7.1f} after; queue at {rate / ((before + after) / 2):.0%} of their mean")
        # The queue's delivery asks TD0.2 before each TD2.1 (two SOAP exchanges per order): the same pair here.
        print(f"  simulator alone, TD0.2 then TD2.1 per document (what the queue's delivery does): "
              f"{checked_before:7.1f} documents/s before, {checked:7.1f} after; queue at "
              f"{rate / ((checked_before + checked) / 2):.0%} of their mean")
        # What the queue may do at best: one patient's documents one after the other (with one patient, one at a
        # time whatever the concurrency).
        print(f"  simulator alone, the same, one patient's documents one after the other: {ordered:7.1f} "
              f"documents/s; queue at {rate / ordered:.0%} of it")
    finally:
        if agent is not None:
            agent.stop()
        sandbox.terminate()
        sandbox.wait(20)


def bench_commits(work: Path, count: int, concurrency: int, dmp_ms: float = 2.0, patients: int = 1) -> None:
    """The drain's cost on disk, in-process: transactions asked for and fsynced commits (the store groups
    concurrent transactions) per order sent by the executor's own loop, with a protocol-level DMP answering after
    about ``dmp_ms`` (``MemoryDmp``; uniform in [0.5, 1.5] x dmp_ms)."""
    from agent.clock import SystemClock
    from tests.support.queue import Harness, MemoryDmp, ins_value

    class SlowDmp(MemoryDmp):
        async def deliver(self, job: Any) -> Any:
            await asyncio.sleep(dmp_ms / 1000 * (0.5 + random.random()))
            return await super().deliver(job)

    async def run() -> tuple[float, float, float]:
        work.mkdir(exist_ok=True)
        harness = Harness(work / "commits.db", SystemClock(), SlowDmp(), concurrency=concurrency)  # type: ignore[arg-type]
        await harness.start()
        await harness.executor.set_paused(True)
        for i in range(count):
            # Through the harness: the INS recorded as obtained through INSi first, as the DMP requires.
            ins = ins_value(1 + i % patients)
            await harness.create(order_body(delay=0, ins=ins, cda=make_cda(ins=ins, extra="x" * 1500)), "bench")
        db = harness.db
        assert db is not None
        transactions = TransactionCounter(db)
        before = db.commits
        began = time.perf_counter()
        await harness.executor.start()
        await harness.executor.set_paused(False)
        while len(harness.dmp.stored) < count or harness.executor._tasks:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - began
        commits = db.commits - before
        await harness.stop()
        return transactions.count / count, commits / count, count / elapsed

    asked, per_order, rate = asyncio.run(run())
    print(f"Drain in-process ({count} ready orders, {patients} patient(s) in turn, concurrency {concurrency}, DMP "
          f"answering in ~{dmp_ms:g} ms): "
          f"{asked:.2f} transactions and {per_order:.2f} fsynced commits per order (grouped), {rate:.0f} orders/s")


def bench_faults(work: Path, count: int, outage: float, concurrency: int) -> None:
    """Each DMP fault mode in turn: ``count`` orders fall due while the simulator fails for ``outage`` seconds;
    printed: the requests the failing DMP received (how hard the queue hits it), then the time from the end of
    the outage to the last order settled, and sent / failed / stored-twice (the simulator's documents)."""
    import subprocess

    from tests.conftest import RELAIS, ROOT

    port = 7390 + os.getpid() % 100
    state = work / "sandbox-faults"
    sandbox = subprocess.Popen([*RELAIS, "sandbox", "--port", str(port), "--state-dir", str(state),
                                "--data-dir", str(work / "sandbox-faults-data")], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = work / "faults.toml"
    config.write_text(f"[queue]\nconcurrency = {concurrency}\nattempt_timeout_seconds = 10\n"
                      f"[sandbox]\nstate_dir = \"{state}\"\n")
    agent = None
    url = f"http://127.0.0.1:{port}"

    async def fault(mode: str) -> int:
        async with aiohttp.ClientSession() as session, session.post(
                f"{url}/_sandbox/dmp/faults", json={"mode": mode, "slow_seconds": 1.0,
                                                     "timeout_seconds": 30.0}) as response:
            assert response.status == 200, await response.text()
            return int((await response.json())["requests"])

    async def stored(uids: set[str]) -> int:
        """How many documents the simulated DMP holds with these uniqueIds (once each, if nothing is duplicated)."""
        async with aiohttp.ClientSession() as session, session.get(
                f"{url}/_sandbox/dmp/documents", params={"ins": PAT_TROIS.ins}) as response:
            body = await response.json()
        return sum(1 for item in body["items"] if item["unique_id"] in uids)

    try:
        _wait_for(f"{url}/_sandbox/endpoints")
        agent = spawn_demo(work / "agent-faults", "--sandbox", url, "--delay", "3600", "--config", str(config))
        rpps = asyncio.run(_login(agent.url, agent.token))
        docs = DemoDocuments(rpps)
        print(f"DMP faults: {count} orders due during a {outage:.0f} s outage of each mode, concurrency {concurrency}"
              f" (default retry policy)")
        previous: dict[str, Any] = {"sent": 0, "failed": 0}
        for mode in ("down", "error500", "timeout", "slow", "malformed"):
            before = asyncio.run(fault(mode))
            bodies, uids = [], set()
            for _ in range(count):
                cda, uid = docs.cda()
                bodies.append(order_body(cda=cda, ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=rpps, delay=0))
                uids.add(uid)
            asyncio.run(create(agent.url, agent.token, bodies, 8))
            time.sleep(outage)
            during = asyncio.run(fault("ok")) - before
            began = time.perf_counter()
            counts: dict[str, Any] = dict(previous)
            while time.perf_counter() - began < 1800:
                counts = asyncio.run(status(agent.url, agent.token))
                if counts.get("sent", 0) + counts.get("failed", 0) >= previous["sent"] + previous["failed"] + count:
                    break
                time.sleep(0.5)
            recovery = time.perf_counter() - began
            sent, failed = (counts.get(k, 0) - previous[k] for k in ("sent", "failed"))
            previous = {"sent": counts.get("sent", 0), "failed": counts.get("failed", 0)}
            twice = asyncio.run(stored(uids)) - sent
            print(f"  {mode:9s}: {during:5d} requests to the failing DMP ({during / outage:6.1f}/s); all settled "
                  f"{recovery:6.1f} s after it recovered; sent {sent}, failed {failed}, stored twice {twice}")
    finally:
        if agent is not None:
            agent.stop()
        sandbox.terminate()
        sandbox.wait(20)


def _wait_for(url: str) -> None:
    import urllib.request

    for _ in range(300):
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} ne répond pas")


async def _direct(url: str, state: Path, docs: DemoDocuments, count: int, concurrency: int,
                  check_first: bool = False, ordered: bool = False) -> float:
    """The same submissions straight from a DmpClient: the simulator's own throughput, the documents of
    ``docs``' patients in turn. ``check_first``: each preceded by the TD0.2 the queue's DMP delivery makes (the
    patient's DMP exists, is open, not blocked). ``ordered``: one patient's documents one after the other, as the
    queue sends them (a worker takes the oldest document whose patient has none under way)."""
    from agent.clock import SystemClock
    from agent.dmp.factory import client_for_sandbox
    from agent.dmp.models import Professional, SubmissionRequest
    from agent.softkey import SoftwareSigner
    from relais_sandbox.pki import SandboxPki

    async with aiohttp.ClientSession() as session, session.get(f"{url}/_sandbox/endpoints") as response:
        endpoint = (await response.json())["endpoints"]["dmp"]
    creds = SandboxPki(state).issue("bench-doctor", common_name="Dr BENCH")
    signer = SoftwareSigner.from_files(creds.cert_path, creds.key_path)
    who = Professional(rpps=docs.rpps, family_name="BENCH", given_name="Dr")
    client = client_for_sandbox(endpoint, SystemClock(), lambda: who, reference_dir=docs.reference)
    requests = []
    for _ in range(count):
        p = docs.next_patient()
        cda, uid = docs.cda(p)
        requests.append(SubmissionRequest(cda=cda, submission_set_unique_id=f"2.25.{uuid.uuid4().int}",
                                          document_unique_id=uid, ins=p.ins, ins_oid=p.oid, signer=signer))
    pending = list(requests)
    busy: set[str] = set()
    free = asyncio.Condition()

    async def take() -> SubmissionRequest | None:
        async with free:
            while pending:
                request = next((r for r in pending if not ordered or r.ins not in busy), None)
                if request is not None:
                    pending.remove(request)
                    busy.add(request.ins)
                    return request
                await free.wait()
            return None

    async def worker() -> None:
        while (request := await take()) is not None:
            if check_first:
                await client.td02(request.ins, request.ins_oid)
            await client.submit(request)
            async with free:
                busy.discard(request.ins)
                free.notify_all()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await client.close()
    return count / elapsed


async def _queue_paused(url: str, token: str, paused: bool) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/v1/queue/{'pause' if paused else 'resume'}",
            headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()


async def _login(url: str, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/cps/login", json={"pin": "1234"}, headers=headers) as response:
            assert response.status == 200, await response.text()
        # The DMP takes only an INS INSi gave on this workstation (CNDA EX_GEN-1530): search it as an LGC would.
        for person in DRAIN_PATIENTS:
            async with session.post(f"{url}/v1/ins/search", json=traits_search(person), headers=headers) as response:
                answer = await response.json()
                assert response.status == 200 and answer["ins"]["value"] == person.ins, answer
        async with session.get(f"{url}/v1/cards", headers=headers) as response:
            return str((await response.json())["cps"]["holder"]["rpps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--drain", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=4, help="the queue's [queue] concurrency for the drain")
    parser.add_argument("--drain-patients", type=int, default=len(DRAIN_PATIENTS),
                        help=f"patients the drained documents go to, in turn (1-{len(DRAIN_PATIENTS)})")
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--list", default="10000,50000", help="store sizes of the list benchmark ('' to skip)")
    parser.add_argument("--list-rounds", type=int, default=100, help="requests of each kind per size")
    parser.add_argument("--skip-creates", action="store_true")
    parser.add_argument("--commits", type=int, default=2000, help="orders of the in-process commits count (0: skip)")
    parser.add_argument("--dmp-ms", type=float, default=2.0, help="the in-process DMP's answer time (milliseconds)")
    parser.add_argument("--faults", type=int, default=0,
                        help="orders due during each DMP fault mode's outage (0: skip the fault matrix)")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds each fault mode lasts")
    parser.add_argument("--dir", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relais-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        if not args.skip_creates:
            bench_creates(work, args.orders)
        if args.list:
            bench_list(work, [int(n) for n in args.list.split(",")], args.list_rounds)
        if args.commits:
            for patients in sorted({1, args.drain_patients}):
                bench_commits(work / f"commits-{patients}", args.commits, args.concurrency, args.dmp_ms, patients)
        if not args.skip_drain:
            bench_drain(work, args.drain, args.concurrency, args.drain_patients)
        if args.faults:
            bench_faults(work, args.faults, args.outage, args.concurrency)


if __name__ == "__main__":
    main()
