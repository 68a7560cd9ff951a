"""The CNDA test book's rules the agent enforces itself (issue 16), on a demo agent and its DMP simulator.

Each test plays one rule through the API and counts the requests the simulator received
(``GET /_sandbox/dmp/calls``): what was refused was never sent. Names follow the test book's codes.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from lxml import etree

from agent.cli.wiring import DemoOptions
from agent.dmp.ebrim import DE_AUTHOR, SS_AUTHOR
from agent.dmp.vihf import CONFIDENTIALITY_ATTRIBUTE
from agent.domain.ins import OID_INS_NIA
from relais_sandbox.identities import DEMO_VITALE, PAT_TROIS, PAT_TROIS_CAMILLE
from tests.support.dmp import logged_envelope
from tests.support.documents import with_co_author, written_by
from tests.support.ins import obtain_ins, record_insi_answer
from tests.support.queue import kit_cda, make_cda, order_body

NIA = "109076322088835"  # [CDT] Référentiel Patients 103, "MATRICULE PROVISOIRE"


@pytest.fixture
async def agent(start_agent: Any, reference_dir: Path) -> Any:
    return await start_agent(demo=DemoOptions(cards="both", tray=False), dmp={"reference_dir": str(reference_dir)})


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, agent.url + path, json=body, headers=agent.headers()) as response:
        if response.content_type.endswith("json"):
            return response.status, await response.json()
        return response.status, await response.read()


async def dmp_calls(http: aiohttp.ClientSession, agent: Any) -> list[dict[str, str]]:
    status, body = await call(http, agent, "GET", "/_sandbox/dmp/calls")
    assert status == 200, body
    return list(body["items"])


async def ready(http: aiohttp.ClientSession, agent: Any, person: Any = PAT_TROIS, *, insi: bool = True) -> None:
    """The PIN entered, the CONF.21 notice read, the patient's consent recorded; the INS obtained through INSi."""
    status, body = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200, body
    status, notices = await call(http, agent, "GET", "/v1/notices")
    for notice in notices["items"]:
        assert (await call(http, agent, "POST", f"/v1/notices/{notice['id']}/ack"))[0] == 200
    status, body = await call(http, agent, "PUT", f"/v1/patients/{person.ins}/consent?oid={person.oid}",
                              {"dmp_consultation": "granted", "dmp_feeding": "non_opposition", "informed": True})
    assert status == 200, body
    if insi:
        await obtain_ins(http, agent, person)


async def refused_traces(http: aiohttp.ClientSession, agent: Any) -> list[dict[str, Any]]:
    status, body = await call(http, agent, "GET", "/v1/traces?action=dmp.refused")
    assert status == 200, body
    return list(body["items"])


def doctor_rpps(agent: Any) -> str:
    holder = agent.services.cards.cps_holder()
    assert holder is not None
    return str(holder.rpps)


def kit_order(reference_dir: Path, agent: Any, **kw: Any) -> dict[str, Any]:
    """A note de vaccination of the CI-SIS kit for PAT_TROIS, written (and vaccinated) by the demo doctor."""
    rpps = doctor_rpps(agent)
    cda = written_by(kit_cda(reference_dir, PAT_TROIS)[0], f"8{rpps}")
    return order_body(cda=cda, ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=rpps, **kw)


# --- rule 3: identity ------------------------------------------------------------------------------------------


