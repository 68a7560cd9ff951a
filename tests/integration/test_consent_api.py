"""Consent, rights, notice and traces on a real agent (demo cards) over its loopback socket.

The seams the DMP routes call (``services.access_policy``) are exercised directly where the DMP routes are not
the subject; everything a doctor or an LGC sees goes through HTTP.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.audit.access import DmpPresence
from agent.cli.wiring import DemoOptions
from agent.clock import FrozenClock
from agent.domain.notices import BUTTON, NOTICE_ID
from agent.domain.policy import Actor
from agent.errors import AccessRefused
from relais_sandbox.identities import PAT_TROIS
from tests.conftest import ROOT
from tests.support.ins import obtain_ins, record_insi_answer
from tests.support.queue import kit_cda, order_body

INS = "279035121518989"
# The virtual CPS only: an inserted carte Vitale would start its own DICA (and TD0.2 trace) for its insured.
DEMO = DemoOptions(tray=False, cards="cps")


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str,
               body: dict[str, Any] | None = None) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"headers": agent.headers()}
    if body is not None:
        kwargs["json"] = body
    async with http.request(method, agent.url + path, **kwargs) as response:
        if response.content_type == "text/csv":
            return response.status, await response.text()
        return response.status, await response.json()


def doctor(agent: Any, mode: str = "normal") -> Actor:
    holder = agent.services.cards.cps_holder()
    return Actor(rpps=holder.rpps, workstation=agent.services.config.workstation_id, client="test",
                 profession=holder.profession, specialty=holder.specialty, mode=mode)


async def acknowledge(http: aiohttp.ClientSession, agent: Any) -> tuple[int, Any]:
    """The CONF.21 notice acknowledged by the CPS holder, PIN entered (the demo card's PIN)."""
    status, _ = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200
    return await call(http, agent, "POST", f"/v1/notices/{NOTICE_ID}/ack")


async def from_insi(http: aiohttp.ClientSession, agent: Any, person: Any = PAT_TROIS) -> None:
    """The doctor enters the PIN and obtains the patient's INS through INSi (the simulator): the DMP takes no
    other INS (EX_GEN-1530)."""
    status, body = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200, body
    await obtain_ins(http, agent, person)


async def traces(http: aiohttp.ClientSession, agent: Any, query: str = "") -> list[dict[str, Any]]:
    status, body = await call(http, agent, "GET", f"/v1/traces{query}")
    assert status == 200
    return list(body["items"])


async def test_consent_refused_then_granted(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent(demo=DEMO)
    await from_insi(http, agent)
    status, _ = await call(http, agent, "POST", f"/v1/notices/{NOTICE_ID}/ack")
    assert status == 200
    status, consent = await call(http, agent, "GET", f"/v1/patients/{INS}/consent")
    assert status == 200 and consent["dmp_consultation"] == "unknown" and consent["history"] == []
    with pytest.raises(AccessRefused) as refused:
        await agent.services.rights.rights.check_consultation(INS, doctor(agent))
    assert refused.value.code == "consent_missing"

    status, consent = await call(http, agent, "PUT", f"/v1/patients/{INS}/consent",
                                 {"dmp_consultation": "refused", "informed": True, "episode": "visite-1"})
    assert status == 200 and consent["dmp_consultation"] == "refused"
    assert consent["recorded_by"]["rpps"] == doctor(agent).rpps
    status, access = await call(http, agent, "GET", f"/v1/dmp/{INS}/access?identity_status=QUAL")
    assert status == 200 and access["can_read"] is False
    assert "consent_refused" in [r["code"] for r in access["reasons"]]
    with pytest.raises(AccessRefused) as refused:
        await agent.services.rights.rights.check_consultation(INS, doctor(agent))
    assert refused.value.code == "consent_refused"
    assert "refusé" in refused.value.message

    status, consent = await call(http, agent, "PUT", f"/v1/patients/{INS}/consent", {"dmp_consultation": "granted"})
    assert status == 200 and consent["dmp_consultation"] == "granted"
    assert [h["dmp_consultation"] for h in consent["history"]] == ["granted", "refused"]
    await agent.services.rights.rights.check_consultation(INS, doctor(agent))
    status, access = await call(http, agent, "GET", f"/v1/dmp/{INS}/access?identity_status=QUAL")
    codes = [r["code"] for r in access["reasons"]]
    assert "consent_refused" not in codes and access["consent"]["dmp_consultation"] == "granted"
    # TD0.2 to the demo's DMP simulator: the DMP exists; every condition is met.
    assert access["dmp_exists"] is True and codes == [] and access["can_read"] is True

    actions = [t["action"] for t in await traces(http, agent, f"?ins={INS}")]
    assert actions.count("consent.changed") == 2
    assert actions.count("dmp.td02") == 2
    assert actions.count("dmp.access_refused") == 2


async def test_a_dmp_that_cannot_answer_is_reported_unknown_in_french(start_agent: Any,
                                                                       http: aiohttp.ClientSession) -> None:
    agent = await start_agent(demo=DEMO)
    status, _ = await call(http, agent, "POST", "/_sandbox/dmp/faults", {"mode": "error500"})
    assert status == 200
    # Before the PIN, the DMP is not called in the doctor's name at all.
    _, access = await call(http, agent, "GET", f"/v1/dmp/{INS}/access?identity_status=QUAL")
    assert "code PIN" in next(r for r in access["reasons"] if r["code"] == "dmp_unknown")["message"]
    assert await traces(http, agent, "?action=dmp.td02") == []
    assert (await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"}))[0] == 200
    status, access = await call(http, agent, "GET", f"/v1/dmp/{INS}/access?identity_status=QUAL")
    assert status == 200 and access["dmp_exists"] is None and access["can_read"] is False
    reason = next(r for r in access["reasons"] if r["code"] == "dmp_unknown")
    assert reason["message"].startswith("Le DMP n'a pas pu répondre")
    assert (await traces(http, agent, "?action=dmp.td02"))[0]["outcome"] == "error"


async def test_invalid_consent_bodies_and_ins_answer_422(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent(demo=DEMO)
    status, body = await call(http, agent, "PUT", f"/v1/patients/{INS}/consent", {"dmp_consultation": "maybe"})
    assert status == 422 and body["errors"][0]["field"] == "dmp_consultation"
    status, body = await call(http, agent, "GET", "/v1/patients/279035121518900/consent")
    assert status == 422  # wrong INS key


async def test_the_dmp_routes_refuse_without_consent_with_a_french_403(start_agent: Any,
                                                                       http: aiohttp.ClientSession) -> None:
    agent = await start_agent(demo=DEMO)
    await from_insi(http, agent)
    await call(http, agent, "POST", f"/v1/notices/{NOTICE_ID}/ack")
    status, problem = await call(http, agent, "GET", f"/v1/dmp/{INS}/documents")
    assert status == 403 and problem["code"] == "consent_missing"
    assert "consentement" in problem["detail"]
    await call(http, agent, "PUT", f"/v1/patients/{INS}/consent", {"dmp_consultation": "granted"})
    status, found = await call(http, agent, "GET", f"/v1/dmp/{INS}/documents")
    assert status == 200, found
    rows = await traces(http, agent, f"?ins={INS}")
    assert [r["action"] for r in rows][-1] == "dmp.search"
    assert rows[-1]["actor"]["rpps"] == doctor(agent).rpps


async def test_opposition_refuses_feeding_through_the_queue(start_agent: Any, http: aiohttp.ClientSession,
                                                            reference_dir: Path) -> None:
    agent = await start_agent(demo=DEMO)

    def body(**kw: Any) -> dict[str, Any]:  # a document that passes the CI-SIS validation a real order gets
        return order_body(cda=kit_cda(reference_dir, PAT_TROIS)[0], ins=INS, oid=PAT_TROIS.oid, **kw)

    await from_insi(http, agent)
    status, _ = await call(http, agent, "PUT", f"/v1/patients/{INS}/consent", {"dmp_feeding": "opposition"})
    assert status == 200
    status, problem = await call(http, agent, "POST", "/v1/orders", body())
    assert status == 422 and problem["code"] == "feeding_opposed", problem
    assert "opposé" in problem["detail"]
    # MSSanté does not feed the DMP: still accepted.
    status, _ = await call(http, agent, "POST", "/v1/orders", body(dmp=False, mss=["dr.x@medecin.mssante.fr"]))
    assert status == 201
    status, _ = await call(http, agent, "PUT", f"/v1/patients/{INS}/consent", {"dmp_feeding": "non_opposition"})
    status, created = await call(http, agent, "POST", "/v1/orders", body())
    assert status == 201, created


@pytest.mark.parametrize("mode", ["bris_de_glace", "centre_15"])
async def test_an_emergency_access_is_traced_as_such_and_notified(start_agent: Any, http: aiohttp.ClientSession,
                                                                  mode: str) -> None:
    agent = await start_agent(demo=DEMO)
    await acknowledge(http, agent)
    events = agent.services.bus.subscribe()
    await agent.services.rights.rights.check_consultation(INS, doctor(agent, mode))  # no consent recorded
    rows = await traces(http, agent, "?action=dmp.emergency_access")
    assert len(rows) == 1
    assert rows[0]["actor"]["mode"] == mode and rows[0]["ins"] == INS
    assert rows[0]["actor"]["rpps"] == doctor(agent).rpps
    event = await events.get(timeout=5)
    while event is not None and event.type != "dmp.emergency_access":
        event = await events.get(timeout=5)
    assert event is not None and event.data["mode"] == mode
    assert INS not in str(event.data)  # events never carry patient identifiers
    _, access = await call(http, agent, "GET", f"/v1/dmp/{INS}/access?identity_status=QUAL&mode={mode}")
    assert "consent_missing" not in [r["code"] for r in access["reasons"]]


async def test_the_notice_is_due_every_180_days_and_blocks_consultation(start_agent: Any,
                                                                       http: aiohttp.ClientSession) -> None:
    clock = FrozenClock()
    agent = await start_agent(demo=DEMO, clock=clock)
    await call(http, agent, "PUT", f"/v1/patients/{INS}/consent", {"dmp_consultation": "granted"})
    events = agent.services.bus.subscribe(after=0)  # with what was announced when the CPS came in
    status, notices = await call(http, agent, "GET", "/v1/notices")
    notice = notices["items"][0]
    assert notice["due"] is True and notice["button"] == BUTTON and notice["rpps"] == doctor(agent).rpps
    with pytest.raises(AccessRefused) as refused:
        await agent.services.rights.rights.check_consultation(INS, doctor(agent))
    assert refused.value.code == "notice_due"
    with pytest.raises(AccessRefused):
        await agent.services.rights.rights.check_consultation(INS, doctor(agent))
    seen = [e.type for e in await _drain(events)]
    assert seen.count("notice.due") == 1  # announced once, not at every check
    _, status_body = await call(http, agent, "GET", "/v1/status")
    assert status_body["notices"][0]["due"] is True
    assert "26 octobre 2023" in status_body["habilitation"]["source"]

    # A card merely inserted is not its holder at the keyboard: the PIN is needed (CONF.21 in their name).
    status, problem = await call(http, agent, "POST", f"/v1/notices/{NOTICE_ID}/ack")
    assert status == 503 and problem["code"] == "cps_not_logged_in" and "PIN" in problem["detail"]
    status, acked = await acknowledge(http, agent)
    assert status == 200 and acked["due"] is False
    ack_trace = (await traces(http, agent, "?action=notice.acknowledged"))[0]
    assert ack_trace["actor"]["rpps"] == doctor(agent).rpps and ack_trace["actor"]["client"] == "test-1"
    await agent.services.rights.rights.check_consultation(INS, doctor(agent))
    clock.advance(timedelta(days=180).total_seconds() - 1)
    await agent.services.rights.rights.check_consultation(INS, doctor(agent))
    clock.advance(1)
    with pytest.raises(AccessRefused):
        await agent.services.rights.rights.check_consultation(INS, doctor(agent))
    _, access = await call(http, agent, "GET", f"/v1/dmp/{INS}/access?identity_status=QUAL")
    assert access["notice_acknowledged"] is False and "notice_due" in [r["code"] for r in access["reasons"]]
    status, _ = await call(http, agent, "POST", "/v1/notices/other/ack")
    assert status == 404
    # Due again while the agent runs: the next status poll announces it (the tray's notification, the
    # dashboard's badge), without a card insertion or a DMP read.
    events = agent.services.bus.subscribe()
    clock.advance(timedelta(days=1).total_seconds())
    _, status_body = await call(http, agent, "GET", "/v1/status")
    assert status_body["notices"][0]["due"] is True
    assert "notice.due" in [e.type for e in await _drain(events)]


async def _drain(subscription: Any) -> list[Any]:
    out = []
    while (event := await subscription.get(timeout=0.2)) is not None:
        out.append(event)
    return out


async def test_without_a_cps_dica_says_so(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent(demo=DemoOptions(tray=False, cards="none"))
    status, access = await call(http, agent, "GET", f"/v1/dmp/{INS}/access?identity_status=VALI")
    assert status == 200 and access["can_read"] is False
    codes = [r["code"] for r in access["reasons"]]
    assert {"cps_absent", "ins_not_qualified", "consent_missing", "habilitation_denied", "notice_due"} <= set(codes)
    assert all(r["message"] and r["help"] for r in access["reasons"])
    status, problem = await call(http, agent, "POST", f"/v1/notices/{NOTICE_ID}/ack")
    assert status == 503 and problem["code"] == "cps_absent"


async def test_the_habilitation_matrix_filters_what_a_profession_reads(start_agent: Any) -> None:
    agent = await start_agent(demo=DEMO)
    entries = [{"type_code": "11488-4", "class_code": "10"}, {"type_code": "68599-0", "class_code": "11"}]
    dentist = Actor(rpps="10000000001", workstation="poste", profession="40")
    assert agent.services.rights.rights.filter_readable(entries, dentist) == entries[:1]
    assert agent.services.rights.rights.filter_readable(entries, doctor(agent)) == entries


async def test_traces_export_by_patient_and_csv(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent(demo=DEMO)
    await call(http, agent, "PUT", f"/v1/patients/{INS}/consent", {"dmp_consultation": "granted"})
    for _ in range(3):
        await agent.services.rights.traces.record(_event(agent, "dmp.search", INS))
    rows = await traces(http, agent, "?limit=2")
    assert len(rows) == 2
    status, page = await call(http, agent, "GET", "/v1/traces?limit=2")
    status, rest = await call(http, agent, "GET", f"/v1/traces?limit=2&cursor={page['next_cursor']}")
    assert [r["seq"] for r in page["items"] + rest["items"]] == [1, 2, 3, 4]
    status, text = await call(http, agent, "GET", f"/v1/traces?format=csv&ins={INS}&action=dmp.search")
    assert status == 200
    lines = text.strip().splitlines()
    assert lines[0].startswith("seq,at,action,actor_rpps") and len(lines) == 4
    status, problem = await call(http, agent, "GET", "/v1/traces?from=yesterday")
    assert status == 422 and problem["errors"][0]["field"] == "from"


def _event(agent: Any, action: str, ins: str) -> Any:
    from agent.domain.policy import TraceEvent

    return TraceEvent(action, doctor(agent), ins=ins, object="doc-1")


def relais(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


async def test_cli_verify_names_the_edited_row_and_export_writes_csv(start_agent: Any, tmp_path: Any) -> None:
    agent = await start_agent(demo=DEMO)
    for _ in range(5):
        await agent.services.rights.traces.record(_event(agent, "dmp.retrieve", INS))
    data_dir = str(agent.services.config.data_dir)
    ok = await asyncio.to_thread(relais, "traces", "verify", "--data-dir", data_dir)
    assert ok.returncode == 0 and "5 trace(s)" in ok.stdout
    assert "seules les empreintes" not in ok.stderr  # the CLI had the master key: MACs checked too
    out = tmp_path / "traces.csv"
    exported = await asyncio.to_thread(relais, "traces", "export", "--data-dir", data_dir, "--format", "csv",
                                       "--ins", INS, "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    assert len(out.read_text().strip().splitlines()) == 6
    as_json = await asyncio.to_thread(relais, "traces", "export", "--data-dir", data_dir, "--actor",
                                      doctor(agent).rpps, "--from", "2000-01-01")
    items = json.loads(as_json.stdout)["items"]
    assert len(items) == 5 and {i["action"] for i in items} == {"dmp.retrieve"}

    db = sqlite3.connect(agent.services.config.data_dir / "relais.db")
    db.execute("DROP TRIGGER traces_no_update")
    db.execute("UPDATE traces SET actor_rpps = '10000000000' WHERE seq = 3")
    db.commit()
    db.close()
    broken = await asyncio.to_thread(relais, "traces", "verify", "--data-dir", data_dir)
    assert broken.returncode == 1
    assert "n° 3" in broken.stderr
    async with aiohttp.ClientSession() as http:
        status, result = await call(http, agent, "GET", "/v1/traces/verify")
    assert status == 200
    assert result["ok"] is False and result["broken_seq"] == 3 and result["authenticated"] is True


class ProbeDmp:
    """A DMP at the DicaService's protocol (TD0.2, TD3.1): says the DMP exists and holds ``entries``."""

    def __init__(self, entries: list[dict[str, str]]) -> None:
        self.entries = entries
        self.since: list[str | None] = []

    async def dmp_status(self, ins: str, oid: str, actor: Actor) -> DmpPresence:
        return DmpPresence(exists=True)

    async def documents_since(self, ins: str, oid: str, since: str | None, actor: Actor) -> list[dict[str, str]]:
        self.since.append(since)
        return self.entries


async def _next(subscription: Any, type_: str) -> Any:
    while (event := await subscription.get(timeout=10)) is not None:
        if event.type == type_:
            return event
    raise AssertionError(f"no {type_} event")


async def test_a_vitale_insertion_pushes_dica_and_the_new_documents(start_agent: Any,
                                                                    http: aiohttp.ClientSession) -> None:
    from agent.domain.policy import TraceEvent
    from relais_sandbox.identities import DEMO_VITALE

    agent = await start_agent(demo=DemoOptions(tray=False, cards="cps"))
    insured = DEMO_VITALE[0].person.ins
    probe = ProbeDmp([{"type_code": "11488-4", "class_code": "10"}, {"type_code": "60591-5", "class_code": "11"},
                      {"type_code": "ATTEST-RESID", "class_code": "95"}])
    agent.services.rights.dica.probe = probe
    await from_insi(http, agent, DEMO_VITALE[0].person)  # the card's NIR alone never reaches the DMP
    await call(http, agent, "POST", f"/v1/notices/{NOTICE_ID}/ack")
    await call(http, agent, "PUT", f"/v1/patients/{insured}/consent?oid=1.2.250.1.213.1.4.10",
               {"dmp_consultation": "granted"})
    # The LGC declared this INS qualified when it last asked.
    await call(http, agent, "GET", f"/v1/dmp/{insured}/access?oid=1.2.250.1.213.1.4.10&identity_status=QUAL")
    await agent.services.rights.traces.record(TraceEvent("dmp.search", doctor(agent), ins=insured))
    events = agent.services.bus.subscribe()
    status, _ = await call(http, agent, "POST", "/_sandbox/cards/vitale", {"inserted": True})
    assert status == 200
    event = await _next(events, "dmp.access")
    by_index = {b["beneficiary_index"]: b for b in event.data["beneficiaries"]}
    assert by_index[0]["can_read"] is True and by_index[0]["reasons"] == []
    assert by_index[0]["new_documents"] == 2  # the attestation de résidence is not for a médecin's eyes
    assert [r["code"] for r in by_index[1]["reasons"]] == ["ins_unknown"] and by_index[1]["new_documents"] is None
    assert event.data["can_read"] is True and event.data["new_documents"] == 2  # the insured, for the tray
    assert probe.since[0] is not None  # counted from the last consultation
    assert insured not in str(event.data)


async def test_no_dmp_call_in_the_doctors_name_before_the_pin(start_agent: Any,
                                                              http: aiohttp.ClientSession) -> None:
    """A carte Vitale inserted while the CPS is in but its PIN not entered (as at start-up, when the cards are read
    before anyone is at the keyboard): DICA answers without querying the DMP in the CPS holder's name; once the
    PIN is entered, the same carte Vitale gets its DICA, in the holder's name."""
    from relais_sandbox.identities import DEMO_VITALE

    agent = await start_agent(demo=DemoOptions(tray=False, cards="cps"))
    insured = DEMO_VITALE[0].person
    await record_insi_answer(agent.services.db, insured.ins, insured.oid)  # INSi gave this INS earlier
    events = agent.services.bus.subscribe()
    status, _ = await call(http, agent, "POST", "/_sandbox/cards/vitale", {"inserted": True})
    assert status == 200
    first = await _next(events, "dmp.access")
    assert first.data["can_read"] is False
    assert await traces(http, agent, "?action=dmp.td02") == []
    status, _ = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200
    await _next(events, "dmp.access")
    td02 = await traces(http, agent, "?action=dmp.td02")
    assert td02 and td02[0]["actor"]["rpps"] == agent.services.cards.cps_holder().rpps


async def test_a_cps_insertion_announces_a_due_notice(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent(demo=DemoOptions(tray=False, cards="none"))
    events = agent.services.bus.subscribe()
    status, _ = await call(http, agent, "POST", "/_sandbox/cards/cps", {"inserted": True})
    assert status == 200
    event = await _next(events, "notice.due")
    assert event.data == {"notice_id": NOTICE_ID, "rpps": agent.services.cards.cps_holder().rpps}
