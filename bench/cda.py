"""Benchmark of the documents part: build + CI-SIS validation of a note de vaccination, then of every kind.

Prints: the one-off costs (CDA XSD load; each schematron compiled to XSLT by the engine, then by Saxon; the same
with the on-disk XSLT cache a restart finds), the per-document split between XSD and schematrons once warm,
documents per second for build + validation, one thread, and per kind (N1 with its PDF/A-1 conversion, each N3
volet) the build and the full validation apart. Not a test: figures only (the inputs are the tests' own).

    .venv/bin/python bench/cda.py [--documents 200] [--kit ../shared/reference/ci-sis]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from agent.cda.schematron import PATH, TEMPLATE, compile_schema
from agent.cda.service import CdaService
from agent.cda.validation import CONTENT_PROFILE, STRUCTURATION_MINIMALE, CdaValidator
from agent.cda.worker import PoolSettings, ValidationPool
from agent.clock import FrozenClock
from agent.reference import BESIDE_CHECKOUT, find_reference
from agent.xml import safe

PATIENT = {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "birth_name": "PAT-TROIS",
           "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28", "birth_place": "51215"}
AUTHOR = {"rpps": "01234567897", "family": "MULLER", "given": "Charles", "civility": "M", "title": "DR",
          "organisation": {"id": "1750803447", "name": "Cabinet médical du Dr MULLER"}}
SYNTHESE = {
    "problems": [{"code": "E11.9", "display": "Diabète de type 2", "since": "2020-03-01"},
                 {"code": "I10", "display": "Hypertension essentielle"}],
    "allergies": [{"display": "Pénicilline", "code": "91936005", "type": "416098002"}],
    "treatments": [{"name": "METFORMINE 1000 mg, comprimé", "cis": "60234100", "atc": "A10BA02",
                    "atc_display": "metformine", "since": "2020-03-01"}, {"name": "Doliprane si douleur"}],
    "procedures": [{"code": "HHFA016", "display": "Appendicectomie par cœlioscopie", "date": "2010-05-04"}],
    "devices": [{"display": "Stimulateur cardiaque", "since": "2019-08-11"}],
    "vital_signs": {"measured_at": "2026-01-05", "weight_g": 81000, "height_cm": 178},
}
DATA = {"datamatrix": "]d201034009328572411728123110ABC123\x1d21XYZ789",
        "administered_at": "2026-01-05T10:00:00+01:00", "dose_rank": 2}
VOLET = "CI-SIS_VAC-NOTE_2023.01.sch"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main() -> None:
    default_kit = (find_reference() or BESIDE_CHECKOUT) / "ci-sis"
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--kit", type=Path, default=default_kit)
    args = parser.parse_args()
    kit: Path = args.kit

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        print("cold start (one-off, lazily at the first document):")
        cold = CdaValidator(kit, cache)
        t = time.perf_counter()
        cold._xml_schema()
        print(f"  CDA XSD load                      {ms(time.perf_counter() - t)}")
        for relative in (STRUCTURATION_MINIMALE, VOLET, CONTENT_PROFILE):
            t = time.perf_counter()
            text = compile_schema(kit / "schematrons" / relative)
            python = time.perf_counter() - t
            t = time.perf_counter()
            cold._executable(relative)  # writes the disk cache, compiles with Saxon
            saxon = time.perf_counter() - t - python
            print(f"  {Path(relative).name:34s}{ms(python)} engine (.sch -> XSLT, {len(text) // 1024} KiB)"
                  f" + {ms(max(saxon, 0))} Saxon")

        print("restart with the on-disk XSLT cache:")
        warm_start = CdaValidator(kit, cache)
        for relative in (STRUCTURATION_MINIMALE, VOLET, CONTENT_PROFILE):
            t = time.perf_counter()
            warm_start._executable(relative)
            print(f"  {Path(relative).name:34s}{ms(time.perf_counter() - t)}")

        service = CdaService(clock=FrozenClock(datetime(2026, 1, 5, 9, tzinfo=UTC)), validator=warm_start,
                             allow_test_oids=True)
        sample = service.build_document("vaccination_note", PATIENT, AUTHOR, DATA).cda
        root = safe.parse(sample)
        from lxml import etree

        text_doc = etree.tostring(root, encoding="unicode")
        schema = warm_start._xml_schema()
        timings: dict[str, list[float]] = {"parse": [], "xsd": [], "StrucMin": [], "volet": [], "content": []}
        for _ in range(50):
            t = time.perf_counter()
            root = safe.parse(sample)
            timings["parse"].append(time.perf_counter() - t)
            t = time.perf_counter()
            schema.validate(root)
            timings["xsd"].append(time.perf_counter() - t)
            for key, relative in (("StrucMin", STRUCTURATION_MINIMALE), ("volet", VOLET),
                                  ("content", CONTENT_PROFILE)):
                t = time.perf_counter()
                warm_start.run_schematron(relative, text_doc)
                timings[key].append(time.perf_counter() - t)
        print(f"per document, warm (note de vaccination, {len(sample)} bytes), median of 50:")
        for key, values in timings.items():
            print(f"  {key:34s}{ms(statistics.median(values))}")
        forms(warm_start, kit, text_doc)

        t = time.perf_counter()
        for _ in range(args.documents):
            built = service.build_document("vaccination_note", PATIENT, AUTHOR, DATA)
            report = service.validate(built.cda)
            assert report.valid
        elapsed = time.perf_counter() - t
        floor = args.documents / elapsed
        print(f"build + validate: {args.documents} notes in {elapsed:.2f} s = {floor:.1f} documents/s (one thread)")
        asyncio.run(through_workers(service, kit, cache, args.documents, floor))
        per_kind(service, max(5, args.documents // 20))


def forms(validator: CdaValidator, kit: Path, document: str) -> None:
    """The costly schematrons compiled in the template form (the ISO skeleton's recursive walk, what the agent
    ran before) beside the path form it runs now, on the same parsed note, interleaved: the ratio is the gain."""
    engine = validator.engine
    tree = engine.parse(document)
    print("template walk vs path search (same note, same Saxon, interleaved), median of 50:")
    for relative in (STRUCTURATION_MINIMALE, CONTENT_PROFILE):
        compiled = {form: engine.compile(compile_schema(kit / "schematrons" / relative, form=form))
                    for form in (TEMPLATE, PATH)}
        times: dict[str, list[float]] = {TEMPLATE: [], PATH: []}
        for _ in range(50):
            for form, executable in compiled.items():
                t = time.perf_counter()
                engine.transform(executable, tree)
                times[form].append(time.perf_counter() - t)
        walk, search = statistics.median(times[TEMPLATE]), statistics.median(times[PATH])
        print(f"  {Path(relative).name:34s}{ms(walk)} walk |{ms(search)} path | x{walk / search:.2f}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """How late a 5 ms timer fires on the event loop while validations run (what every request waits)."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - t - 0.005)