async def test_cdt_0_2_080_a_nia_gets_no_dmp_access_and_no_delivery(agent: Any, http: aiohttp.ClientSession) -> None:
    await ready(http, agent, insi=False)
    before = len(await dmp_calls(http, agent))
    body = order_body(ins=NIA, oid=OID_INS_NIA, rpps=doctor_rpps(agent),
                      cda=make_cda(ins=NIA, oid=OID_INS_NIA))
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422 and problem["code"] == "dmp_nia_forbidden", problem
    assert problem["errors"][0]["field"] == "patient.oid" and "NIA" in problem["detail"]
    status, problem = await call(http, agent, "GET", f"/v1/dmp/{NIA}/documents?oid={OID_INS_NIA}")
    assert status == 422 and problem["errors"][0]["field"] == "oid", problem
    status, access = await call(http, agent, "GET", f"/v1/dmp/{NIA}/access?oid={OID_INS_NIA}&identity_status=QUAL")
    assert status == 200 and access["can_read"] is False, access
    # An MSSanté-only order for the same patient is not the DMP's business.
    status, _ = await call(http, agent, "POST", "/v1/orders",
                           {**body, "destinations": {"dmp": False, "mss": [{"address": "dr.x@medecin.mssante.fr"}]}})
    assert status == 201
    assert len(await dmp_calls(http, agent)) == before  # nothing reached the DMP
    rules = {t["details"]["rule"] for t in await refused_traces(http, agent)}
    assert rules == {"0.2-080"}


async def test_ex_gen_1530_only_an_ins_obtained_through_insi_reaches_the_dmp(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent, insi=False)
    before = len(await dmp_calls(http, agent))
    body = kit_order(reference_dir, agent, delay=3600)
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422 and problem["code"] == "ins_not_from_insi", problem
    assert problem["errors"][0]["field"] == "patient.ins" and "INSi" in problem["detail"]
    status, problem = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents?oid={PAT_TROIS.oid}")
    assert status == 422 and problem["code"] == "ins_not_from_insi", problem
    assert len(await dmp_calls(http, agent)) == before
    traces = await refused_traces(http, agent)
    assert [(t["details"]["rule"], t["details"]["operation"]) for t in traces] == [
        ("EX_GEN-1530", "order"), ("EX_GEN-1530", "search")]
    assert all(t["actor"]["rpps"] == doctor_rpps(agent) for t in traces)

    await obtain_ins(http, agent, PAT_TROIS)  # the LGC asks INSi: now it may
    status, created = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, created
    status, found = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents")  # OID from INSi
    assert status == 200, found


async def test_ex_gen_1530_the_nir_read_from_a_carte_vitale_never_reaches_the_dmp(
        agent: Any, http: aiohttp.ClientSession) -> None:
    insured = DEMO_VITALE[0].person
    await ready(http, agent, insured, insi=False)
    before = len(await dmp_calls(http, agent))
    events = agent.services.bus.subscribe()
    status, _ = await call(http, agent, "POST", "/_sandbox/cards/vitale", {"inserted": True})
    assert status == 200
    while (event := await events.get(timeout=10)) is not None and event.type != "dmp.access":
        pass
    assert event is not None
    assert all(b["reasons"][0]["code"] == "ins_unknown" for b in event.data["beneficiaries"]), event.data
    assert len(await dmp_calls(http, agent)) == before  # no TD0.2, no TD3.1 with the card's NIR


# --- rule 5: documents the software must not create ---------------------------------------------------------


@pytest.mark.parametrize("type_code", ["11369-6", "REMB", "DOCPAT01"])
async def test_ex_2_1_1010_documents_the_software_must_not_create(
        agent: Any, http: aiohttp.ClientSession, type_code: str) -> None:
    await ready(http, agent)
    before = len(await dmp_calls(http, agent))
    body = order_body(ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=doctor_rpps(agent),
                      cda=make_cda(ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, type_code=type_code))
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422 and problem["code"] == "dmp_document_not_creatable", problem
    assert problem["errors"][0]["field"] == "document.cda_base64" and type_code in problem["detail"]
    assert len(await dmp_calls(http, agent)) == before
    assert [t["details"]["rule"] for t in await refused_traces(http, agent)] == ["EX_2.1-1010"]


# --- rule 6: identifiers -------------------------------------------------------------------------------------


