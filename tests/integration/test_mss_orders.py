"""MSSanté through the agent as an LGC uses it: a CS9 order goes to the CSE platform automatically and to the
correspondent, over the sandbox operator; the DSN and MDN reach the order; masking refusals; the directory."""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

from agent.cli.wiring import DemoOptions
from agent.domain.catalogue import CSE_MSS_ADDRESS
from agent.mss import xdm
from relais_sandbox.dmp import reidentify
from relais_sandbox.identities import PAT_TROIS
from tests.support.mail import leaking_headers

CORRESPONDENT = "jeanne.martin@medecin.demo.mssante.fr"


@pytest.fixture
async def agent(start_agent: Any, reference_dir: Path) -> Any:
    return await start_agent(demo=DemoOptions(cards="both", tray=False), dmp={"reference_dir": str(reference_dir)},
                             mss={"ack_poll_seconds": 3600.0})


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, agent.url + path, json=body, headers=agent.headers()) as response:
        return response.status, await response.json()


async def cs9_order(http: aiohttp.ClientSession, agent: Any, reference: Path, **extra: Any) -> dict[str, Any]:
    status, cards = await call(http, agent, "GET", "/v1/cards")
    assert status == 200, cards
    rpps = cards["cps"]["holder"]["rpps"]
    data = (reference / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()
    p = PAT_TROIS
    cda, _ = reidentify(data, p.ins, p.oid, p.birth_name, p.first_given_name, p.sex, p.birth_date,
                        f"2.25.{uuid.uuid4().int}")
    root = etree.fromstring(cda)
    author = root.find("{urn:hl7-org:v3}author/{urn:hl7-org:v3}assignedAuthor/{urn:hl7-org:v3}id")
    assert author is not None
    author.set("extension", rpps if rpps.startswith("8") else f"8{rpps}")
    body = {"patient": {"ins": p.ins, "oid": p.oid, "identity_status": "QUAL", "birth_name": p.birth_name,
                        "given_names": [p.first_given_name], "sex": p.sex, "birth_date": p.birth_date},
            "author": {"rpps": rpps},
            "document": {"cda_base64": base64.b64encode(etree.tostring(root, xml_declaration=True,
                                                                       encoding="UTF-8")).decode()},
            "destinations": {"dmp": False, "mss": [{"address": CORRESPONDENT}]}, "delay_seconds": 0}
    for key, value in extra.items():
        body[key] = value
    return body


async def wait_sent(http: aiohttp.ClientSession, agent: Any, order_id: str) -> dict[str, Any]:
    for _ in range(200):
        status, order = await call(http, agent, "GET", f"/v1/orders/{order_id}")
        assert status == 200, order
        if all(d["state"] in ("sent", "failed") for d in order["deliveries"]):
            return dict(order)
        await asyncio.sleep(0.1)
    raise AssertionError(f"order not sent: {order}")


async def test_cs9_goes_to_the_cse_platform_and_acknowledgements_reach_the_order(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    status, body = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200, body
    status, order = await call(http, agent, "POST", "/v1/orders", await cs9_order(http, agent, reference_dir))
    assert status == 201, order
    assert sorted(d["destination"] for d in order["deliveries"]) == sorted(
        [f"mss:{CORRESPONDENT}", f"mss:{CSE_MSS_ADDRESS}"])

    order = await wait_sent(http, agent, order["id"])
    assert {d["state"] for d in order["deliveries"]} == {"sent"}, order
    status, sandbox = await call(http, agent, "GET", "/_sandbox/mss/messages")
    assert status == 200
    by_rcpt = {tuple(m["rcpt_tos"]): m for m in sandbox["items"]}
    assert set(by_rcpt) == {(CORRESPONDENT,), (CSE_MSS_ADDRESS,)}
    ids = {d["destination"]: d["message_id"] for d in order["deliveries"]}
    assert by_rcpt[(CSE_MSS_ADDRESS,)]["message_id"] == ids[f"mss:{CSE_MSS_ADDRESS}"]
    from email import message_from_bytes, policy

    mail = message_from_bytes(base64.b64decode(by_rcpt[(CSE_MSS_ADDRESS,)]["raw_base64"]), policy=policy.default)
    package = xdm.read_xdm(next(mail.iter_attachments()).get_content())
    assert b"1.2.250.1.213.1.1.1.5.2" in package.entries[0].content  # the CS9 itself

    # The acknowledgement reader wakes after each send (no manual poll): wait for it like an LGC would.
    for _ in range(300):
        status, order = await call(http, agent, "GET", f"/v1/orders/{order['id']}")
        if all(d["acknowledgement"] == "read" for d in order["deliveries"]):
            break
        await asyncio.sleep(0.1)
    for delivery in order["deliveries"]:
        assert delivery["acknowledgement"] == "read", delivery
        assert {(a["kind"], a["outcome"]) for a in delivery["acknowledgements"]} == {("dsn", "delivered"),
                                                                                   ("mdn", "read")}
    status, body = await call(http, agent, "GET", "/v1/status")
    assert body["connectivity"]["mss"]["configured"] and body["connectivity"]["mss"]["reachable"], body


async def test_the_cse_platform_is_the_configured_address(start_agent: Any, http: aiohttp.ClientSession,
                                                          reference_dir: Path) -> None:
    """LGC.CSE.15: no public source names the platform's mailbox, so [mss] cse_address decides where a CS9 goes."""
    platform = "cse.test@plateforme.demo.mssante.fr"
    agent = await start_agent(demo=DemoOptions(cards="both", tray=False), dmp={"reference_dir": str(reference_dir)},
                              mss={"ack_poll_seconds": 3600.0, "cse_address": platform})
    status, order = await call(http, agent, "POST", "/v1/orders",
                               {**await cs9_order(http, agent, reference_dir), "delay_seconds": 3600})
    assert status == 201, order
    assert sorted(d["destination"] for d in order["deliveries"]) == sorted(
        [f"mss:{CORRESPONDENT}", f"mss:{platform}"])


async def test_masking_refusals_say_why(agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    body = await cs9_order(http, agent, reference_dir, visibility={"masked_to_ps": True})
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422 and problem["code"] == "mss_refused", problem
    assert all("masqué aux professionnels" in e["message"] for e in problem["errors"])
    body = await cs9_order(http, agent, reference_dir, visibility={"invisible_to_patient": True})
    body["destinations"] = {"dmp": False, "mss": [], "patient_mss": True}
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422, problem
    assert any(e["field"] == "destinations.patient_mss" and "invisible pour le patient" in e["message"]
               for e in problem["errors"])
    status, sandbox = await call(http, agent, "GET", "/_sandbox/mss/messages")
    assert sandbox["items"] == []


async def test_directory_lookup(agent: Any, http: aiohttp.ClientSession) -> None:
    status, found = await call(http, agent, "GET", "/v1/directory?name=martin")
    assert status == 200, found
    assert [i["mss_addresses"] for i in found["items"]] == [[CORRESPONDENT],
                                                            ["paul.martinez@medecin.demo.mssante.fr"]]
    status, problem = await call(http, agent, "GET", "/v1/directory?name=x")
    assert status == 422 and problem["errors"][0]["field"] == "name"


async def test_patient_mailbox_gets_the_document_without_reply(agent: Any, http: aiohttp.ClientSession,
                                                               reference_dir: Path) -> None:
    from email import message_from_bytes, policy

    status, body = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200, body
    body = await cs9_order(http, agent, reference_dir)
    body["document"] = {"cda_base64": body["document"]["cda_base64"]}
    body["destinations"] = {"dmp": False, "mss": [], "patient_mss": True}
    body["mss_message"] = {"patient_body": "Bonjour, voici le certificat de santé de votre enfant.",
                           "body": "Certificat CS9 ci-joint."}
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order
    order = await wait_sent(http, agent, order["id"])
    destinations = {d["destination"]: d["state"] for d in order["deliveries"]}
    assert destinations == {"patient_mss": "sent", f"mss:{CSE_MSS_ADDRESS}": "sent"}, order
    status, sandbox = await call(http, agent, "GET", "/_sandbox/mss/messages")
    to_patient = [m for m in sandbox["items"] if m["rcpt_tos"] == [f"{PAT_TROIS.ins}@patient.mssante.fr"]]
    assert len(to_patient) == 1
    mail = message_from_bytes(base64.b64decode(to_patient[0]["raw_base64"]), policy=policy.default)
    assert mail["X-MSS-MES"] == "FIN" and mail["X-MSS-INS"] == "O" and mail["X-MSS-NIL"]
    body_part = mail.get_body(("plain",))
    assert body_part is not None and body_part.get_content().strip() == (
        "Bonjour, voici le certificat de santé de votre enfant.")  # the order's text for the patient
    to_cse = [m for m in sandbox["items"] if m["rcpt_tos"] == [CSE_MSS_ADDRESS]]
    cse_mail = message_from_bytes(base64.b64decode(to_cse[0]["raw_base64"]), policy=policy.default)
    cse_body = cse_mail.get_body(("plain",))
    assert cse_body is not None and cse_body.get_content().strip() == "Certificat CS9 ci-joint."
    assert cse_mail["X-MSS-MES"] is None
    assert_no_identifier_in_headers(sandbox["items"], base64.b64decode(body["document"]["cda_base64"]))


def assert_no_identifier_in_headers(items: list[dict[str, Any]], cda: bytes) -> None:
    """Every header of every message the operator received: no INS, patient name or document title."""
    root = etree.fromstring(cda)
    title = " ".join((root.findtext("{urn:hl7-org:v3}title") or "").split())
    forbidden = [PAT_TROIS.ins, PAT_TROIS.birth_name, PAT_TROIS.first_given_name, title]
    assert title and items
    for item in items:
        leaks = leaking_headers(base64.b64decode(item["raw_base64"]), forbidden)
        assert leaks == [], leaks


async def test_ins_va1_53_unqualified_identity_sends_no_ins(agent: Any, http: aiohttp.ClientSession,
                                                            reference_dir: Path) -> None:
    """INS/va1.53: with a "récupérée" identity, no INS matricule or OID references the document or the message."""
    status, body = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200, body
    body = await cs9_order(http, agent, reference_dir)
    body["patient"]["identity_status"] = "RECUP"
    status, problem = await call(http, agent, "POST", "/v1/orders", body)  # the CDA names the patient by INS
    assert status == 422 and problem["errors"][0]["field"] == "document.cda_base64", problem
    assert "INS/va1.53" in problem["errors"][0]["message"]

    root = etree.fromstring(base64.b64decode(body["document"]["cda_base64"]))
    for patient_id in root.iterfind("{urn:hl7-org:v3}recordTarget/{urn:hl7-org:v3}patientRole/{urn:hl7-org:v3}id"):
        patient_id.set("root", "1.2.250.1.999.1.1")  # the practice software's local patient number
        patient_id.set("extension", "DOSSIER-4242")
    cda = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    assert PAT_TROIS.ins.encode() not in cda
    body["document"] = {"cda_base64": base64.b64encode(cda).decode()}
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order
    order = await wait_sent(http, agent, order["id"])
    assert {d["state"] for d in order["deliveries"]} == {"sent"}, order
    assert "Identité non qualifiée" in order["mss_identity"]
    status, sandbox = await call(http, agent, "GET", "/_sandbox/mss/messages")
    from email import message_from_bytes, policy

    for item in sandbox["items"]:
        raw = base64.b64decode(item["raw_base64"])
        assert PAT_TROIS.ins.encode() not in raw and PAT_TROIS.oid.encode() not in raw
        mail = message_from_bytes(raw, policy=policy.default)
        assert mail["X-MSS-INS"] == "N"
        package = xdm.read_xdm(next(mail.iter_attachments()).get_content())
        assert b"DOSSIER-4242" in package.metadata
        assert all(PAT_TROIS.ins.encode() not in e.content for e in package.entries)
    assert_no_identifier_in_headers(sandbox["items"], cda)


async def test_subject_is_generic_unless_the_doctor_writes_one(agent: Any, http: aiohttp.ClientSession,
                                                               reference_dir: Path) -> None:
    status, body = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200, body
    body = await cs9_order(http, agent, reference_dir, mss_message={"subject": "Suite de notre échange"})
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order
    await wait_sent(http, agent, order["id"])
    bad = await cs9_order(http, agent, reference_dir, mss_message={"subject": "x\r\nBcc: a@b.fr"})
    status, problem = await call(http, agent, "POST", "/v1/orders", bad)
    assert status == 422 and problem["errors"][0]["field"] == "mss_message.subject", problem
    status, sandbox = await call(http, agent, "GET", "/_sandbox/mss/messages")
    from email import message_from_bytes, policy

    subjects = {str(message_from_bytes(base64.b64decode(i["raw_base64"]), policy=policy.default)["Subject"])
                for i in sandbox["items"]}
    assert subjects == {"Suite de notre échange"}, subjects


async def test_acknowledgement_goes_from_delivered_to_read(agent: Any, http: aiohttp.ClientSession,
                                                           reference_dir: Path) -> None:
    status, body = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200, body
    status, body = await call(http, agent, "POST", "/_sandbox/mss/read", {"auto_read": False})
    assert status == 200 and body["auto_read"] is False
    order_body = await cs9_order(http, agent, reference_dir)
    order_body["document"] = {"cda_base64": order_body["document"]["cda_base64"]}
    status, order = await call(http, agent, "POST", "/v1/orders", order_body)
    assert status == 201, order

    async def acknowledgement(destination: str) -> Any:
        for _ in range(300):
            _, detail = await call(http, agent, "GET", f"/v1/orders/{order['id']}")
            found = next(d for d in detail["deliveries"] if d["destination"] == destination)
            if found.get("acknowledgement") not in (None, "delayed"):
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(detail)

    await wait_sent(http, agent, order["id"])
    correspondent = await acknowledgement(f"mss:{CORRESPONDENT}")
    assert correspondent["acknowledgement"] == "delivered"
    status, body = await call(http, agent, "POST", "/_sandbox/mss/read", {"message_id": correspondent["message_id"]})
    assert status == 200 and body["reports"] == 1
    agent.services.mss.poll_soon()
    for _ in range(300):
        status, detail = await call(http, agent, "GET", f"/v1/orders/{order['id']}")
        states = {d["destination"]: d["acknowledgement"] for d in detail["deliveries"]}
        if states[f"mss:{CORRESPONDENT}"] == "read":
            break
        await asyncio.sleep(0.1)
    assert states == {f"mss:{CORRESPONDENT}": "read", f"mss:{CSE_MSS_ADDRESS}": "delivered"}


async def test_failed_dsn_fails_the_delivery_with_the_reason_in_french(agent: Any, http: aiohttp.ClientSession,
                                                                        reference_dir: Path) -> None:
    """The recipient's operator does not know the address (DSN failed, 5.1.1): the delivery leaves "sent"."""
    status, body = await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"})
    assert status == 200, body
    body = await cs9_order(http, agent, reference_dir)
    body["document"] = {"cda_base64": body["document"]["cda_base64"]}  # no CSE platform: one recipient
    body["destinations"] = {"dmp": False, "mss": [{"address": "inconnu.x@medecin.demo.mssante.fr"}]}
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order
    for _ in range(300):  # the acknowledgement reader wakes after the send
        status, order = await call(http, agent, "GET", f"/v1/orders/{order['id']}")
        unknown = [d for d in order["deliveries"] if d["destination"] == "mss:inconnu.x@medecin.demo.mssante.fr"]
        if unknown and unknown[0]["state"] == "failed":
            break
        await asyncio.sleep(0.1)
    assert unknown[0]["state"] == "failed", order
    assert unknown[0]["last_error"]["code"] == "mss_bounced"
    assert "n'existe pas" in unknown[0]["last_error"]["message"] and "5.1.1" in unknown[0]["last_error"]["message"]
    assert unknown[0]["acknowledgement"] == "error"

    # A retry cannot mend a bounce (same message, same address): 409 with the reason, nothing leaves again.
    status, problem = await call(http, agent, "POST", f"/v1/orders/{order['id']}/retry")
    assert status == 409 and problem["code"] == "mss_bounced", problem
    assert "créez un nouvel envoi" in problem["detail"]
    status, order = await call(http, agent, "GET", f"/v1/orders/{order['id']}")
    states = {d["destination"]: d["state"] for d in order["deliveries"]}
    assert states["mss:inconnu.x@medecin.demo.mssante.fr"] == "failed", states
    status, sandbox = await call(http, agent, "GET", "/_sandbox/mss/messages")
    assert [m["rcpt_tos"] for m in sandbox["items"]].count(["inconnu.x@medecin.demo.mssante.fr"]) == 1
