"""CDA validation in worker processes (issue 23 item 1, issue 24 item 1): the agent answers while Saxon runs a
hostile document, a document over the time budget stops its worker (clear error, the next one works), and a
document over the size budget never reaches a worker."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

from agent.cda.validation import ValidationReport
from agent.cda.worker import PoolSettings, ValidationPool, VerdictCache, default_workers
from agent.errors import InvalidInput, PayloadTooLarge
from tests.support.queue import order_body

HL7 = "{urn:hl7-org:v3}"
VAC_NOTE = "VAC-NOTE_2023.01.xml"


def hostile_cda(kit: Path, copies: int = 20_000) -> bytes:
    """A kit example with its root templateId repeated: every copy fails a rule, and each finding's location
    counts the preceding siblings, so Saxon works for minutes on about 1 MB (issue 23's crafted CDA)."""
    root = etree.fromstring((kit / "ExemplesCDA" / VAC_NOTE).read_bytes())
    template = root.find(f"{HL7}templateId")
    assert template is not None
    for _ in range(copies):
        template.addnext(etree.fromstring(etree.tostring(template)))
    return etree.tostring(root)


async def wait_checking(pool: ValidationPool) -> None:
    """Until a worker runs a document's checks (Saxon is at work)."""
    while pool.checking == 0:
        await asyncio.sleep(0.05)


@pytest.fixture
async def pool(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ValidationPool]:
    cache = tmp_path_factory.getbasetemp() / "cda-worker-cache"
    async with ValidationPool(kit, cache, PoolSettings(workers=1, timeout_seconds=2, warm_up=False,
                                                       max_bytes=4 * 1024 * 1024)) as running:
        yield running


async def test_a_validation_over_its_time_budget_kills_its_worker_and_the_next_one_works(
        pool: ValidationPool, kit: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        await pool.validate(hostile_cda(kit))
    assert refused.value.code == "cda_validation_timeout"
    assert "n'a pas pu être validé" in refused.value.message
    assert pool.replaced == 1 and pool.checking == 0
    assert len(pool.verdicts) == 0  # an engine's refusal is never kept as a verdict
    # The next document gets a fresh worker (given all the time it needs: this checks the replacement, not speed).
    pool.settings = dataclasses.replace(pool.settings, timeout_seconds=600)
    report = await pool.validate((kit / "ExemplesCDA" / VAC_NOTE).read_bytes())
    assert report.valid, [e.as_dict() for e in report.errors[:3]]
    assert "CI-SIS_VAC-NOTE_2023.01.sch" in report.checked


async def test_the_worker_answers_the_validators_own_refusals(pool: ValidationPool) -> None:
    with pytest.raises(InvalidInput) as refused:
        await pool.validate(b'<!DOCTYPE x [<!ENTITY e "x">]><ClinicalDocument xmlns="urn:hl7-org:v3"/>')
    assert refused.value.code != "cda_validation_timeout"
    report = await pool.validate(b'<x xmlns="urn:other"/>')
    assert not report.valid and report.errors[0].source == "xsd"
    assert pool.replaced == 0


async def test_the_verdict_of_a_document_already_checked_is_answered_without_a_worker(
        pool: ValidationPool, kit: Path) -> None:
    note = (kit / "ExemplesCDA" / VAC_NOTE).read_bytes()
    # All the time a fresh worker needs on a busy machine: this checks where the answer comes from, not speed.
    pool.settings = dataclasses.replace(pool.settings, timeout_seconds=600)
    first = await pool.validate(note)
    assert first.valid and pool.verdicts.hits == 0
    for worker in list(pool._all):  # a document sent to a worker now would find it dead and replace it
        worker.process.kill()
        worker.process.join()
    assert await pool.validate(note) is first and pool.verdicts.hits == 1
    assert pool.replaced == 0
    # One byte changed is another document: a worker checks it (the dead one is replaced first).
    again = await pool.validate(note.replace(b"</ClinicalDocument>", b"</ClinicalDocument> "))
    assert again.valid and again is not first and pool.replaced == 1 and pool.verdicts.hits == 1


def test_the_verdict_cache_keeps_the_most_recently_used_documents() -> None:
    cache = VerdictCache(2)
    reports = {name: ValidationReport(True, checked=[name]) for name in ("a", "b", "c")}
    cache.put(VerdictCache.key(b"a"), reports["a"])
    cache.put(VerdictCache.key(b"b"), reports["b"])
    assert cache.get(VerdictCache.key(b"a")) is reports["a"]  # a is now the most recent
    cache.put(VerdictCache.key(b"c"), reports["c"])
    assert cache.get(VerdictCache.key(b"b")) is None and len(cache) == 2
    assert cache.get(VerdictCache.key(b"a")) is reports["a"] and cache.get(VerdictCache.key(b"c")) is reports["c"]


async def test_the_second_worker_starts_only_when_two_documents_wait_together_and_leaves_unused(
        kit: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Idle memory: the agent starts one worker (about 270 MB); documents checked one at a time never start the
    second, two at once do (then both serve); unused for ``extra_idle_seconds``, the second leaves, never the
    first, and the next burst starts it again."""
    assert default_workers() in (1, 2)
    note = (kit / "ExemplesCDA" / VAC_NOTE).read_bytes()
    # Distinct bytes (a comment after the root), so that no verdict comes from the cache.
    copies = [note + f"<!-- {n} -->".encode() for n in range(5)]
    cache = tmp_path_factory.getbasetemp() / "cda-worker-cache"
    async with ValidationPool(kit, cache, PoolSettings(workers=2, timeout_seconds=120)) as pool:
        assert pool.status()["running"] == 1 and pool.status()["workers"] == 2
        for cda in copies[:3]:
            assert (await pool.validate(cda)).valid
        assert pool.status()["running"] == 1
        reports = await asyncio.gather(pool.validate(copies[3]), pool.validate(copies[4]))
        assert all(r.valid for r in reports) and pool.status()["running"] == 2
        assert await pool.retire_idle(time.monotonic()) == 0  # just used: both stay
        later = time.monotonic() + pool.settings.extra_idle_seconds + 1
        assert await pool.retire_idle(later) == 1 and await pool.retire_idle(later) == 0
        assert pool.status()["running"] == 1 and pool.status()["retired"] == 1
        more = [note + f"<!-- again {n} -->".encode() for n in range(2)]
        reports = await asyncio.gather(*(pool.validate(cda) for cda in more))
        assert all(r.valid for r in reports) and pool.status()["running"] == 2


async def test_a_document_over_the_size_budget_never_reaches_a_worker(pool: ValidationPool) -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        await pool.validate(b"<x>" + b" " * (4 * 1024 * 1024) + b"</x>")
    assert refused.value.code == "cda_too_large" and "trop volumineux" in refused.value.message
    assert pool.replaced == 0 and pool.status()["running"] == 0  # no worker was even started


async def test_health_answers_while_a_hostile_cda_is_being_validated(
        start_agent: Callable[..., Any], kit: Path, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    agent = await start_agent(cda={"kit_dir": str(kit), "cache_dir": str(tmp_path / "xsl"), "warm_up": False,
                                   "validation_timeout_seconds": 3600, "max_document_mb": 2})
    pool = agent.services.cda.pool
    assert pool is not None
    validation = asyncio.create_task(agent.services.cda.avalidate(hostile_cda(kit)))
    await wait_checking(pool)

    async with http.get(agent.url + "/v1/health") as response:
        assert response.status == 200
    # Before the fix Saxon held the agent's GIL: /v1/health could only answer once the validation had ended.
    assert not validation.done() and pool.checking == 1

    # The size budget through the API: a clear French 413, while the worker is still busy.
    big = json.dumps({"cda_base64": base64.b64encode(b"<x>" + b" " * (3 * 1024 * 1024) + b"</x>").decode()})
    async with http.post(agent.url + "/v1/cda/validate", data=io.BytesIO(big.encode()),
                         headers=agent.headers(**{"Content-Type": "application/json"})) as response:
        problem = await response.json(content_type=None)
    assert response.status == 413 and problem["type"].endswith(":cda_too_large"), problem
    assert "Mo" in problem["detail"]
    assert not validation.done()

    validation.cancel()  # the caller gives up: the worker is killed, not left running the document
    with pytest.raises(asyncio.CancelledError):
        await validation
    assert pool.replaced == 1 and pool.status()["running"] == 0


async def test_an_order_being_validated_holds_no_write_lock_and_is_still_refused_synchronously(
        start_agent: Callable[..., Any], kit: Path, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Issue 24 item 2: validation runs before the create's critical section (the writer's transaction), so the
    store takes other writes while Saxon works; the create still answers the refusal itself (422)."""
    agent = await start_agent(cda={"kit_dir": str(kit), "cache_dir": str(tmp_path / "xsl"), "warm_up": False,
                                   "validation_timeout_seconds": 10, "max_document_mb": 2})
    pool, db = agent.services.cda.pool, agent.services.db
    assert pool is not None
    body = order_body(cda=hostile_cda(kit))
    create = asyncio.create_task(http.post(agent.url + "/v1/orders", data=io.BytesIO(json.dumps(body).encode()),
                                           headers=agent.headers(**{"Content-Type": "application/json"})))
    await wait_checking(pool)

    commits = db.commits
    await db.write(lambda conn: conn.execute("SELECT 1").fetchone())  # another part's write, meanwhile
    assert db.commits == commits + 1 and not create.done() and pool.checking == 1

    async with await create as response:
        problem = await response.json(content_type=None)
    assert response.status == 422 and problem["type"].endswith(":cda_validation_timeout"), problem
    assert (await db.read(lambda conn: conn.execute("SELECT count(*) FROM orders").fetchone()[0])) == 0
