"""The documents routes on a real agent: build, validate, and orders that carry a PDF, a kind or a ready CDA."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.documents import PDF_BASE64
from tests.support.ins import insi_gave_order_patient

PATIENT = {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "identity_status": "QUAL",
           "birth_name": "PAT-TROIS", "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28",
           "birth_place": "51215"}
AUTHOR = {"rpps": "01234567897", "family": "MULLER", "given": "Charles", "civility": "M", "title": "DR",
          "organisation": {"id": "1750803447", "name": "Cabinet médical du Dr MULLER"}}
PDF64 = PDF_BASE64  # a real one-page PDF: the agent turns it into PDF/A-1 with Ghostscript
SCAN = "]d201034009328572411728123110ABC123\x1d21XYZ789"


@pytest.fixture
async def agent(start_agent: Callable[..., Any], reference_dir: Path, tmp_path: Path) -> Any:
    kit = reference_dir / "ci-sis"
    if not kit.is_dir():
        pytest.skip("kit CI-SIS absent")
    return await start_agent(cda={"kit_dir": str(kit), "cache_dir": str(tmp_path / "xsl-cache"), "warm_up": False},
                             queue={"delay_seconds": 3600}, insi={"allow_test_oids": True})


async def post(http: aiohttp.ClientSession, agent: Any, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    if path == "/v1/orders":
        await insi_gave_order_patient(agent, body)
    async with http.post(agent.url + path, json=body, headers=agent.headers()) as response:
        return response.status, await response.json(content_type=None)


async def test_build_a_vaccination_note_and_get_its_report(agent: Any, http: aiohttp.ClientSession) -> None:
    status, body = await post(http, agent, "/v1/cda", {
        "kind": "vaccination_note", "patient": PATIENT, "author": AUTHOR,
        "data": {"datamatrix": SCAN, "administered_at": "2026-01-05T10:00:00+01:00"}})
    assert status == 200, body
    assert body["validation"]["valid"] is True and body["validation"]["errors"] == []
    assert body["document"]["type_code"] == "87273-9"
    cda = base64.b64decode(body["cda_base64"])
    assert body["unique_id"].encode() in cda and b"3400932857241" in cda


async def test_build_n1_refuses_what_is_not_a_pdf(agent: Any, http: aiohttp.ClientSession) -> None:
    status, body = await post(http, agent, "/v1/cda", {
        "kind": "n1", "patient": PATIENT, "author": AUTHOR,
        "data": {"pdf_base64": base64.b64encode(b"GIF89a...").decode(), "type_code": "11488-4", "title": "CR",
                 "service_start": "2026-01-05T10:00:00+01:00"}})
    assert status == 422 and body["type"].endswith(":not_pdf")
    assert body["errors"][0]["field"] == "data.pdf_base64"


async def test_a_wrong_check_digit_is_a_422_naming_the_scan(agent: Any, http: aiohttp.ClientSession) -> None:
    status, body = await post(http, agent, "/v1/cda", {
        "kind": "vaccination_note", "patient": PATIENT, "author": AUTHOR,
        "data": {"datamatrix": "0103400932857242", "administered_at": "2026-01-05T10:00:00+01:00"}})
    assert status == 422
    assert body["errors"][0]["field"] == "data.datamatrix" and "Clé de contrôle" in body["errors"][0]["message"]


async def test_a_synthese_code_outside_its_value_set_or_terminology_is_a_422_naming_it(
        agent: Any, http: aiohttp.ClientSession) -> None:
    status, body = await post(http, agent, "/v1/cda", {
        "kind": "synthese_medicale", "patient": PATIENT, "author": AUTHOR,
        "data": {"problems": [{"code": "E11.9", "display": "Diabète de type 2", "kind": "OINT"}]}})
    assert status == 422 and body["type"].endswith(":code_not_in_value_set"), body
    assert body["errors"][0]["field"] == "data.problems[0].kind"
    assert "JDV_ProblemCodes_CISIS" in body["errors"][0]["message"]
    status, body = await post(http, agent, "/v1/cda", {
        "kind": "synthese_medicale", "patient": PATIENT, "author": AUTHOR,
        "data": {"procedures": [{"code": "HHFA016", "display": "Appendicectomie", "system": "1.2.3.4"}]}})
    assert status == 422 and body["type"].endswith(":code_system_not_allowed"), body
    assert body["errors"][0]["field"] == "data.procedures[0].system" and "CCAM" in body["errors"][0]["message"]


async def test_validate_reports_in_french_with_location(agent: Any, http: aiohttp.ClientSession,
                                                        reference_dir: Path) -> None:
    example = (reference_dir / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    status, body = await post(http, agent, "/v1/cda/validate", {"cda_base64": base64.b64encode(example).decode()})
    assert status == 200 and body["valid"] is True
    broken = example.replace(b'<birthTime value="19790328"/>', b"", 1)
    status, body = await post(http, agent, "/v1/cda/validate", {"cda_base64": base64.b64encode(broken).decode()})
    assert status == 200 and body["valid"] is False
    messages = [e["message"] for e in body["errors"]]
    assert any("date de naissance du patient est obligatoirement présente" in m for m in messages)
    assert all(e["location"].startswith("/ClinicalDocument") for e in body["errors"])


async def test_orders_accept_a_pdf_and_a_kind_and_refuse_an_invalid_cda(agent: Any, http: aiohttp.ClientSession,
                                                                        reference_dir: Path) -> None:
    base = {"patient": PATIENT, "author": AUTHOR, "destinations": {"dmp": True}}
    status, body = await post(http, agent, "/v1/orders", {**base, "client_ref": "pdf-1", "document": {
        "pdf_base64": PDF64, "type_code": "11488-4", "title": "CR de consultation",
        "service_start": "2026-01-05T10:00:00+01:00"}})
    assert status == 201, body
    assert body["document"]["type_code"] == "11488-4"
    status, body = await post(http, agent, "/v1/orders", {**base, "client_ref": "vac-1", "document": {
        "kind": "vaccination_note", "data": {"datamatrix": SCAN, "administered_at": "2026-01-05T10:00:00+01:00"}}})
    assert status == 201, body
    assert body["document"]["type_code"] == "87273-9"

    example = (reference_dir / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    broken = example.replace(b'<realmCode code="FR" />', b"", 1)
    status, body = await post(http, agent, "/v1/orders", {**base, "client_ref": "bad-1", "document": {
        "cda_base64": base64.b64encode(broken).decode()}})
    assert status == 422, body
    assert body["type"].endswith("cda_invalid")
    assert body["validation"]["valid"] is False
    assert any("realmCode" in e["message"] for e in body["errors"])
    status, body = await post(http, agent, "/v1/orders", {**base, "client_ref": "gif-1", "document": {
        "pdf_base64": base64.b64encode(b"GIF89a").decode(), "type_code": "11488-4", "title": "CR",
        "service_start": "2026-01-05T10:00:00+01:00"}})
    assert status == 422 and body["type"].endswith(":not_pdf")
    assert body["errors"][0]["field"] == "document.pdf_base64"
    async with http.get(agent.url + "/v1/orders", headers=agent.headers()) as response:
        refs = [o["client_ref"] for o in (await response.json())["items"]]
    assert "bad-1" not in refs and "gif-1" not in refs and {"pdf-1", "vac-1"} <= set(refs)


async def test_routes_are_in_the_openapi_document(agent: Any, http: aiohttp.ClientSession) -> None:
    async with http.get(agent.url + "/v1/openapi.json") as response:
        paths = (await response.json())["paths"]
    assert "post" in paths["/v1/cda"] and "post" in paths["/v1/cda/validate"]


async def test_the_cr_of_the_9th_month_exam_says_the_certificate_is_due(agent: Any,
                                                                        http: aiohttp.ClientSession) -> None:
    child = {**PATIENT, "birth_date": "2024-04-01"}
    status, body = await post(http, agent, "/v1/cda", {"kind": "n1", "patient": child, "author": AUTHOR, "data": {
        "pdf_base64": PDF64, "type_code": "59283-2", "title": "Examen du 9e mois",
        "service_start": "2025-01-10T10:00:00+01:00"}})
    assert status == 200, body
    assert body["cse_due"]["kind"] == "cse_cs9"
    assert body["cse_due"]["mss_recipient"] == "certificatsdesante@plateformecse.mssante.fr"
    status, body = await post(http, agent, "/v1/cda", {"kind": "n1", "patient": child, "author": AUTHOR, "data": {
        "pdf_base64": PDF64, "type_code": "11488-4", "title": "Consultation",
        "service_start": "2025-01-10T10:00:00+01:00"}})
    assert body["cse_due"] is None


async def test_prefill_a_certificate_from_earlier_documents(agent: Any, http: aiohttp.ClientSession,
                                                            reference_dir: Path) -> None:
    cs9 = (reference_dir / "ci-sis" / "ExemplesCDA" / "CSE-CS9_2025.01.xml").read_bytes()
    status, body = await post(http, agent, "/v1/cda/prefill", {
        "kind": "cse_cs24", "documents": [base64.b64encode(cs9).decode()]})
    assert status == 200, body
    assert body["data"]["childcare"] is True and len(body["data"]["parents"]) == 2
    status, body = await post(http, agent, "/v1/cda/prefill", {"kind": "cse_cs24", "documents": ["pas du base64"]})
    assert status == 422


async def test_an_order_for_the_9th_month_exam_cr_says_the_certificate_is_due(
        agent: Any, http: aiohttp.ClientSession) -> None:
    subscription = agent.services.bus.subscribe()
    child = {**PATIENT, "birth_date": "2024-04-01"}
    status, body = await post(http, agent, "/v1/orders", {
        "client_ref": "exam-9m", "patient": child, "author": AUTHOR, "document": {
            "pdf_base64": PDF64, "type_code": "59283-2", "title": "Examen du 9e mois",
            "service_start": "2025-01-10T10:00:00+01:00"}})
    assert status == 201, body
    assert body["cse_due"]["kind"] == "cse_cs9" and "9e mois" in body["cse_due"]["message"]
    events = []
    while (event := await subscription.get(timeout=0.05)) is not None:
        events.append(event)
    subscription.close()
    due = [e for e in events if e.type == "cse.due"]
    assert len(due) == 1 and due[0].data["order_id"] == body["id"] and "ins" not in due[0].data
    status, body = await post(http, agent, "/v1/orders", {
        "client_ref": "consult-1", "patient": child, "author": AUTHOR, "document": {
            "pdf_base64": PDF64, "type_code": "11488-4", "title": "Consultation",
            "service_start": "2025-01-10T10:00:00+01:00"}})
    assert status == 201 and body["cse_due"] is None


async def test_without_the_kit_no_order_is_accepted_and_status_says_so(start_agent: Callable[..., Any],
                                                                       http: aiohttp.ClientSession) -> None:
    agent = await start_agent(cda={"allow_unvalidated": False}, queue={"delay_seconds": 3600},
                              insi={"allow_test_oids": True})
    status, body = await post(http, agent, "/v1/orders", {
        "patient": PATIENT, "author": AUTHOR, "destinations": {"dmp": True}, "client_ref": "no-kit",
        "document": {"pdf_base64": PDF64, "type_code": "11488-4", "title": "CR",
                     "service_start": "2026-01-05T10:00:00+01:00"}})
    assert status == 503 and body["type"].endswith("cda_kit_missing"), body
    async with http.get(agent.url + "/v1/status", headers=agent.headers()) as response:
        state = await response.json()
    assert state["cda"]["validation"] is False and state["cda"]["unvalidated_accepted"] is False
    assert any("aucun document CDA" in w for w in state.get("warnings", [])), state.get("warnings")


async def test_unusual_cdas_get_a_clear_refusal_never_a_server_error(agent: Any, http: aiohttp.ClientSession,
                                                                     reference_dir: Path) -> None:
    import re

    example = (reference_dir / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    unusual = {
        "racine étrangère": b"<a/>", "sans espace de noms": b"<ClinicalDocument/>",
        "vide": b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>',
        "DOCTYPE": b'<!DOCTYPE x [<!ENTITY a "aa">]><ClinicalDocument xmlns="urn:hl7-org:v3">&a;</ClinicalDocument>',
        "sans id": re.sub(rb"<id root=\"[^\"]*\"[^>]*/>", b"", example, count=1),
        "id sans root": re.sub(rb"<id root=\"[^\"]*\"", b'<id extension="x"', example, count=1),
        "date illisible": re.sub(rb"<effectiveTime value=\"[^\"]*\"", b'<effectiveTime value="zz"', example, count=1),
        "sans patient": re.sub(rb"<recordTarget>.*?</recordTarget>", b"", example, count=1, flags=re.S),
        "XInclude": example.replace(b"<realmCode", b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
                                                   b'href="/etc/passwd"/><realmCode', 1),
        "deux racines": example + example, "octet nul": example.replace(b"<realmCode", b"\x00<realmCode", 1),
        "imbrication profonde": b'<ClinicalDocument xmlns="urn:hl7-org:v3">' + b"<a>" * 5000 + b"</a>" * 5000
                                + b"</ClinicalDocument>",
    }
    base = {"patient": PATIENT, "author": AUTHOR, "destinations": {"dmp": True}}
    for number, (what, cda) in enumerate(unusual.items()):
        encoded = base64.b64encode(cda).decode()
        status, body = await post(http, agent, "/v1/orders", {**base, "client_ref": f"odd-{number}",
                                                              "document": {"cda_base64": encoded}})
        assert status == 422 and body["detail"], (what, status, body)  # refused with a reason, nothing queued
        async with http.post(agent.url + "/v1/cda/render", json={"cda_base64": encoded},
                             headers=agent.headers()) as response:
            assert response.status in (200, 422), (what, response.status)
    for broken in ({"destinations": None}, {"patient": None}, {"author": None}, {"document": None},
                   {"document": {"cda_base64": None}}):
        status, body = await post(http, agent, "/v1/orders", {**base, "client_ref": "odd-null", **broken})
        assert status == 422 and body["code"] == "invalid_input", (broken, status, body)
    async with http.get(agent.url + "/v1/orders", headers=agent.headers()) as response:
        assert not [o for o in (await response.json())["items"] if o["client_ref"].startswith("odd-")]
