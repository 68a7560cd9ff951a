"""CNDA test book, TD0.2 (test d'existence) and TD0.3 (authorisation): the client against the simulator over mutual
TLS, the simulator playing the DMP's HL7v3 shapes and the test book's "Référentiel Patients".

Each test is named after the book's case and checks what its "résultat attendu" says; the request the DMP
received is read back from the simulator's call log.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lxml import etree

from agent.dmp import soap
from agent.dmp.gateway import DmpDelivery
from agent.dmp.hl7v3 import HL7
from agent.domain.delivery import DeliveryJob, Lookup
from agent.errors import InvalidInput, PermanentRemoteError
from relais_sandbox.identities import PAT_TROIS
from tests.support.dmp import DR_DEMO, DR_OTHER, Sandbox, logged_envelope, running_sandbox

OID_TEST = "1.2.250.1.213.1.4.10"
CONTESTE = "153078987658513"  # Référentiel Patients 1: "non créé", "pour test TD0.2"
MAXIMOP = "202096615708958"  # 90: "fermé", "DMP fermé motif : Je ne veux plus de DMP"
ATTRIBUT = "235061058692768"  # 82: DMP "OK" (active), no professional authorised
PROVISOIRE = "109076322088835"  # 103: a NIA


@pytest.fixture
async def sandbox(tmp_path: Path, reference_dir: Path) -> AsyncIterator[Sandbox]:
    if not (reference_dir / "cnda" / "dmp" / "Referentiel_Patients.csv").is_file():
        pytest.skip("le cahier de test CNDA n'est pas dans le kit de référence")
    async with running_sandbox(tmp_path, reference_dir) as running:
        yield running


def _last_call(sandbox: Sandbox) -> tuple[dict[str, str], etree._Element]:
    assert sandbox.sim.service is not None
    call = sandbox.sim.service.calls[-1]
    return call, logged_envelope(call)


def _authorize(sandbox: Sandbox, state: str, treating: bool = False) -> None:
    assert sandbox.sim.service is not None
    sandbox.sim.service.patients.set_authorization(PAT_TROIS.ins, DR_DEMO.national_id, state, treating)


async def test_cdt_0_2_010_no_dmp(sandbox: Sandbox) -> None:
    status = await sandbox.client.td02(CONTESTE, OID_TEST)
    # Résultat attendu: accusé de réception AA, code de réponse NF.
    assert (status.ack_code, status.query_response) == ("AA", "NF")
    assert not status.exists and not status.authorized
    call, env = _last_call(sandbox)
    assert call["transaction"] == "TD0.2" and call["interaction"] == "PRPA_IN201307UV02"
    assert env.findtext(f"{{{soap.SOAP12}}}Header/{{{soap.WSA}}}Action") == "urn:hl7-org:v3:PRPA_IN201307UV02"
    assert (env.findtext(f"{{{soap.SOAP12}}}Header/{{{soap.WSA}}}To") or "").endswith("/patients")
    ns = {"h": HL7}
    body = env.find(f"{{{soap.SOAP12}}}Body/h:PRPA_IN201307UV02", ns)
    assert body is not None
    reason = body.find("h:controlActProcess/h:reasonCode", ns)
    assert reason is not None and reason.get("code") == "TEST_EXST"
    assert reason.get("codeSystem") == "1.2.250.1.213.1.1.4.11"
    value = body.find("h:controlActProcess/h:queryByParameter/h:parameterList/h:patientIdentifier/h:value", ns)
    assert value is not None and (value.get("root"), value.get("extension")) == (OID_TEST, CONTESTE)


async def test_cdt_0_2_020_closed_dmp(sandbox: Sandbox) -> None:
    status = await sandbox.client.td02(MAXIMOP, OID_TEST)
    # Résultat attendu: statut fermé, date et motif de fermeture.
    assert status.exists and not status.active and not status.authorized
    assert status.closed_reason == "Je ne veux plus de DMP"
    assert status.closed_on and len(status.closed_on) == 10
    # EX_0.2-1020: the identity traits of patientPerson are not passed on by default.
    assert set(status.as_dict()) == {"exists", "active", "authorized", "blocked", "attached_to_mes", "closed_reason",
                                     "treating_physician", "authorization", "closed_on"}


async def test_cdt_0_2_030_active_dmp_user_not_authorised(sandbox: Sandbox) -> None:
    status = await sandbox.client.td02(ATTRIBUT, OID_TEST)
    assert status.exists and status.active
    assert status.authorization == "none" and not status.authorized


async def test_cdt_0_2_040_authorised_not_treating_physician(sandbox: Sandbox) -> None:
    _authorize(sandbox, "VALIDE")
    status = await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid)
    assert status.active and status.authorization == "valid" and status.authorized
    assert not status.treating_physician


async def test_cdt_0_2_050_authorised_treating_physician(sandbox: Sandbox) -> None:
    _authorize(sandbox, "VALIDE", treating=True)
    status = await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid)
    assert status.active and status.authorized and status.treating_physician
    other = await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid, professional=DR_OTHER)
    assert not other.treating_physician  # the authorisation is per professional


async def test_cdt_0_2_060_authorisation_expired(sandbox: Sandbox) -> None:
    _authorize(sandbox, "EXPIREE")
    status = await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid)
    assert status.active and status.authorization == "expired" and not status.authorized


async def test_cdt_0_2_070_professional_blocked(sandbox: Sandbox) -> None:
    _authorize(sandbox, "INTERDITE")
    status = await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid)
    assert status.active and status.blocked and not status.authorized
    # A blocked professional cannot authorise himself (TD0.3 refused, with the DMP's code).
    with pytest.raises(PermanentRemoteError) as info:
        await sandbox.client.td03(PAT_TROIS.ins, PAT_TROIS.oid, add=True)
    assert info.value.extra["dmp_code"]


async def test_cdt_0_2_080_nia_has_no_dmp_access(sandbox: Sandbox) -> None:
    assert sandbox.sim.service is not None
    with pytest.raises(InvalidInput) as info:
        await sandbox.client.td02(PROVISOIRE, "1.2.250.1.213.1.4.9")
    assert info.value.errors[0].field == "patient.oid"
    assert sandbox.sim.service.calls == []  # nothing reached the DMP


async def test_cdt_0_3_010_add_authorisation(sandbox: Sandbox) -> None:
    assert not (await sandbox.client.td02(ATTRIBUT, OID_TEST)).authorized
    # Résultat attendu: le SI-DMP confirme l'ajout de l'autorisation (DMPOk).
    assert await sandbox.client.td03(ATTRIBUT, OID_TEST, add=True) == "DMPOk"
    call, _ = _last_call(sandbox)
    assert call["transaction"] == "TD0.3"
    assert (await sandbox.client.td02(ATTRIBUT, OID_TEST)).authorized


async def test_cdt_0_3_080_remove_own_authorisation(sandbox: Sandbox) -> None:
    assert await sandbox.client.td03(ATTRIBUT, OID_TEST, add=True) == "DMPOk"
    assert await sandbox.client.td03(ATTRIBUT, OID_TEST, add=False) == "DMPOk"
    status = await sandbox.client.td02(ATTRIBUT, OID_TEST)
    assert status.active and not status.authorized and status.authorization == "none"


def _job(sandbox: Sandbox, ins: str, oid: str, cda: bytes, uid: str) -> DeliveryJob:
    lookup = Lookup(ins, oid, uid, f"2.25.{uuid.uuid4().int}", "order-1", "dmp")
    return DeliveryJob("order-1", "dmp", DR_DEMO.rpps, lookup, cda, {}, {})


async def test_memento_test_existence_before_every_feed(sandbox: Sandbox) -> None:
    assert sandbox.sim.service is not None
    gateway = DmpDelivery(sandbox.client, lambda: sandbox.doctor)
    cda, uid = sandbox.cda()
    receipt = await gateway.deliver(_job(sandbox, PAT_TROIS.ins, PAT_TROIS.oid, cda, uid))
    assert [c["transaction"] for c in sandbox.sim.service.calls] == ["TD0.2", "TD2.1"]
    # The reconciliation look-up is a GetDocuments in ObjectRef mode, which needs no consultation right.
    _authorize(sandbox, "NON_EXISTE")
    found = await gateway.find(Lookup(PAT_TROIS.ins, PAT_TROIS.oid, uid, ""))
    assert found is not None and found.entry_uuid == receipt.entry_uuid
    assert sandbox.sim.service.calls[-1]["return_type"] == "ObjectRef"


async def test_memento_never_feeds_a_patient_without_dmp(sandbox: Sandbox) -> None:
    assert sandbox.sim.service is not None
    gateway = DmpDelivery(sandbox.client, lambda: sandbox.doctor)
    person = dataclasses.replace(PAT_TROIS, ins=MAXIMOP, oid=OID_TEST)
    cda, uid = sandbox.cda(person)
    with pytest.raises(PermanentRemoteError) as info:
        await gateway.deliver(_job(sandbox, MAXIMOP, OID_TEST, cda, uid))
    assert "fermé" in info.value.message
    assert [c["transaction"] for c in sandbox.sim.service.calls] == ["TD0.2"]