async def test_ex_2_1_1130_a_document_id_with_an_extension_is_refused(agent: Any, http: aiohttp.ClientSession) -> None:
    await ready(http, agent)
    before = len(await dmp_calls(http, agent))
    cda = make_cda(ins=PAT_TROIS.ins, oid=PAT_TROIS.oid).replace(
        b'<id root="', b'<id extension="42" root="1.2.250.1.999.', 1)
    body = order_body(ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=doctor_rpps(agent), cda=cda)
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422 and problem["code"] == "document_id_has_extension", problem
    assert "extension" in problem["detail"] and "OID" in problem["detail"]
    too_long = make_cda("1." + ".".join(["123456789"] * 13), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid)
    status, problem = await call(http, agent, "POST", "/v1/orders", {**body, "document": {
        "cda_base64": base64.b64encode(too_long).decode()}})
    assert status == 422 and problem["code"] == "document_id_too_long", problem
    assert len(await dmp_calls(http, agent)) == before


# --- rule 4: visibility ---------------------------------------------------------------------------------------


async def test_ex_2_1_1050_masked_to_professionals_and_invisible_to_the_patient_is_refused(
        agent: Any, http: aiohttp.ClientSession) -> None:
    await ready(http, agent)
    body = order_body(ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=doctor_rpps(agent),
                      cda=make_cda(ins=PAT_TROIS.ins, oid=PAT_TROIS.oid))
    body["visibility"] = {"masked_to_ps": True, "invisible_to_patient": True}
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422 and problem["code"] == "masked_and_invisible", problem
    assert problem["errors"][0]["field"] == "visibility.invisible_to_patient"