async def through_workers(service: CdaService, kit: Path, cache: Path, documents: int, floor: float) -> None:
    """The agent's way (``ValidationPool``): notes/s with 1 and 2 worker processes against the one-thread rate
    above, and the event loop's lag meanwhile, beside the old way (a thread of the agent's own process)."""
    notes = [service.build_document("vaccination_note", PATIENT, AUTHOR, DATA).cda for _ in range(documents)]
    print("the agent's way, event loop lag while validating (p50 / max of a 5 ms timer):")

    async def run(validate: Callable[[bytes], Awaitable[Any]], concurrency: int) -> tuple[float, list[float]]:
        gate = asyncio.Semaphore(concurrency)

        async def one(cda: bytes) -> None:
            async with gate:
                assert (await validate(cda)).valid

        lags: list[float] = []
        stop = asyncio.Event()
        ticker = asyncio.create_task(loop_lag(stop, lags))
        t = time.perf_counter()
        await asyncio.gather(*(one(cda) for cda in notes))
        elapsed = time.perf_counter() - t
        stop.set()
        await ticker
        return documents / elapsed, lags

    def line(name: str, rate: float, lags: list[float]) -> None:
        print(f"  {name:34s}{rate:6.1f} notes/s  x{rate / floor:.2f} of one thread   "
              f"lag {ms(statistics.median(lags))} /{ms(max(lags))}")

    rate, lags = await run(service.avalidate, 1)
    line("thread of the agent (before)", rate, lags)
    for workers in (1, 2):
        settings = PoolSettings(workers=workers, warm_up=False)
        async with ValidationPool(kit, cache, settings) as pool:
            # Each worker compiles, then runs a few notes: the in-process validator above is as warm.
            for _ in range(10):
                await asyncio.gather(*(pool.validate(notes[0]) for _ in range(workers)))
            rate, lags = await run(pool.validate, 2 * workers)
            worker_rss = [rss_mib(w.process.pid or 0) for w in list(pool._all)]
            line(f"{workers} worker process(es)", rate, lags)
            print(f"  {'':34s}RSS: this process {rss_mib(os.getpid()):.0f} MiB, each worker "
                  + ", ".join(f"{r:.0f}" for r in worker_rss) + " MiB")


