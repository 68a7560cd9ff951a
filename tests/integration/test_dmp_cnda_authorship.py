"""CNDA test book, a document written by one professional and sent by another (2.1-900, EX_2.1-1140), and the IHE DSG
signature entry, read back from what the simulator received (its call log, ``GET /_sandbox/dmp/calls``)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lxml import etree

from agent.dmp import ebrim, soap
from agent.dmp.vihf import SAML, read_assertion
from agent.errors import InvalidInput
from tests.support.dmp import DR_DEMO, DR_OTHER, Sandbox, logged_envelope, running_sandbox
from tests.support.documents import with_co_author, with_organisation

STRUCTURE = "1750803447"  # the sandbox client's Identifiant_Structure (agent/dmp/factory.py)


@pytest.fixture
async def sandbox(tmp_path: Path, reference_dir: Path) -> AsyncIterator[Sandbox]:
    async with running_sandbox(tmp_path, reference_dir) as running:
        yield running


def _iti41_calls(sandbox: Sandbox) -> list[dict[str, str]]:
    assert sandbox.sim.service is not None
    return [c for c in sandbox.sim.service.calls if c["transaction"] == "TD2.1"]


def _sent(call: dict[str, str]) -> tuple[dict[str, list[str]], etree._Element]:
    """The VIHF's attributes and the SubmitObjectsRequest of one ITI-41 as the simulator received it."""
    env = logged_envelope(call)
    assertion = env.find(f"{{{soap.SOAP12}}}Header/{{{soap.WSSE}}}Security/{{{SAML}}}Assertion")
    sor = next(env.iter(f"{{{ebrim.LCM}}}SubmitObjectsRequest"))
    assert assertion is not None
    return read_assertion(assertion), sor


def _people(obj: etree._Element, scheme: str) -> list[str]:
    return [ebrim.slot_value(c, "authorPerson").split("^")[0] for c in ebrim.classifications(obj, scheme)]


async def test_cdt_2_1_900_document_written_by_a_sent_by_b_in_indirect_mode(sandbox: Sandbox) -> None:
    cda, uid = sandbox.cda()  # written by A (DR_DEMO)
    cda = with_co_author(cda, DR_OTHER.national_id, DR_OTHER.family_name, DR_OTHER.given_name,
                         organisation_id=STRUCTURE)
    await sandbox.client.submit(sandbox.request(cda, uid, professional=DR_OTHER))  # sent by B
    [call] = _iti41_calls(sandbox)
    attrs, sor = _sent(call)
    # B, the authenticated user, is in the VIHF; the structure is the authorInstitution of an author.
    assert attrs["NameID"] == [DR_OTHER.national_id] and attrs["Authentification_Mode"] == ["INDIRECTE"]
    assert attrs["Identifiant_Structure"] == [STRUCTURE]
    entries = {eo.get("id"): eo for eo in sor.iter(ebrim.rim("ExtrinsicObject"))}
    document = next(eo for eo in entries.values() if ebrim.external_id(eo, ebrim.DE_UNIQUE_ID) == uid)
    # A and B, in distinct author blocks of the document entry (as in the CDA header).
    assert _people(document, ebrim.DE_AUTHOR) == [DR_DEMO.national_id, DR_OTHER.national_id]
    institutions = [ebrim.slot_value(c, "authorInstitution").rsplit("^", 1)[-1]
                    for c in ebrim.classifications(document, ebrim.DE_AUTHOR)]
    assert STRUCTURE in institutions
    # B authors the submission set (registryPackage) and signs it.
    package = next(sor.iter(ebrim.rim("RegistryPackage")))
    assert _people(package, ebrim.SS_AUTHOR) == [DR_OTHER.national_id]
    signature = next(eo for eo in entries.values() if eo is not document)
    assert _people(signature, ebrim.DE_AUTHOR) == [DR_OTHER.national_id]
    # Résultat attendu: Success (the simulated DMP stored it).
    assert sandbox.sim.service is not None
    assert sandbox.sim.service.registry.unique_id_known(uid)


async def test_cdt_2_1_900_sender_absent_from_the_cda_authors_is_refused_before_sending(sandbox: Sandbox) -> None:
    cda, uid = sandbox.cda()  # A only: B is not among the authors
    with pytest.raises(InvalidInput) as info:
        await sandbox.client.submit(sandbox.request(cda, uid, professional=DR_OTHER))
    assert [e.field for e in info.value.errors] == ["sender.id"]
    assert info.value.code == "dmp_author_mismatch"
    assert _iti41_calls(sandbox) == []  # nothing was sent


async def test_ex_2_1_1140_structure_not_an_authors_organisation_is_refused(sandbox: Sandbox) -> None:
    cda, uid = sandbox.cda()
    cda = with_organisation(with_co_author(cda, DR_OTHER.national_id, DR_OTHER.family_name, DR_OTHER.given_name),
                            "1999999999")
    with pytest.raises(InvalidInput) as info:
        await sandbox.client.submit(sandbox.request(cda, uid, professional=DR_OTHER))
    assert [e.field for e in info.value.errors] == ["author.organisation.id"]
    assert STRUCTURE in info.value.errors[0].message
    assert _iti41_calls(sandbox) == []


async def test_cdt_2_1_010_dsg_signature_entry_as_sent(sandbox: Sandbox) -> None:
    """The IHE DSG entry as it left (sources in agent/dmp/submission.py): codes, one ``signs`` association from the
    signature to the submission set, and a signature the simulated DMP verified."""
    cda, uid = sandbox.cda()
    result = await sandbox.client.submit(sandbox.request(cda, uid))
    [call] = _iti41_calls(sandbox)
    _, sor = _sent(call)
    signature = next(eo for eo in sor.iter(ebrim.rim("ExtrinsicObject"))
                     if eo.get("id") == result.signature_entry_uuid)
    assert ebrim.coded(signature, ebrim.DE_FORMAT) == ebrim.Coded("http://www.w3.org/2000/09/xmldsig#", "URN",
                                                                  "Default Signature Style")
    assert ebrim.coded(signature, ebrim.DE_CLASS).code == "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1"  # type: ignore[union-attr]
    assert ebrim.coded(signature, ebrim.DE_TYPE).code == "E1762"  # type: ignore[union-attr]
    assert ebrim.coded(signature, ebrim.DE_EVENT).code == "1.2.840.10065.1.12.1.14"  # type: ignore[union-attr]
    signs = [(a.get("sourceObject"), a.get("targetObject")) for a in sor.iter(ebrim.rim("Association"))
             if a.get("associationType") == ebrim.SIGNS]
    assert signs == [(result.signature_entry_uuid, result.submission_set_entry_uuid)]


async def test_ex_2_1_1140_in_direct_mode_by_cps_the_sender_need_only_be_an_author(sandbox: Sandbox) -> None:
    """EX_2.1-1140: the structure rule is the indirect mode's; with the sender's own card (direct mode) the VIHF's
    NameID must be one of the authors, whatever their organisations (a CPE is not told apart yet)."""
    sandbox.client.vihf = dataclasses.replace(sandbox.client.vihf, mode="DIRECTE")
    cda, uid = sandbox.cda()
    cda = with_organisation(with_co_author(cda, DR_OTHER.national_id, DR_OTHER.family_name, DR_OTHER.given_name),
                            "1999999999")
    await sandbox.client.submit(sandbox.request(cda, uid, professional=DR_OTHER))
    [call] = _iti41_calls(sandbox)
    attrs, _ = _sent(call)
    assert attrs["Authentification_Mode"] == ["DIRECTE"] and attrs["NameID"] == [DR_OTHER.national_id]
