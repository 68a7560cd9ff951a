"""CNDA test book: TD2.1b replacement through an order (``replaces``), TD3.3d archive and un-archive, and the
submission sets of updates found by "documents added since" (FindSubmissionSets), on a demo agent and its DMP
simulator. Each test counts the requests the simulator received (``GET /_sandbox/dmp/calls``): the look-up before
an action is GetDocuments in ObjectRef mode, never a FindDocuments, and what was refused was never sent.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from lxml import etree

from agent.cli.wiring import DemoOptions
from agent.dmp import ebrim
from relais_sandbox.identities import PAT_TROIS
from tests.integration.test_dmp_cnda_rules import (
    call,
    dmp_calls,
    doctor_rpps,
    final_state,
    n1_order,
    ready,
    refused_traces,
    transactions,
)
from tests.support.dmp import logged_envelope

HL7 = "{urn:hl7-org:v3}"


@pytest.fixture
async def agent(start_agent: Any, reference_dir: Path) -> Any:
    return await start_agent(demo=DemoOptions(cards="both", tray=False), dmp={"reference_dir": str(reference_dir)})


def titled(body: dict[str, Any], title: str) -> dict[str, Any]:
    """The order's CDA with this title (the CDA keeps its fresh id: a new version is a new document)."""
    root = etree.fromstring(base64.b64decode(body["document"]["cda_base64"]))
    element = root.find(f"{HL7}title")
    assert element is not None
    element.text = title
    cda = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return {**body, "document": {"cda_base64": base64.b64encode(cda).decode()}}


async def held(http: aiohttp.ClientSession, agent: Any) -> dict[str, dict[str, Any]]:
    """What the simulated DMP holds for PAT_TROIS, by entryUUID (status, visibility, title)."""
    status, body = await call(http, agent, "GET", f"/_sandbox/dmp/documents?ins={PAT_TROIS.ins}")
    assert status == 200, body
    return {i["entry_uuid"]: i for i in body["items"]}


async def sent(http: aiohttp.ClientSession, agent: Any, body: dict[str, Any]) -> dict[str, Any]:
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order
    assert await final_state(http, agent, order["id"]) == "sent"
    status, order = await call(http, agent, "GET", f"/v1/orders/{order['id']}")
    assert status == 200, order
    return dict(order)


def rplc_target(feed: dict[str, str]) -> list[str]:
    """The targets of the RPLC associations of one ITI-41."""
    return [a.get("targetObject", "") for a in logged_envelope(feed).iter(ebrim.rim("Association"))
            if a.get("associationType") == ebrim.RPLC]