def per_kind(service: CdaService, rounds: int) -> None:
    from tests.integration import test_cda_validation as inputs

    samples = {
        "n1 (PDF -> PDF/A-1)": lambda: service.wrap_pdf(inputs.PDF, "11488-4", "CR", "2026-01-05T10:00:00+01:00",
                                                         None, inputs.PATIENT, inputs.AUTHOR),
        "vaccination_note": lambda: service.build_document("vaccination_note", PATIENT, AUTHOR, DATA),
        "mesures_enfant": lambda: service.build_document("mesures_enfant", inputs.CHILD, inputs.AUTHOR, {
            "measured_at": "2025-01-10", "weight_g": 8600, "height_cm": 71, "head_cm": 45}),
        "cse_cs9": lambda: service.build_document("cse_cs9", inputs.CHILD, inputs.AUTHOR, inputs.CSE_DATA),
        "cse_cs8": lambda: service.build_document("cse_cs8", inputs.CS8_CHILD, inputs.CS8_AUTHOR, inputs.CS8_DATA),
        "synthese_medicale": lambda: service.build_document("synthese_medicale", PATIENT, AUTHOR, SYNTHESE),
    }
    print(f"per kind, warm, median of {rounds} (build | full validation | documents/s for both):")
    for name, build in samples.items():
        built_times, valid_times = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            cda = build().cda
            built_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert service.validate(cda).valid, name
            valid_times.append(time.perf_counter() - t)
        build_s, valid_s = statistics.median(built_times), statistics.median(valid_times)
        print(f"  {name:22s}{ms(build_s)} |{ms(valid_s)} | {1 / (build_s + valid_s):6.1f}/s")
    render(service.build_document("synthese_medicale", PATIENT, AUTHOR, SYNTHESE).cda, rounds)


def render(cda: bytes, rounds: int) -> None:
    """Display of a synthèse médicale: the HTML page, and the same printed to PDF by headless Chromium."""
    from agent.cda.printing import browser
    from agent.cda.render import render_html, render_pdf

    html_times, pdf_times = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        render_html(cda)
        html_times.append(time.perf_counter() - t)
    print(f"render a synthèse, median: HTML {ms(statistics.median(html_times))}", end="")
    if browser() is None:
        print(" ; PDF: no Chromium on this machine")
        return
    for _ in range(min(rounds, 5)):
        t = time.perf_counter()
        render_pdf(cda)
        pdf_times.append(time.perf_counter() - t)
    print(f" ; PDF (Chromium, one start per print, median of {len(pdf_times)}) {ms(statistics.median(pdf_times))}")


if __name__ == "__main__":
    main()
