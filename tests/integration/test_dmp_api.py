"""The DMP routes of a demo agent, end to end: the virtual CPS, the consent and notice, the simulated DMP over TLS.

The demo DMP starts with ANS example documents re-identified to the demo patients (authored by Dr MULLER), so a
search finds them, the N1 gives its PDF, and the demo doctor may mask but not delete them.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from lxml import etree

from agent.cli.wiring import DemoOptions
from agent.dmp.models import SubmissionRequest
from relais_sandbox.dmp import reidentify
from relais_sandbox.identities import ORSONI, PAT_TROIS
from tests.support.ins import obtain_ins

OID = PAT_TROIS.oid


@pytest.fixture
async def agent(start_agent: Any, reference_dir: Path) -> Any:
    return await start_agent(demo=DemoOptions(cards="both", tray=False), dmp={"reference_dir": str(reference_dir)})


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, agent.url + path, json=body, headers=agent.headers()) as response:
        if response.content_type == "application/json" or response.content_type.endswith("+json"):
            return response.status, await response.json()
        return response.status, await response.read()


async def from_insi(http: aiohttp.ClientSession, agent: Any, person: Any, *, cps: bool = True) -> None:
    """The doctor enters the PIN (unless connected through Pro Santé Connect) and obtains the patient's INS through
    INSi: the DMP takes no other (EX_GEN-1530)."""
    if not cps:  # INSi takes a CPS or the structure's certificate, not PSC: the caller recorded INSi's answer
        return
    status, body = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200, body
    await obtain_ins(http, agent, person)


async def ready_to_consult(http: aiohttp.ClientSession, agent: Any, person: Any, *, cps: bool = True) -> None:
    """What a doctor does once: obtain the INS through INSi, read the CONF.21 notice, record the patient's
    consent."""
    await from_insi(http, agent, person, cps=cps)
    ins = person.ins
    status, notices = await call(http, agent, "GET", "/v1/notices")
    assert status == 200, notices
    for notice in notices["items"]:
        status, _ = await call(http, agent, "POST", f"/v1/notices/{notice['id']}/ack")
        assert status == 200
    status, body = await call(http, agent, "PUT", f"/v1/patients/{ins}/consent?oid={OID}",
                              {"dmp_consultation": "granted", "dmp_feeding": "non_opposition", "informed": True})
    assert status == 200, body


async def test_search_content_pdf_import_and_masking(agent: Any, http: aiohttp.ClientSession) -> None:
    await from_insi(http, agent, PAT_TROIS)
    status, body = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents?oid={OID}")
    assert status == 403 and body["code"] in ("notice_due", "consent_missing"), body
    await ready_to_consult(http, agent, PAT_TROIS)

    status, body = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents?oid={OID}")
    assert status == 200, body
    by_format = {item["format_code"]: item for item in body["items"]}
    assert "urn:ihe:iti:xds-sd:pdf:2008" in by_format and "urn:asip:ci-sis:vac-note:2021" in by_format
    n1 = by_format["urn:ihe:iti:xds-sd:pdf:2008"]
    status, first = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents?oid={OID}&limit=2")
    status, rest = await call(http, agent, "GET",
                              f"/v1/dmp/{PAT_TROIS.ins}/documents?oid={OID}&limit=2&cursor={first['next_cursor']}")
    paged = [i["entry_uuid"] for i in first["items"] + rest["items"]]
    assert sorted(paged) == sorted(i["entry_uuid"] for i in body["items"]) and rest["next_cursor"] is None

    status, pdf = await call(http, agent, "GET",
                             f"/v1/dmp/{PAT_TROIS.ins}/documents/{n1['entry_uuid']}/content?oid={OID}&as=pdf")
    assert status == 200 and pdf.startswith(b"%PDF")
    vac = by_format["urn:asip:ci-sis:vac-note:2021"]
    status, problem = await call(http, agent, "GET",
                                 f"/v1/dmp/{PAT_TROIS.ins}/documents/{vac['entry_uuid']}/content?oid={OID}&as=pdf")
    assert status == 422 and problem["code"] == "not_a_pdf_document"

    status, imported = await call(http, agent, "POST", f"/v1/dmp/{PAT_TROIS.ins}/documents/import?oid={OID}",
                                  {"entry_uuids": [n1["entry_uuid"], vac["entry_uuid"], "urn:uuid:nope"]})
    assert status == 200
    items = imported["items"]
    assert [i.get("unique_id") for i in items[:2]] == [n1["unique_id"], vac["unique_id"]]
    assert b"ClinicalDocument" in base64.b64decode(items[1]["content_base64"])
    assert items[2]["error"]["code"] == "dmp_document_not_found"

    # A note de vaccination is never masked; a document visible to the patient is never hidden again.
    status, problem = await call(http, agent, "POST",
                                 f"/v1/dmp/{PAT_TROIS.ins}/documents/{vac['entry_uuid']}/visibility?oid={OID}",
                                 {"masked_to_ps": True})
    assert status == 422 and problem["code"] == "vaccination_note_masked", problem
    status, problem = await call(http, agent, "POST",
                                 f"/v1/dmp/{PAT_TROIS.ins}/documents/{n1['entry_uuid']}/visibility?oid={OID}",
                                 {"invisible_to_patient": True})
    assert status == 409 and problem["code"] == "already_visible", problem
    status, masked = await call(http, agent, "POST",
                                f"/v1/dmp/{PAT_TROIS.ins}/documents/{n1['entry_uuid']}/visibility?oid={OID}",
                                {"masked_to_ps": True})
    assert status == 200, masked
    assert masked["entry_uuid"] != n1["entry_uuid"] and masked["visibility"]["masked_to_ps"]
    # Masked to professionals: Dr MULLER wrote it, so the demo doctor no longer finds it.
    status, body = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents?oid={OID}")
    assert status == 200 and masked["unique_id"] not in {i["unique_id"] for i in body["items"]}

    # Dr MULLER wrote the seeded documents: the demo doctor may not delete them.
    status, problem = await call(http, agent, "DELETE", f"/v1/dmp/{PAT_TROIS.ins}/documents/{masked['entry_uuid']}"
                                                        f"?oid={OID}")
    assert status == 502 and "auteur" in problem["detail"]

    status, agent_status = await call(http, agent, "GET", "/v1/status")
    assert agent_status["connectivity"]["dmp"]["reachable"] is True

    status, traces = await call(http, agent, "GET", f"/v1/traces?ins={PAT_TROIS.ins}")
    assert status == 200
    actions = [t["action"] for t in traces["items"]]
    assert {"dmp.search", "dmp.retrieve", "dmp.visibility", "dmp.delete"} <= set(actions)


async def test_the_author_deletes_their_document(agent: Any, http: aiohttp.ClientSession,
                                                 reference_dir: Path) -> None:
    await ready_to_consult(http, agent, ORSONI)
    services = agent.services
    professional = services.dmp.professional()  # who the VIHF names: the logged-in CPS holder
    assert professional is not None
    data = (reference_dir / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    cda, uid = reidentify(data, ORSONI.ins, ORSONI.oid, ORSONI.birth_name, ORSONI.first_given_name, ORSONI.sex,
                          ORSONI.birth_date, f"2.25.{uuid.uuid4().int}")
    root = etree.fromstring(cda)
    author = root.find("{urn:hl7-org:v3}author/{urn:hl7-org:v3}assignedAuthor/{urn:hl7-org:v3}id")
    assert author is not None
    author.set("extension", professional.national_id)
    cda = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    result = await services.dmp.submit(SubmissionRequest(
        cda=cda, submission_set_unique_id=f"2.25.{uuid.uuid4().int}", document_unique_id=uid, ins=ORSONI.ins,
        ins_oid=ORSONI.oid))

    status, body = await call(http, agent, "DELETE",
                              f"/v1/dmp/{ORSONI.ins}/documents/{result.entry_uuid}?oid={ORSONI.oid}")
    assert status == 200, body
    status, body = await call(http, agent, "GET", f"/v1/dmp/{ORSONI.ins}/documents?oid={ORSONI.oid}")
    assert uid not in {i["unique_id"] for i in body["items"]}
    status, sandbox = await call(http, agent, "GET", f"/_sandbox/dmp/documents?ins={ORSONI.ins}")
    assert uid not in {i["unique_id"] for i in sandbox["items"]}


async def test_documents_added_since_the_last_visit(agent: Any, http: aiohttp.ClientSession) -> None:
    """CNDA 3.1-400 through the API: ?since= asks FindSubmissionSets (the demo documents were added at start)."""
    await ready_to_consult(http, agent, PAT_TROIS)
    now = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=2)))
    path = f"/v1/dmp/{PAT_TROIS.ins}/documents?oid={OID}&since="
    status, before = await call(http, agent, "GET", path + quote((now - dt.timedelta(hours=1)).isoformat()))
    assert status == 200, before
    assert before["items"], before
    status, later = await call(http, agent, "GET", path + quote((now + dt.timedelta(hours=1)).isoformat()))
    assert status == 200 and later["items"] == [], later
    status, bad = await call(http, agent, "GET", path + "hier")
    assert status == 422 and bad["errors"][0]["field"] == "since", bad