async def test_cdt_2_1_140_replacement_of_a_document_the_practice_fed(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    first = await sent(http, agent, titled(n1_order(reference_dir, agent, PAT_TROIS,
                                                    visibility={"invisible_to_patient": True}), "document RPLC-CPS"))
    first_uuid = first["deliveries"][0]["entry_uuid"]
    assert first_uuid

    # Step 1: a new title, by the previous version's uniqueId. TD0.2, the look-up in ObjectRef mode, the ITI-41.
    mark = len(await dmp_calls(http, agent))
    step1 = await sent(http, agent, titled(n1_order(reference_dir, agent, PAT_TROIS, replaces=first["document"][
        "unique_id"], visibility={"invisible_to_patient": True}), "document RPLC-CPS remplacé"))
    calls = (await dmp_calls(http, agent))[mark:]
    assert transactions(calls) == ["TD0.2", "TD3.1", "TD2.1"]
    assert (calls[1]["stored_query"], calls[1]["return_type"]) == ("GetDocuments", "ObjectRef")
    assert rplc_target(calls[2]) == [first_uuid]
    assert step1["document"]["replaces"] == first["document"]["unique_id"]
    status, traces = await call(http, agent, "GET", "/v1/traces?action=order.sent")
    assert [t["details"].get("replaces") for t in traces["items"] if t["details"]["order_id"] == step1["id"]] == [
        first["document"]["unique_id"]]

    # Step 2: new content, same title; step 3: new title and content, no longer invisible to the patient. Both by
    # the previous version's entryUUID.
    step2 = await sent(http, agent, titled(n1_order(reference_dir, agent, PAT_TROIS, replaces=step1["deliveries"][0][
        "entry_uuid"], visibility={"invisible_to_patient": True}), "document RPLC-CPS remplacé"))
    step3 = await sent(http, agent, titled(n1_order(reference_dir, agent, PAT_TROIS, replaces=step2["deliveries"][0][
        "entry_uuid"]), "document RPLC-CPS FINAL"))
    documents = await held(http, agent)
    versions = [first, step1, step2, step3]
    assert [documents[v["deliveries"][0]["entry_uuid"]]["status"] for v in versions] == [
        "deprecated", "deprecated", "deprecated", "approved"]
    final = documents[step3["deliveries"][0]["entry_uuid"]]
    assert final["title"] == "document RPLC-CPS FINAL" and final["visibility"]["invisible_to_patient"] is False

    # Step 4: hiding it from the patient again is refused before anything is sent (409 naming the field), traced.
    mark = len(await dmp_calls(http, agent))
    status, problem = await call(http, agent, "POST", "/v1/orders", titled(n1_order(
        reference_dir, agent, PAT_TROIS, replaces=step3["document"]["unique_id"],
        visibility={"invisible_to_patient": True}), "document RPLC-CPS FINAL 2"))
    assert status == 409 and problem["code"] == "already_visible", problem
    assert problem["field"] == "visibility.invisible_to_patient" and "visible" in problem["detail"]
    # Hiding it from the legal representatives, who see it: refused the same way.
    status, problem = await call(http, agent, "POST", "/v1/orders", {**titled(n1_order(
        reference_dir, agent, PAT_TROIS, replaces=step3["document"]["unique_id"]), "FINAL 2"),
        "visibility": {"invisible_to_legal_reps": True}})
    assert status == 409 and problem["field"] == "visibility.invisible_to_legal_reps", problem
    assert transactions((await dmp_calls(http, agent))[mark:]) == []
    traces = [t for t in await refused_traces(http, agent) if t["details"].get("operation") == "replacement"]
    assert [t["details"]["rule"] for t in traces] == ["EX_3.3-1040", "EX_3.3-1040"]
    assert all(t["actor"]["rpps"] == doctor_rpps(agent) for t in traces)


async def test_ex_3_3_1040_a_document_made_visible_by_td33b_is_not_hidden_again_by_a_replacement(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    first = await sent(http, agent, n1_order(reference_dir, agent, PAT_TROIS,
                                             visibility={"invisible_to_patient": True}))
    status, changed = await call(http, agent, "POST", f"/v1/dmp/{PAT_TROIS.ins}/documents/"
                                 f"{first['deliveries'][0]['entry_uuid']}/visibility", {"invisible_to_patient": False})
    assert status == 200, changed
    mark = len(await dmp_calls(http, agent))
    status, problem = await call(http, agent, "POST", "/v1/orders", n1_order(
        reference_dir, agent, PAT_TROIS, replaces=first["document"]["unique_id"],
        visibility={"invisible_to_patient": True}))
    assert status == 409 and problem["field"] == "visibility.invisible_to_patient", problem
    assert transactions((await dmp_calls(http, agent))[mark:]) == []
    # Masking to professionals stays possible (it hides nothing from the patient).
    replaced = await sent(http, agent, n1_order(reference_dir, agent, PAT_TROIS, replaces=first["document"][
        "unique_id"], visibility={"masked_to_ps": True}))
    documents = await held(http, agent)
    assert documents[changed["entry_uuid"]]["status"] == "deprecated"  # the TD3.3b version was the one in force
    assert documents[replaced["deliveries"][0]["entry_uuid"]]["status"] == "approved"


async def test_ex_3_3_1040_a_replacement_waiting_in_the_queue_is_checked_again_when_it_leaves(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    first = await sent(http, agent, n1_order(reference_dir, agent, PAT_TROIS,
                                             visibility={"invisible_to_patient": True}))
    # Accepted: the previous version is still invisible to the patient.
    status, waiting = await call(http, agent, "POST", "/v1/orders", {**n1_order(
        reference_dir, agent, PAT_TROIS, replaces=first["document"]["unique_id"],
        visibility={"invisible_to_patient": True}), "delay_seconds": 3600})
    assert status == 201, waiting
    # During the delay, the doctor makes the previous version visible to the patient (TD3.3b).
    status, changed = await call(http, agent, "POST", f"/v1/dmp/{PAT_TROIS.ins}/documents/"
                                 f"{first['deliveries'][0]['entry_uuid']}/visibility", {"invisible_to_patient": False})
    assert status == 200, changed
    mark = len(await dmp_calls(http, agent))
    status, _ = await call(http, agent, "POST", f"/v1/orders/{waiting['id']}/send-now")
    assert status == 200
    assert await final_state(http, agent, waiting["id"]) == "failed"
    assert transactions((await dmp_calls(http, agent))[mark:]) == []  # nothing left, not even a TD0.2
    status, detail = await call(http, agent, "GET", f"/v1/orders/{waiting['id']}")
    error = detail["deliveries"][0]["last_error"]
    assert error["code"] == "already_visible" and error["retry_helps"] is False, error
    assert (await held(http, agent))[changed["entry_uuid"]]["status"] == "approved"


async def test_cdt_2_1_140_only_a_document_this_practice_sent_is_replaced(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    # Not a document this workstation fed (EX_2.1-1130: the software finds the uniqueIds it fed).
    status, problem = await call(http, agent, "POST", "/v1/orders",
                                 n1_order(reference_dir, agent, PAT_TROIS, replaces="1.2.250.1.999.42"))
    assert status == 422 and problem["code"] == "replaced_document_unknown", problem
    assert problem["errors"][0]["field"] == "replaces"
    # Neither an identifier nor a DMP order.
    status, problem = await call(http, agent, "POST", "/v1/orders",
                                 n1_order(reference_dir, agent, PAT_TROIS, replaces="1.2.3^ext"))
    assert status == 422 and problem["errors"][0]["field"] == "replaces", problem
    body = n1_order(reference_dir, agent, PAT_TROIS, replaces="1.2.250.1.999.42")
    body["destinations"] = {"dmp": False, "mss": [{"address": "confrere@medecin.mssante.fr"}]}
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422 and problem["errors"][0]["field"] == "replaces", problem
    # A previous version still waiting in the queue is not in the DMP: cancel it rather than replace it.
    status, waiting = await call(http, agent, "POST", "/v1/orders",
                                 {**n1_order(reference_dir, agent, PAT_TROIS), "delay_seconds": 3600})
    assert status == 201, waiting
    status, problem = await call(http, agent, "POST", "/v1/orders", n1_order(
        reference_dir, agent, PAT_TROIS, replaces=waiting["document"]["unique_id"]))
    assert status == 409 and problem["code"] == "replaced_document_not_sent", problem
    assert problem["field"] == "replaces"
    # A replacement is an order like any other: deferred and cancellable; cancelled, it never leaves.
    first = await sent(http, agent, n1_order(reference_dir, agent, PAT_TROIS))
    mark = len(await dmp_calls(http, agent))
    status, later = await call(http, agent, "POST", "/v1/orders", {**n1_order(
        reference_dir, agent, PAT_TROIS, replaces=first["document"]["unique_id"]), "delay_seconds": 3600})
    assert status == 201, later
    status, cancelled = await call(http, agent, "POST", f"/v1/orders/{later['id']}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled", cancelled
    assert transactions((await dmp_calls(http, agent))[mark:]) == []
    assert (await held(http, agent))[first["deliveries"][0]["entry_uuid"]]["status"] == "approved"


async def test_cdt_2_1_140_the_previous_version_gone_fails_the_replacement(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    first = await sent(http, agent, n1_order(reference_dir, agent, PAT_TROIS))
    status, _ = await call(http, agent, "DELETE",
                           f"/v1/dmp/{PAT_TROIS.ins}/documents/{first['deliveries'][0]['entry_uuid']}")
    assert status == 200
    mark = len(await dmp_calls(http, agent))
    status, order = await call(http, agent, "POST", "/v1/orders", n1_order(
        reference_dir, agent, PAT_TROIS, replaces=first["document"]["unique_id"]))
    assert status == 201, order
    assert await final_state(http, agent, order["id"]) == "failed"
    # The look-up found nothing: no ITI-41 left.
    assert transactions((await dmp_calls(http, agent))[mark:]) == ["TD0.2", "TD3.1"]
    status, detail = await call(http, agent, "GET", f"/v1/orders/{order['id']}")
    error = detail["deliveries"][0]["last_error"]
    assert error["code"] == "dmp_replaced_not_found" and error["retry_helps"] is False, error


async def test_cdt_3_3_120_and_3_3_140_archive_and_unarchive(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    order = await sent(http, agent, n1_order(reference_dir, agent, PAT_TROIS))
    entry_uuid = order["deliveries"][0]["entry_uuid"]
    base = f"/v1/dmp/{PAT_TROIS.ins}/documents"

    mark = len(await dmp_calls(http, agent))
    status, body = await call(http, agent, "POST", f"{base}/{entry_uuid}/archive")
    assert status == 200 and body == {"entry_uuid": entry_uuid, "status": "archived"}, body
    calls = (await dmp_calls(http, agent))[mark:]
    # TD0.2, the look-up in ObjectRef mode (EX_3.1-1090), the ITI-57 Approved -> Archived; no search after.
    assert transactions(calls) == ["TD0.2", "TD3.1", "TD3.3"]
    assert (calls[1]["stored_query"], calls[1]["return_type"]) == ("GetDocuments", "ObjectRef")
    change = next(a for a in logged_envelope(calls[2]).iter(ebrim.rim("Association"))
                  if a.get("associationType") == "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus")
    assert ebrim.slot_value(change, "OriginalStatus") == "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
    assert ebrim.slot_value(change, "NewStatus") == "urn:asip:ci-sis:2010:StatusType:Archived"
    assert (await held(http, agent))[entry_uuid]["status"] == "archived"

    # Archived: not in a default search, found when the status filter asks for it.
    status, found = await call(http, agent, "GET", base)
    assert status == 200 and entry_uuid not in {i["entry_uuid"] for i in found["items"]}, found
    status, found = await call(http, agent, "GET", f"{base}?status=archived")
    assert status == 200 and [i["status"] for i in found["items"] if i["entry_uuid"] == entry_uuid] == ["archived"]

    # Un-archived by its uniqueId: back to Approved.
    mark = len(await dmp_calls(http, agent))
    status, body = await call(http, agent, "POST", f"{base}/{order['document']['unique_id']}/unarchive")
    assert status == 200 and body == {"entry_uuid": entry_uuid, "status": "approved"}, body
    calls = (await dmp_calls(http, agent))[mark:]
    assert transactions(calls) == ["TD0.2", "TD3.1", "TD3.3"]
    change = next(a for a in logged_envelope(calls[2]).iter(ebrim.rim("Association"))
                  if a.get("associationType") == "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus")
    assert ebrim.slot_value(change, "NewStatus") == "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
    assert (await held(http, agent))[entry_uuid]["status"] == "approved"

    # Traced (CONF.14) with the professional and the rule.
    for action, rule in (("dmp.archive", "3.3-120"), ("dmp.unarchive", "3.3-140")):
        status, traces = await call(http, agent, "GET", f"/v1/traces?action={action}")
        assert [(t["actor"]["rpps"], t["details"]["rule"], t["outcome"]) for t in traces["items"]] == [
            (doctor_rpps(agent), rule, "ok")]

    # A document the DMP does not hold: 404 after the look-up, no status change sent.
    mark = len(await dmp_calls(http, agent))
    status, problem = await call(http, agent, "POST", f"{base}/urn:uuid:00000000-0000-4000-8000-000000000000/archive")
    assert status == 404 and problem["code"] == "dmp_document_not_found", problem
    assert transactions((await dmp_calls(http, agent))[mark:]) == ["TD0.2", "TD3.1"]


async def test_cdt_3_1_400_the_submission_sets_of_updates_are_found_since_the_last_visit(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    await ready(http, agent)
    order = await sent(http, agent, n1_order(reference_dir, agent, PAT_TROIS))
    entry_uuid = order["deliveries"][0]["entry_uuid"]
    since = quote((dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat())
    path = f"/v1/dmp/{PAT_TROIS.ins}/documents?since={since}"
    status, found = await call(http, agent, "GET", path)
    assert status == 200 and entry_uuid in {i["entry_uuid"] for i in found["items"]}, found

    # A visibility change (ITI-57) makes a new version in a submission set of its own: FindSubmissionSets finds it.
    status, changed = await call(http, agent, "POST", f"/v1/dmp/{PAT_TROIS.ins}/documents/{entry_uuid}/visibility",
                                 {"masked_to_ps": True})
    assert status == 200, changed
    mark = len(await dmp_calls(http, agent))
    status, found = await call(http, agent, "GET", path)
    assert status == 200, found
    listed = {i["entry_uuid"] for i in found["items"]}
    assert changed["entry_uuid"] in listed and entry_uuid not in listed  # the superseded version is left out
    queries = [c["stored_query"] for c in (await dmp_calls(http, agent))[mark:] if c["transaction"] == "TD3.1"]
    assert queries[0] == "FindSubmissionSets" and set(queries[1:]) == {"GetSubmissionSetAndContents"}

    # An archiving's submission set is kept too, but an archived document is not "added".
    status, _ = await call(http, agent, "POST",
                           f"/v1/dmp/{PAT_TROIS.ins}/documents/{changed['entry_uuid']}/archive")
    assert status == 200
    status, found = await call(http, agent, "GET", path)
    assert status == 200 and changed["entry_uuid"] not in {i["entry_uuid"] for i in found["items"]}, found
