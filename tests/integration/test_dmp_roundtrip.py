"""The DMP client against the DMP simulator over real mutual TLS: every transaction end to end.

What the client sends validates against the XDS.b schemas (the simulator validates every request and these
tests also validate the captured SOAP); the IHE DSG signature verifies through signxml's verifier; registry
errors come back as the error tree says.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from lxml import etree

from agent.clock import SystemClock
from agent.dmp import soap
from agent.dmp.factory import client_for_sandbox
from agent.dmp.models import SearchCriteria, Visibility
from agent.dmp.schemas import validate, xds_schema
from agent.errors import DuplicateUniqueId, NotFound, PermanentRemoteError, TransientRemoteError
from agent.xml.signing import DS, verify_xades_detached
from relais_sandbox.host import FaultMode
from relais_sandbox.identities import ORSONI, PAT_TROIS
from tests.support.dmp import DR_DEMO, DR_OTHER, Sandbox, running_sandbox


@pytest.fixture
async def sandbox(tmp_path: Path, reference_dir: Path) -> AsyncIterator[Sandbox]:
    async with running_sandbox(tmp_path, reference_dir) as running:
        yield running


def captured(sandbox: Sandbox) -> list[dict[str, Any]]:
    assert sandbox.sim.registry is not None
    return sandbox.sim.registry.submissions()


async def test_submission_round_trip_validates_and_carries_a_verifiable_dsg_signature(sandbox: Sandbox) -> None:
    cda, uid = sandbox.cda()
    req = sandbox.request(cda, uid)
    result = await sandbox.client.submit(req)

    found = await sandbox.client.find_by_unique_id(PAT_TROIS.ins, PAT_TROIS.oid, uid)
    assert [e.entry_uuid for e in found] == [result.document_entry_uuid]
    entry = found[0]
    assert (entry.type_code, entry.class_code, entry.format_code) == ("87273-9", "45",
                                                                      "urn:asip:ci-sis:vac-note:2021")
    assert entry.status == "approved" and entry.size == len(cda)
    assert entry.author_id == DR_DEMO.national_id

    # What went over the wire: schema-valid, and the DSG signature verifies through signxml's verifier.
    items = captured(sandbox)
    assert [i["submission_set_unique_id"] for i in items] == [req.submission_set_unique_id]
    assert [base64.b64decode(d["cda_base64"]) for d in items[0]["documents"]] == [cda]
    raw = base64.b64decode(items[0]["soap_base64"])
    message = soap.read_mtom(raw, _content_type_of(raw))
    env = etree.fromstring(message.root)
    body = env.find(f"{{{soap.SOAP12}}}Body")
    assert body is not None
    assert validate(xds_schema(sandbox.reference), body[0]) == []
    signatures = [etree.fromstring(data) for data in message.attachments.values() if b"IHEManifest" in data]
    assert len(signatures) == 1
    ca = x509.load_pem_x509_certificate(sandbox.ctx.pki.ca_path.read_bytes())
    verified = verify_xades_detached(signatures[0], {f"urn:oid:{uid}": cda,
                                                     f"urn:oid:{req.submission_set_unique_id}": None},
                                     [ca], entry_creation_now())
    assert verified.signed.tag == f"{{{DS}}}Manifest"


def _content_type_of(raw: bytes) -> str:
    boundary = raw.split(b"\r\n", 1)[0][2:].decode()
    return f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; start="<root.message@relais>"'


def entry_creation_now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


async def test_same_submission_set_again_is_a_duplicate_the_queue_can_treat_as_delivered(sandbox: Sandbox) -> None:
    cda, uid = sandbox.cda()
    req = sandbox.request(cda, uid)
    await sandbox.client.submit(req)
    with pytest.raises(DuplicateUniqueId) as info:
        await sandbox.client.submit(req)
    assert "XDSDuplicateUniqueIdInRegistry" in info.value.message
    assert len(captured(sandbox)) == 1


async def test_tampered_document_is_rejected_with_non_identical_hash(sandbox: Sandbox) -> None:
    from agent.dmp import submission

    cda, uid = sandbox.cda()
    original = submission.build_submission

    def tampered(*args: Any, **kwargs: Any) -> submission.BuiltSubmission:
        built = original(*args, **kwargs)
        for cid, data in built.attachments.items():
            if data == cda:
                built.attachments[cid] = data.replace(b"NOTE DE VACCINATION", b"NOTE DE VACCINATIOX")
        return built

    import agent.dmp.client as client_module

    client_module.build_submission = tampered  # type: ignore[assignment]
    try:
        with pytest.raises(PermanentRemoteError) as info:
            await sandbox.client.submit(sandbox.request(cda, uid))
    finally:
        client_module.build_submission = original
    assert "XDSNonIdenticalHash" in info.value.message
    assert captured(sandbox) == []


async def test_patient_mismatch_between_cda_and_request_is_refused_before_sending(sandbox: Sandbox) -> None:
    from agent.errors import InvalidInput

    cda, uid = sandbox.cda(PAT_TROIS)
    with pytest.raises(InvalidInput) as info:
        await sandbox.client.submit(replace(sandbox.request(cda, uid), ins=ORSONI.ins))
    assert [e.field for e in info.value.errors] == ["patient.ins"]


async def test_search_retrieve_mask_and_delete_change_what_a_later_search_returns(sandbox: Sandbox) -> None:
    c = sandbox.client
    cda, uid = sandbox.cda()
    result = await c.submit(sandbox.request(cda, uid))
    n1, n1_uid = sandbox.cda(example="DOC_NON_STRUCTURE_CDA-R2-N1.xml")
    await c.submit(sandbox.request(n1, n1_uid))

    everything = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())
    assert {e.unique_id for e in everything} == {uid, n1_uid}
    by_class = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria(class_codes=("45",)))
    assert [e.unique_id for e in by_class] == [uid]
    by_format = await c.search(PAT_TROIS.ins, PAT_TROIS.oid,
                               SearchCriteria(format_codes=("urn:ihe:iti:xds-sd:pdf:2008",)))
    assert [e.unique_id for e in by_format] == [n1_uid]

    entry = next(e for e in everything if e.unique_id == uid)
    doc = await c.retrieve(PAT_TROIS.ins, PAT_TROIS.oid, entry)
    assert doc.content == cda

    # TD3.3a: masked to professionals -> a new version (new entryUUID) that another doctor no longer sees.
    masked = await c.set_visibility(PAT_TROIS.ins, PAT_TROIS.oid, result.document_entry_uuid,
                                    Visibility(masked_to_ps=True))
    assert masked.entry_uuid != result.document_entry_uuid and masked.visibility.masked_to_ps
    others_view = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria(), professional=DR_OTHER)
    assert [e.unique_id for e in others_view] == [n1_uid]
    mine = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria(visibility="masked_to_ps"))
    assert [e.entry_uuid for e in mine] == [masked.entry_uuid]

    # TD3.3c: only the author may delete; afterwards the document is gone from searches.
    with pytest.raises(PermanentRemoteError) as info:
        await c.delete(PAT_TROIS.ins, PAT_TROIS.oid, masked.entry_uuid, professional=DR_OTHER)
    assert "auteur" in info.value.message
    await c.delete(PAT_TROIS.ins, PAT_TROIS.oid, masked.entry_uuid)
    after = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())
    assert [e.unique_id for e in after] == [n1_uid]
    with pytest.raises(NotFound):
        await c.get_entry(PAT_TROIS.ins, PAT_TROIS.oid, masked.entry_uuid)


async def test_archive_and_replacement(sandbox: Sandbox) -> None:
    c = sandbox.client
    cda, uid = sandbox.cda()
    first = await c.submit(sandbox.request(cda, uid))
    v2, v2_uid = sandbox.cda()
    second = await c.submit(sandbox.request(v2, v2_uid, replaces_entry_uuid=first.document_entry_uuid))
    live = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())
    assert [e.entry_uuid for e in live] == [second.document_entry_uuid]
    old = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria(statuses=("deprecated",)))
    assert [e.entry_uuid for e in old] == [first.document_entry_uuid]

    # Replacement and archiving look the document up in ObjectRef mode, by uniqueId or entryUUID.
    assert await c.look_up(PAT_TROIS.ins, PAT_TROIS.oid, v2_uid) == second.document_entry_uuid
    await c.set_status(PAT_TROIS.ins, PAT_TROIS.oid, second.document_entry_uuid, archived=True)
    assert await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria()) == []
    archived = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria(statuses=("archived",)))
    assert [(e.entry_uuid, e.status) for e in archived] == [(second.document_entry_uuid, "archived")]
    await c.set_status(PAT_TROIS.ins, PAT_TROIS.oid, second.document_entry_uuid, archived=False)
    live = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())
    assert [e.entry_uuid for e in live] == [second.document_entry_uuid]


async def test_td02_says_the_patient_has_a_dmp(sandbox: Sandbox) -> None:
    status = await sandbox.client.td02(PAT_TROIS.ins, PAT_TROIS.oid)
    assert status.exists and status.active and status.authorized


async def test_faults_map_to_transient_errors(sandbox: Sandbox) -> None:
    for mode in (FaultMode.ERROR500, FaultMode.DOWN, FaultMode.MALFORMED):
        sandbox.sim.faults.mode = mode
        with pytest.raises((TransientRemoteError, PermanentRemoteError)) as info:
            await sandbox.client.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())
        # An unreadable answer is no refusal: transient too (the request may have been processed).
        assert isinstance(info.value, TransientRemoteError), (mode, info.value)
    assert sandbox.client.reachable is True  # the last answer was garbage, but an answer
    sandbox.sim.faults.mode = FaultMode.DOWN
    changes: list[bool] = []
    sandbox.client.on_connectivity = changes.append
    with pytest.raises(TransientRemoteError):
        await sandbox.client.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())
    sandbox.sim.faults.mode = FaultMode.OK
    await sandbox.client.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())
    assert changes == [False, True] and sandbox.client.status()["reachable"] is True


async def test_a_client_without_a_sandbox_certificate_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    ssl_ctx = __import__("ssl").create_default_context(cafile=sandbox.endpoint["ca_file"])
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(sandbox.endpoint["url"] + "/registry", data=b"<x/>", ssl=ssl_ctx) as resp:
                await resp.read()


async def test_state_survives_a_restart(sandbox: Sandbox) -> None:
    cda, uid = sandbox.cda()
    await sandbox.client.submit(sandbox.request(cda, uid))
    await sandbox.sim.stop()
    endpoint = await sandbox.sim.start(sandbox.ctx)
    client = client_for_sandbox(endpoint, SystemClock(), lambda: DR_DEMO, total_timeout=5.0)
    try:
        found = await client.find_by_unique_id(PAT_TROIS.ins, PAT_TROIS.oid, uid)
        assert len(found) == 1 and len(captured(sandbox)) == 1
    finally:
        await client.close()


async def test_an_answer_that_never_comes_is_transient_and_the_document_can_be_reconciled(
        sandbox: Sandbox) -> None:
    """The ambiguous failure the queue must handle: the DMP stored the submission but the answer timed out."""
    impatient = client_for_sandbox(sandbox.endpoint, SystemClock(), lambda: DR_DEMO, total_timeout=1.5)
    cda, uid = sandbox.cda()
    sandbox.sim.faults.mode = FaultMode.TIMEOUT
    sandbox.sim.faults.timeout_seconds = 3.0
    try:
        with pytest.raises(TransientRemoteError) as info:
            await impatient.submit(sandbox.request(cda, uid))
        assert info.value.code == "dmp_timeout"
    finally:
        sandbox.sim.faults.mode = FaultMode.OK
        await impatient.close()
    found = await sandbox.client.find_by_unique_id(PAT_TROIS.ins, PAT_TROIS.oid, uid)
    assert [e.unique_id for e in found] == [uid]


async def test_a_patient_without_a_dmp(sandbox: Sandbox) -> None:
    from relais_sandbox.identities import PAT_TROIS_JULES

    status = await sandbox.client.td02(PAT_TROIS_JULES.ins, PAT_TROIS_JULES.oid)
    assert not status.exists and not status.authorized
    cda, uid = sandbox.cda(PAT_TROIS_JULES)
    with pytest.raises(PermanentRemoteError) as info:
        await sandbox.client.submit(sandbox.request(cda, uid, person=PAT_TROIS_JULES))
    assert info.value.extra["registry_errors"] == ["XDSUnknownPatientId"]


async def test_registry_refusals_of_malformed_submissions(sandbox: Sandbox) -> None:
    """What a registry answers to a client that got it wrong: each refusal keeps its XDS error code."""
    from agent.dmp import ebrim
    from agent.dmp.soap import ACTION_ITI41, raise_for_registry
    from agent.dmp.submission import build_submission

    c = sandbox.client

    async def send(body: etree._Element, attachments: dict[str, bytes], ins: str = PAT_TROIS.ins,
                   oid: str = PAT_TROIS.oid) -> list[str]:
        first, _ = await c._call(c.endpoints.repository, ACTION_ITI41, body, DR_DEMO, ins, oid, attachments)
        with pytest.raises(PermanentRemoteError) as info:
            raise_for_registry(first)
        return list(info.value.extra["registry_errors"])

    def built() -> Any:
        cda, uid = sandbox.cda()
        return build_submission(sandbox.request(cda, uid), sandbox.doctor, c.defaults, entry_creation_now(),
                                c.new_uuid)

    # The VIHF speaks for another patient than the metadata.
    b = built()
    assert await send(b.body, b.attachments, ORSONI.ins, ORSONI.oid) == ["XDSPatientIdDoesNotMatch"]
    # No IHE DSG signature in the submission set.
    b = built()
    rol = b.body.find(f"{{{ebrim.LCM}}}SubmitObjectsRequest/{ebrim.rim('RegistryObjectList')}")
    assert rol is not None
    for obj in list(rol):
        if b.signature_entry_uuid in (obj.get("id"), obj.get("targetObject"), obj.get("sourceObject")):
            rol.remove(obj)
    for doc in b.body.iterfind("{urn:ihe:iti:xds-b:2007}Document"):
        if doc.get("id") == b.signature_entry_uuid:
            b.body.remove(doc)
    assert await send(b.body, b.attachments) == ["XDSRegistryMetadataError"]
    # Not valid against the XDS.b schema.
    b = built()
    etree.SubElement(b.body, "{urn:ihe:iti:xds-b:2007}Unexpected")
    assert await send(b.body, b.attachments) == ["XDSRegistryMetadataError"]
    assert captured(sandbox) == []
