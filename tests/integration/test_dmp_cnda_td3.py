"""CNDA test book, TD3.1b and TD3.3c: the look-up by uniqueId in ObjectRef mode and the deletion as the DMP takes
it (an ITI-57 status change to Deleted), against the simulator over mutual TLS."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lxml import etree

from agent.clock import FrozenClock
from agent.dmp import ebrim
from agent.dmp.models import SearchCriteria
from agent.errors import PermanentRemoteError
from relais_sandbox import identities
from relais_sandbox.identities import PAT_TROIS
from tests.support.dmp import DR_DEMO, Sandbox, logged_envelope, running_sandbox

# Référentiel Patients 82: an active DMP "pour tests de MAJ des attributs (3.3)", no professional authorised.
ATTRIBUT = identities.TestIdentity(key="cnda-82", ins="235061058692768", oid="1.2.250.1.213.1.4.10",
                                   birth_name="ATTRIBUT", given_names=("MONIQUE",), sex="F", birth_date="1935-06-07",
                                   birth_place="")
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
N1_EXAMPLE = "DOC_NON_STRUCTURE_CDA-R2-N1.xml"


@pytest.fixture
async def sandbox(tmp_path: Path, reference_dir: Path) -> AsyncIterator[Sandbox]:
    if not (reference_dir / "cnda" / "dmp" / "Referentiel_Patients.csv").is_file():
        pytest.skip("le cahier de test CNDA n'est pas dans le kit de référence")
    async with running_sandbox(tmp_path, reference_dir) as running:
        yield running


def _document(sandbox: Sandbox, person: identities.TestIdentity, type_code: str, title: str) -> tuple[bytes, str]:
    """A document made for this test only, with the type code and title the case asks for."""
    cda, uid = sandbox.cda(person, N1_EXAMPLE)
    root = etree.fromstring(cda)
    code = root.find("{urn:hl7-org:v3}code")
    title_el = root.find("{urn:hl7-org:v3}title")
    assert code is not None and title_el is not None
    code.set("code", type_code)
    code.attrib.pop("displayName", None)
    title_el.text = title
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), uid


def _calls(sandbox: Sandbox) -> list[dict[str, str]]:
    assert sandbox.sim.service is not None
    return sandbox.sim.service.calls


def _status_change(call: dict[str, str]) -> etree._Element:
    env = logged_envelope(call)
    assocs = [a for a in env.iter(ebrim.rim("Association"))
              if a.get("associationType") == "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"]
    assert len(assocs) == 1
    return assocs[0]


async def test_cdt_3_3_540_unpublish_with_the_feeding_profile_only(sandbox: Sandbox) -> None:
    c = sandbox.client
    assert not (await c.td02(ATTRIBUT.ins, ATTRIBUT.oid)).authorized  # "en n'étant pas autorisé"
    cda, uid = _document(sandbox, ATTRIBUT, "11505-5", "document F")
    await c.submit(sandbox.request(cda, uid, person=ATTRIBUT))
    with pytest.raises(PermanentRemoteError):  # no consultation right: LeafClass searches are refused
        await c.search(ATTRIBUT.ins, ATTRIBUT.oid, SearchCriteria())

    before = len(_calls(sandbox))
    await c.delete_unique_id(ATTRIBUT.ins, ATTRIBUT.oid, uid)
    lookup, change = _calls(sandbox)[before:]
    # TD3.1b first: GetDocuments by uniqueId in ObjectRef mode (the entryUUID from the local uniqueId).
    assert (lookup["transaction"], lookup["stored_query"], lookup["return_type"]) == ("TD3.1", "GetDocuments",
                                                                                      "ObjectRef")
    # Then UpdateAvailabilityStatus: Approved -> Deleted, by ITI-57 (never ITI-62).
    assert change["transaction"] == "TD3.3" and change["action"] == "urn:ihe:iti:2010:UpdateDocumentSet"
    assoc = _status_change(change)
    assert ebrim.slot_value(assoc, "OriginalStatus") == "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
    assert ebrim.slot_value(assoc, "NewStatus") == DELETED
    # Résultat attendu: le SI DMP confirme la suppression du document.
    assert sandbox.sim.registry is not None
    assert uid not in {s.unique_id for s in sandbox.sim.registry.all()}


async def test_cdt_3_3_070_standard_to_deleted(sandbox: Sandbox) -> None:
    c = sandbox.client
    cda, uid = _document(sandbox, PAT_TROIS, "11506-3", "CR de suivi de soins")
    await c.submit(sandbox.request(cda, uid))
    assert uid in {e.unique_id for e in await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())}
    await c.delete_unique_id(PAT_TROIS.ins, PAT_TROIS.oid, uid, professional=DR_DEMO)
    assert ebrim.slot_value(_status_change(_calls(sandbox)[-1]), "NewStatus") == DELETED
    assert uid not in {e.unique_id for e in await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())}


async def test_get_documents_asks_for_at_most_20_ids(sandbox: Sandbox) -> None:
    uids = [f"1.2.250.1.999.{n}" for n in range(25)]
    before = len(_calls(sandbox))
    assert await sandbox.client.entry_uuids(PAT_TROIS.ins, PAT_TROIS.oid, uids) == []
    sent = _calls(sandbox)[before:]
    assert [c["return_type"] for c in sent] == ["ObjectRef", "ObjectRef"]
    counts = [base64.b64decode(c["request_base64"]).count(b"'1.2.250.1.999.") for c in sent]
    assert counts == [20, 5]


async def test_cdt_3_1_400_documents_since_the_last_connection(sandbox: Sandbox) -> None:
    c = sandbox.client
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=6)
    c.clock = FrozenClock(base)
    before_cda, before_uid = sandbox.cda()
    await c.submit(sandbox.request(before_cda, before_uid))
    c.clock = FrozenClock(base + dt.timedelta(hours=2))
    after_cda, after_uid = sandbox.cda()
    await c.submit(sandbox.request(after_cda, after_uid))
    # The last connection, in local time (Paris, summer): sent in UTC (EX_3.1-1012/1013).
    last = (base + dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=2)))
    start = len(_calls(sandbox))
    found = await c.documents_since(PAT_TROIS.ins, PAT_TROIS.oid, last.isoformat())
    assert [e.unique_id for e in found] == [after_uid]
    sent = _calls(sandbox)[start:]
    assert [s["stored_query"] for s in sent] == ["FindSubmissionSets", "GetSubmissionSetAndContents"]
    env = logged_envelope(sent[0])
    slots = {s.get("name"): [v.text for v in s.iter(ebrim.rim("Value"))] for s in env.iter(ebrim.rim("Slot"))}
    assert slots["$XDSSubmissionSetSubmissionTimeFrom"] == [(base + dt.timedelta(hours=1)).strftime("%Y%m%d%H%M%S")]