async def test_ex_2_1_2005_a_vaccination_note_is_never_masked_and_has_one_vaccination(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    body = kit_order(reference_dir, agent)
    body["visibility"] = {"masked_to_ps": True}
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422 and problem["code"] == "vaccination_note_masked", problem
    assert problem["errors"][0]["field"] == "visibility.masked_to_ps"
    # EX_2.1-2020: the vaccinator is one of the authors. Here another professional wrote it, not the vaccinator.
    cda = kit_cda(reference_dir, PAT_TROIS)[0]
    root = etree.fromstring(cda)
    author = root.find("{urn:hl7-org:v3}author/{urn:hl7-org:v3}assignedAuthor/{urn:hl7-org:v3}id")
    assert author is not None
    author.set("extension", "810009999999")
    not_the_vaccinator = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    status, problem = await call(http, agent, "POST", "/v1/orders", {**body, "visibility": {}, "document": {
        "cda_base64": base64.b64encode(not_the_vaccinator).decode()}})
    assert status == 422 and problem["code"] == "vaccination_note_author", problem
    # EX_2.1-2005: confidentiality N only.
    restricted = written_by(cda, f"8{doctor_rpps(agent)}").replace(b'<confidentialityCode code="N"',
                                                                   b'<confidentialityCode code="R"', 1)
    status, problem = await call(http, agent, "POST", "/v1/orders", {**body, "visibility": {}, "document": {
        "cda_base64": base64.b64encode(restricted).decode()}})
    assert status == 422 and problem["code"] == "vaccination_note_confidentiality", problem
    assert [t["details"]["rule"] for t in await refused_traces(http, agent)] == ["EX_2.1-2005"] * 3


async def test_ex_3_3_1040_a_document_visible_to_the_patient_is_never_hidden_again(
        agent: Any, http: aiohttp.ClientSession) -> None:
    await ready(http, agent)
    status, body = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents")
    assert status == 200, body
    visible = next(i for i in body["items"] if not i["visibility"]["invisible_to_patient"])
    before = [c["transaction"] for c in await dmp_calls(http, agent)]
    path = f"/v1/dmp/{PAT_TROIS.ins}/documents/{visible['entry_uuid']}/visibility"
    status, problem = await call(http, agent, "POST", path, {"invisible_to_patient": True})
    assert status == 409 and problem["code"] == "already_visible", problem
    assert problem["field"] == "invisible_to_patient" and "visible" in problem["detail"]
    after = [c["transaction"] for c in await dmp_calls(http, agent)]
    assert "TD3.3" not in after[len(before):]  # the ITI-57 never left


# --- rule 1: TD0.2 before every use; TD0.3 on consent and explicit request only ------------------------------

CLOSED = "202096615708958"  # [CDT] Référentiel Patients 90: DMP fermé ("Je ne veux plus de DMP")
NO_DMP = "153078987658513"  # [CDT] Référentiel Patients 1: DMP non créé
NOT_AUTHORIZED = "207100486108281"  # [CDT] Référentiel Patients 79: DMP actif, no professional authorised yet


async def cnda_patient(http: aiohttp.ClientSession, agent: Any, ins: str, *, consent: bool = True) -> None:
    """A patient of the DMP test book's Référentiel: INSi's answer recorded (the INSi simulator plays INSi's own
    test identities, not these), the consent recorded when asked."""
    await record_insi_answer(agent.services.db, ins, PAT_TROIS.oid)
    if consent:
        status, body = await call(http, agent, "PUT", f"/v1/patients/{ins}/consent",
                                  {"dmp_consultation": "granted", "dmp_feeding": "non_opposition", "informed": True})
        assert status == 200, body


def transactions(calls: list[dict[str, str]]) -> list[str]:
    return [c["transaction"] for c in calls]


async def test_memento_test_d_existence_a_td02_before_every_consultation_and_every_feed(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    mark = len(await dmp_calls(http, agent))
    status, found = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents")
    assert status == 200 and found["items"], found
    status, _ = await call(http, agent, "GET",
                           f"/v1/dmp/{PAT_TROIS.ins}/documents/{found['items'][0]['entry_uuid']}/content")
    assert status == 200
    assert (await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents"))[0] == 200
    # Each consultation asks TD0.2 again, for this professional (never a remembered answer).
    assert transactions((await dmp_calls(http, agent))[mark:]) == ["TD0.2", "TD3.1", "TD0.2", "TD3.1", "TD3.2",
                                                                    "TD0.2", "TD3.1"]
    mark = len(await dmp_calls(http, agent))
    status, order = await call(http, agent, "POST", "/v1/orders", kit_order(reference_dir, agent, delay=0))
    assert status == 201, order
    assert await final_state(http, agent, order["id"]) == "sent"
    assert transactions((await dmp_calls(http, agent))[mark:]) == ["TD0.2", "TD2.1"]
    professionals = {c["professional"][-11:] for c in (await dmp_calls(http, agent))}
    assert professionals == {doctor_rpps(agent)}


async def final_state(http: aiohttp.ClientSession, agent: Any, order_id: str) -> str:
    for _ in range(300):
        _, order = await call(http, agent, "GET", f"/v1/orders/{order_id}")
        if order["state"] in ("sent", "failed"):
            return str(order["state"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"order still {order['state']}")


async def test_cdt_0_2_no_consultation_and_no_feed_of_a_closed_or_absent_dmp(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    for ins in (CLOSED, NO_DMP):
        await cnda_patient(http, agent, ins)
    mark = len(await dmp_calls(http, agent))
    status, problem = await call(http, agent, "GET", f"/v1/dmp/{CLOSED}/documents")
    assert status == 409 and problem["code"] == "dmp_closed" and "fermé" in problem["detail"], problem
    status, problem = await call(http, agent, "GET", f"/v1/dmp/{NO_DMP}/documents")
    assert status == 404 and problem["code"] == "dmp_absent", problem
    assert transactions((await dmp_calls(http, agent))[mark:]) == ["TD0.2", "TD0.2"]  # nothing else was sent

    person = SimpleNamespace(ins=CLOSED, oid=PAT_TROIS.oid, birth_name="MAXIMOP", first_given_name="NADINE",
                             sex="F", birth_date="2002-09-18")
    cda = written_by(kit_cda(reference_dir, person)[0], f"8{doctor_rpps(agent)}")
    status, order = await call(http, agent, "POST", "/v1/orders", order_body(
        cda=cda, ins=CLOSED, oid=PAT_TROIS.oid, rpps=doctor_rpps(agent), delay=0))
    assert status == 201, order
    assert await final_state(http, agent, order["id"]) == "failed"
    assert "TD2.1" not in transactions((await dmp_calls(http, agent))[mark:])
    rules = [t["details"]["rule"] for t in await refused_traces(http, agent)]
    assert rules == ["MEMENTO-TEST-EXISTENCE", "MEMENTO-TEST-EXISTENCE"]


async def test_cdt_0_3_010_authorisation_after_consent_on_explicit_request_removed_on_withdrawal(
        agent: Any, http: aiohttp.ClientSession) -> None:
    await ready(http, agent)
    await cnda_patient(http, agent, NOT_AUTHORIZED, consent=False)
    mark = len(await dmp_calls(http, agent))
    path = f"/v1/dmp/{NOT_AUTHORIZED}/authorization"
    status, problem = await call(http, agent, "POST", path, {"confirm": True})
    assert status == 403 and problem["code"] == "consent_missing", problem  # no consent recorded: no TD0.3
    status, body = await call(http, agent, "PUT", f"/v1/patients/{NOT_AUTHORIZED}/consent",
                              {"dmp_consultation": "granted", "informed": True})
    assert status == 200 and "dmp_authorization" not in body
    status, problem = await call(http, agent, "GET", f"/v1/dmp/{NOT_AUTHORIZED}/documents")
    assert status == 403 and problem["code"] == "dmp_not_authorized", problem  # never a TD0.3 on its own
    status, problem = await call(http, agent, "POST", path, {})
    assert status == 422 and problem["errors"][0]["field"] == "confirm", problem
    assert "TD0.3" not in transactions((await dmp_calls(http, agent))[mark:])

    status, state = await call(http, agent, "POST", path, {"confirm": True})
    assert status == 200 and state["authorized"] is True, state
    status, found = await call(http, agent, "GET", f"/v1/dmp/{NOT_AUTHORIZED}/documents")
    assert status == 200, found
    assert transactions((await dmp_calls(http, agent))[mark:]).count("TD0.3") == 1

    # Rule 9: the patient withdraws consent: this professional's authorisation is removed from the DMP.
    status, body = await call(http, agent, "PUT", f"/v1/patients/{NOT_AUTHORIZED}/consent",
                              {"dmp_consultation": "refused"})
    assert status == 200 and body["dmp_authorization"] == {"removed": True}, body
    assert transactions((await dmp_calls(http, agent))[mark:]).count("TD0.3") == 2
    status, traces = await call(http, agent, "GET", f"/v1/traces?ins={NOT_AUTHORIZED}&action=dmp.td03")
    assert [t["details"]["add"] for t in traces["items"]] in ([True, False], [False, True])
    assert all(t["actor"]["rpps"] == doctor_rpps(agent) for t in traces["items"])


# --- rule 2: search discipline ---------------------------------------------------------------------------------


async def test_ex_3_1_1090_one_automatic_search_when_the_file_opens_none_after_a_feed_or_a_visibility_change(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    insured = DEMO_VITALE[0].person
    await ready(http, agent, insured)  # the INS through INSi: the Vitale insertion may now reach the DMP
    status, _ = await call(http, agent, "GET", f"/v1/dmp/{insured.ins}/access?identity_status=QUAL")  # the LGC's
    assert status == 200
    mark = len(await dmp_calls(http, agent))
    events = agent.services.bus.subscribe()
    status, _ = await call(http, agent, "POST", "/_sandbox/cards/vitale", {"inserted": True})
    assert status == 200
    while (event := await events.get(timeout=10)) is not None and event.type != "dmp.access":
        pass
    assert event is not None and event.data["can_read"] is True, str(event.data)[:3000]
    opening = await dmp_calls(http, agent)
    assert transactions(opening[mark:]) == ["TD0.2", "TD3.1"]  # the file opens: exactly one search
    assert opening[-1]["stored_query"] == "FindDocuments"

    # A feed: TD0.2 and the ITI-41, no search after it.
    mark = len(opening)
    rpps = doctor_rpps(agent)
    cda = written_by(kit_cda(reference_dir, insured)[0], f"8{rpps}")
    status, order = await call(http, agent, "POST", "/v1/orders", order_body(
        cda=cda, ins=insured.ins, oid=insured.oid, rpps=rpps, delay=0))
    assert status == 201, order
    assert await final_state(http, agent, order["id"]) == "sent"
    assert transactions((await dmp_calls(http, agent))[mark:]) == ["TD0.2", "TD2.1"]

    # A visibility change: the look-up of that one document (GetDocuments) and the ITI-57, no search after it.
    entry = (await agent.services.orders.get(order["id"])).deliveries[0].entry_uuid
    mark = len(await dmp_calls(http, agent))
    status, changed = await call(http, agent, "POST", f"/v1/dmp/{insured.ins}/documents/{entry}/visibility",
                                 {"invisible_to_legal_reps": False, "masked_to_ps": False})
    assert status == 200, changed
    after = (await dmp_calls(http, agent))[mark:]
    assert transactions(after) == ["TD0.2", "TD3.1", "TD3.3"]
    assert after[1]["stored_query"] == "GetDocuments"


# --- rule 9: consent ---------------------------------------------------------------------------------------------


async def test_an_opposition_recorded_after_the_order_stops_its_dmp_delivery(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    status, order = await call(http, agent, "POST", "/v1/orders", kit_order(reference_dir, agent, delay=3600))
    assert status == 201, order
    status, _ = await call(http, agent, "PUT", f"/v1/patients/{PAT_TROIS.ins}/consent", {"dmp_feeding": "opposition"})
    assert status == 200
    mark = len(await dmp_calls(http, agent))
    status, _ = await call(http, agent, "POST", f"/v1/orders/{order['id']}/send-now")
    assert status == 200
    assert await final_state(http, agent, order["id"]) == "failed"
    detail = (await call(http, agent, "GET", f"/v1/orders/{order['id']}"))[1]
    assert "feeding_opposed" in str(detail), detail
    assert transactions((await dmp_calls(http, agent))[mark:]) == []  # nothing reached the DMP


async def test_cdt_3_1_150_bris_de_glace_needs_a_reason_which_is_traced(agent: Any,
                                                                        http: aiohttp.ClientSession) -> None:
    await ready(http, agent)
    mark = len(await dmp_calls(http, agent))
    path = f"/v1/dmp/{PAT_TROIS.ins}/documents?mode=bris_de_glace"
    status, problem = await call(http, agent, "GET", path)
    assert status == 422 and problem["errors"][0]["field"] == "reason", problem
    assert transactions((await dmp_calls(http, agent))[mark:]) == []
    events = agent.services.bus.subscribe()
    status, found = await call(http, agent, "GET", path + "&reason=Patient%20inconscient%20aux%20urgences")
    assert status == 200, found
    status, traces = await call(http, agent, "GET", f"/v1/traces?ins={PAT_TROIS.ins}&action=dmp.emergency_access")
    assert [t["details"] for t in traces["items"]] == [{"mode": "bris_de_glace",
                                                        "reason": "Patient inconscient aux urgences"}]
    while (event := await events.get(timeout=10)) is not None and event.type != "dmp.emergency_access":
        pass
    assert event is not None and event.data["mode"] == "bris_de_glace"  # the tray shows it to the doctor


# --- rule 10: refusals traced with the RPPS and the rule -----------------------------------------------------


async def test_an_opposed_patients_order_is_refused_and_traced_with_its_rule(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    status, _ = await call(http, agent, "PUT", f"/v1/patients/{PAT_TROIS.ins}/consent", {"dmp_feeding": "opposition"})
    assert status == 200
    status, problem = await call(http, agent, "POST", "/v1/orders", kit_order(reference_dir, agent))
    assert status == 422 and problem["code"] == "feeding_opposed", problem
    [trace] = await refused_traces(http, agent)
    assert trace["details"] == {"rule": "opposition-alimentation", "code": "feeding_opposed", "operation": "order"}
    assert trace["actor"]["rpps"] == doctor_rpps(agent) and trace["ins"] == PAT_TROIS.ins


# --- rule 8: minors, the connexion secrète ----------------------------------------------------------------------


def n1_order(reference_dir: Path, agent: Any, person: Any, **kw: Any) -> dict[str, Any]:
    """The CI-SIS kit's unstructured document (a PDF in a CDA N1) for ``person``, written by the demo doctor."""
    rpps = doctor_rpps(agent)
    cda = written_by(kit_cda(reference_dir, person, "DOC_NON_STRUCTURE_CDA-R2-N1.xml")[0], f"8{rpps}")
    return {**order_body(cda=cda, ins=person.ins, oid=person.oid, rpps=rpps, delay=0), **kw}


async def test_cdt_0_1_340_the_connexion_secrete_of_a_minor_hides_the_document_from_the_legal_representatives(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    await obtain_ins(http, agent, PAT_TROIS_CAMILLE)
    mark = len(await dmp_calls(http, agent))
    # An adult has no connexion secrète.
    status, problem = await call(http, agent, "POST", "/v1/orders",
                                 n1_order(reference_dir, agent, PAT_TROIS, secret_connection=True))
    assert status == 422 and problem["code"] == "secret_connection_adult", problem
    assert problem["errors"][0]["field"] == "secret_connection"
    assert transactions((await dmp_calls(http, agent))[mark:]) == []

    status, order = await call(http, agent, "POST", "/v1/orders",
                               n1_order(reference_dir, agent, PAT_TROIS_CAMILLE, secret_connection=True))
    assert status == 201, order
    assert await final_state(http, agent, order["id"]) == "sent"
    feed = [c for c in (await dmp_calls(http, agent))[mark:] if c["transaction"] == "TD2.1"]
    assert len(feed) == 1
    envelope = logged_envelope(feed[0])
    said = envelope.xpath("//*[local-name()='Attribute'][@Name=$name]//@code", name=CONFIDENTIALITY_ATTRIBUTE)
    assert said == ["INVISIBLE_REPRESENTANTS_LEGAUX"]  # the VIHF says so
    status, held = await call(http, agent, "GET", f"/_sandbox/dmp/documents?ins={PAT_TROIS_CAMILLE.ins}")
    stored = next(i for i in held["items"] if i["unique_id"] == order["document"]["unique_id"])
    assert stored["visibility"]["invisible_to_legal_reps"] is True


# --- rule 7: authorship ----------------------------------------------------------------------------------------

SENDER = {"id": "10009999999", "family": "AUTRE", "given": "Bruno"}  # B: sends what A (the demo doctor) wrote


def co_written(body: dict[str, Any]) -> dict[str, Any]:
    """The order with its CDA naming the sender B as a second author, in the authenticated structure (2.1-900)."""
    cda = with_co_author(base64.b64decode(body["document"]["cda_base64"]), "8" + SENDER["id"], SENDER["family"],
                         SENDER["given"], organisation_id="1750803447")
    return {**body, "document": {"cda_base64": base64.b64encode(cda).decode()}}


async def test_cdt_2_1_900_written_by_a_sent_by_b_through_the_api(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    mark = len(await dmp_calls(http, agent))
    body = n1_order(reference_dir, agent, PAT_TROIS)
    # B is not among the CDA's authors: refused before anything is stored or sent, naming the field.
    status, problem = await call(http, agent, "POST", "/v1/orders", {**body, "sender": SENDER})
    assert status == 422 and problem["code"] == "dmp_author_mismatch", problem
    assert "sender.id" in [e["field"] for e in problem["errors"]]
    assert transactions((await dmp_calls(http, agent))[mark:]) == []

    status, order = await call(http, agent, "POST", "/v1/orders", {**co_written(body), "sender": SENDER})
    assert status == 201, order
    assert await final_state(http, agent, order["id"]) == "sent"
    [feed] = [c for c in (await dmp_calls(http, agent))[mark:] if c["transaction"] == "TD2.1"]
    assert feed["professional"] == "8" + SENDER["id"]  # B is the VIHF's authenticated user
    envelope = logged_envelope(feed)
    structure = envelope.xpath("//*[local-name()='Attribute'][@Name='Identifiant_Structure']/*/text()")
    assert structure == ["1750803447"]

    def people(scheme: str) -> list[str]:
        return [p.split("^")[0] for p in envelope.xpath(
            "//*[local-name()='Classification'][@classificationScheme=$s]/*[local-name()='Slot']"
            "[@name='authorPerson']/*/*/text()", s=scheme)]

    # A and B authors of the document entry; B the submission set's (and the signature's) author.
    assert people(DE_AUTHOR)[:2] == [f"8{doctor_rpps(agent)}", "8" + SENDER["id"]]
    assert people(SS_AUTHOR) == ["8" + SENDER["id"]]


async def test_cdt_2_1_900_a_secretary_sends_while_the_author_is_away_in_indirect_mode(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    """Indirect authentication: the structure's certificate authenticates and signs, the VIHF names the sender.
    A document the doctor wrote goes out when the secretary sends it, the doctor's CPS not logged in here."""
    status, body = await call(http, agent, "PUT", f"/v1/patients/{PAT_TROIS.ins}/consent?oid={PAT_TROIS.oid}",
                              {"dmp_consultation": "granted", "dmp_feeding": "non_opposition", "informed": True})
    assert status == 200, body
    assert (await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"}))[0] == 200
    await obtain_ins(http, agent, PAT_TROIS)  # INSi in the doctor's name (this sandbox's INSi wants a CPS) ...
    assert (await call(http, agent, "POST", "/v1/cps/logout"))[0] == 200  # ... who then leaves: no CPS session
    mark = len(await dmp_calls(http, agent))
    body = co_written(n1_order(reference_dir, agent, PAT_TROIS))
    status, delegated = await call(http, agent, "POST", "/v1/orders", {**body, "sender": SENDER})
    assert status == 201, delegated
    assert await final_state(http, agent, delegated["id"]) == "sent"
    sent = [c for c in (await dmp_calls(http, agent))[mark:] if c["transaction"] in ("TD0.2", "TD2.1")]
    assert [c["transaction"] for c in sent] == ["TD0.2", "TD2.1"]
    assert {c["professional"] for c in sent} == {"8" + SENDER["id"]}  # the secretary acts, not the card holder
    # The doctor's own order (no sender) still waits for the doctor's CPS.
    own = n1_order(reference_dir, agent, PAT_TROIS)
    status, waiting = await call(http, agent, "POST", "/v1/orders", own)
    assert status == 201, waiting
    for _ in range(300):
        _, order = await call(http, agent, "GET", f"/v1/orders/{waiting['id']}")
        if order["state"] == "waiting_card":
            break
        await asyncio.sleep(0.1)
    assert order["state"] == "waiting_card", order


async def test_ex_0_2_1040_bris_de_glace_and_its_reason_go_to_the_vihf_of_that_request_only(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    """The mode and its reason reach the DMP in the VIHF of the request that asked for them (the reason in the
    attribute configuration names: no public source names one), and never in the next request (EX_0.2-1040)."""
    agent = await start_agent(demo=DemoOptions(cards="both", tray=False),
                              dmp={"reference_dir": str(reference_dir), "vihf_reason_attribute": "Motif_Acces"})
    await ready(http, agent)
    mark = len(await dmp_calls(http, agent))
    base = f"/v1/dmp/{PAT_TROIS.ins}/documents"
    status, found = await call(http, agent, "GET", base + "?mode=bris_de_glace&reason=Patient%20inconscient")
    assert status == 200, found
    status, found = await call(http, agent, "GET", base)
    assert status == 200, found

    def said(call_: dict[str, str], name: str) -> list[str]:
        attribute = logged_envelope(call_).xpath("//*[local-name()='Attribute'][@Name=$n]", n=name)
        return [v for a in attribute for v in a.xpath(".//@code | .//text()[normalize-space()]")]

    searches = [c for c in (await dmp_calls(http, agent))[mark:] if c["transaction"] == "TD3.1"]
    assert len(searches) == 2
    purpose = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
    assert said(searches[0], purpose) == ["BRIS_DE_GLACE"]
    assert said(searches[0], "Motif_Acces") == ["Patient inconscient"]
    assert said(searches[1], purpose) == ["normal"] and said(searches[1], "Motif_Acces") == []
