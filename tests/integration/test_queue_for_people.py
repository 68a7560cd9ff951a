"""The queue as the doctor reads it: each order keeps its title, the patient's name and birth date, the author
and the visibility (sealed at rest), and a failed send can be withdrawn ("Retirer") with a doctor-level
explanation saying whether trying again can help."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.clock import FrozenClock
from agent.domain.failures import explain
from agent.domain.orders import DeliveryState
from agent.errors import Conflict
from tests.support.queue import Harness, MemoryDmp, ins_value, order_body

PATIENT_CDA = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <id root="2.25.{uid}"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Note de consultation"/>
  <title>Compte rendu de consultation du 7 décembre</title>
  <effectiveTime value="20261207101500+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="{ins}"/>
    <patient><name><family qualifier="BR">ZYGOMARCHE</family><given>Éloïse</given></name>
    <birthTime value="19790315"/></patient></patientRole></recordTarget>
  <author><time value="20261207101500+0100"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="810003456789"/>
    <assignedPerson><name><given>Charles</given><family>MULLER</family></name></assignedPerson>
  </assignedAuthor></author>
  <component><nonXMLBody><text>x</text></nonXMLBody></component>
</ClinicalDocument>"""


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "relais.db", FrozenClock(), MemoryDmp())
    await h.start()
    yield h
    await h.stop()


def named_order(uid: int, **kwargs: object) -> dict:
    ins = ins_value()
    body = order_body(ins=ins, cda=PATIENT_CDA.format(uid=uid, ins=ins).encode(), **kwargs)  # type: ignore[arg-type]
    body["visibility"] = {"invisible_to_patient": True}
    return body


async def test_each_order_keeps_what_the_doctor_reads_sealed_at_rest(harness: Harness, tmp_path: Path) -> None:
    order, _ = await harness.create(named_order(1, delay=900), "lgc")
    shown = (await harness.service.readable([order]))[order.id]
    assert shown == {"title": "Compte rendu de consultation du 7 décembre", "patient_name": "ZYGOMARCHE Éloïse",
                     "patient_birth_date": "1979-03-15", "author_name": "Charles MULLER",
                     "visibility": {"invisible_to_patient": True}}
    await harness.restart()  # kept across restarts
    assert (await harness.service.readable([order]))[order.id]["patient_name"] == "ZYGOMARCHE Éloïse"
    await harness.stop()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("relais.db"))
    for clear in (b"ZYGOMARCHE", "Éloïse".encode(), base64.b64encode(b"ZYGOMARCHE")[:8]):
        assert clear not in raw  # the name is sealed like the document (invariant 5)
    await harness.start()
    # Sent, then its retention over: the name and the title go with the document's content.
    await harness.service.send_now(order.id)
    await harness.run()
    assert await harness.state(order.id) is DeliveryState.SENT
    harness.clock.advance((harness.settings.retention_days + 1) * 86400)
    assert await harness.executor.erase_expired() == 1
    assert await harness.service.readable([order]) == {}


async def test_a_failed_send_is_withdrawn_never_sent_and_traced(harness: Harness) -> None:
    harness.dmp.mode = "refuse"
    order, _ = await harness.create(named_order(2, delay=0), "lgc")
    await harness.run()
    assert await harness.state(order.id) is DeliveryState.FAILED
    with pytest.raises(Conflict) as caught:
        await harness.service.dismiss((await harness.create(named_order(3, delay=900), "lgc"))[0].id)
    assert caught.value.code == "not_failed"  # only a failed send can be withdrawn
    dismissed = await harness.service.dismiss(order.id, "tableau de bord")
    assert dismissed.state is DeliveryState.CANCELLED
    assert [e.action for e in harness.traces.events if e.details.get("order_id") == order.id][-1] == \
        "order.dismissed"
    harness.dmp.mode = "ok"
    harness.clock.advance(3600)
    for _ in range(3):
        await harness.run()
    assert order.document_unique_id not in harness.dmp.submissions
    with pytest.raises(Conflict):
        await harness.service.retry(order.id)  # withdrawn for good


def test_each_error_class_says_whether_retrying_can_help() -> None:
    assert explain("dmp_registry_error").retry_helps is False  # the DMP refused the document as it is
    assert "corrigez" in explain("dmp_registry_error").text
    assert explain("mss_ins_not_qualified").kind == "identity" and not explain("mss_ins_not_qualified").retry_helps
    assert explain("content_destroyed").retry_helps is False
    for code in ("dmp_unreachable", "dmp_timeout", "dmp_busy", "remote_timeout", "mss_temporary"):
        assert explain(code).retry_helps and explain(code).kind == "unreachable"
    assert explain("dmp_tls_error").kind == "configuration"
    assert explain("something_new").retry_helps  # unknown: the doctor may still try
