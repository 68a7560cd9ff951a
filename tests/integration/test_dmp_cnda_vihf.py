"""CNDA test book, authentication cases (0.1-*) and bris de glace (3.1-150): what the VIHF says to the DMP, read
back from the simulator's call log, and what the simulated DMP lets through because of it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from agent.dmp import soap
from agent.dmp.models import Access, Professional, SearchCriteria
from agent.dmp.vihf import SAML, read_assertion
from agent.errors import PermanentRemoteError
from relais_sandbox.identities import PAT_TROIS
from tests.support.dmp import DR_DEMO, Sandbox, logged_envelope, running_sandbox

PURPOSE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
CONFIDENTIALITY = "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code"


@pytest.fixture
async def sandbox(tmp_path: Path, reference_dir: Path) -> AsyncIterator[Sandbox]:
    async with running_sandbox(tmp_path, reference_dir) as running:
        yield running


def _vihf(sandbox: Sandbox) -> etree._Element:
    assert sandbox.sim.service is not None
    env = logged_envelope(sandbox.sim.service.calls[-1])
    assertion = env.find(f"{{{soap.SOAP12}}}Header/{{{soap.WSSE}}}Security/{{{SAML}}}Assertion")
    assert assertion is not None
    return assertion


def _not_authorised(sandbox: Sandbox) -> None:
    assert sandbox.sim.service is not None
    sandbox.sim.service.patients.set_authorization(PAT_TROIS.ins, DR_DEMO.national_id, "NON_EXISTE")


async def test_cdt_3_1_150_search_in_bris_de_glace(sandbox: Sandbox) -> None:
    c = sandbox.client
    cda, uid = sandbox.cda()
    await c.submit(sandbox.request(cda, uid))
    _not_authorised(sandbox)  # "sans être autorisé à accéder au DMP du patient"
    with pytest.raises(PermanentRemoteError):
        await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())
    assert read_assertion(_vihf(sandbox))[PURPOSE] == ["normal"]
    found = await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria(), access=Access(mode="bris_de_glace"))
    # Résultat attendu: the search succeeds and the metadata come back; the VIHF carries the mode.
    assert [e.unique_id for e in found] == [uid] and found[0].type_code
    assert read_assertion(_vihf(sandbox))[PURPOSE] == [c.vihf.purpose_bris_de_glace]


async def test_cdt_0_1_300_secret_connection(sandbox: Sandbox) -> None:
    c = sandbox.client
    cda, uid = sandbox.cda()
    await c.submit(sandbox.request(cda, uid, access=Access(secret=True)))
    attrs = read_assertion(_vihf(sandbox))
    # The VIHF carries the professional, the structure and the connexion secrète.
    assert attrs[CONFIDENTIALITY] == ["INVISIBLE_REPRESENTANTS_LEGAUX"]
    assert attrs["NameID"] == [DR_DEMO.national_id] and attrs["Identifiant_Structure"]
    confidentiality = _vihf(sandbox).find(f".//{{{SAML}}}Attribute[@Name='{CONFIDENTIALITY}']//*[@code]")
    assert confidentiality is not None and confidentiality.get("codeSystem") == "1.2.250.1.213.1.1.4.13"


async def test_cdt_0_1_340_bris_de_glace_and_secret_connection(sandbox: Sandbox) -> None:
    c = sandbox.client
    _not_authorised(sandbox)
    await c.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria(), access=Access(mode="bris_de_glace", secret=True))
    attrs = read_assertion(_vihf(sandbox))
    assert attrs[PURPOSE] == [c.vihf.purpose_bris_de_glace]
    assert attrs[CONFIDENTIALITY] == ["INVISIBLE_REPRESENTANTS_LEGAUX"]


async def test_cdt_0_1_110_direct_authentication_by_cps(sandbox: Sandbox) -> None:
    c = sandbox.client
    c.vihf = dataclasses.replace(c.vihf, mode="DIRECTE")
    cda, uid = sandbox.cda()
    await c.submit(sandbox.request(cda, uid))
    assertion = _vihf(sandbox)
    attrs = read_assertion(assertion)
    assert attrs["Authentification_Mode"] == ["DIRECTE"]
    assert attrs["NameID"] == [DR_DEMO.national_id] and attrs["Identifiant_Structure"]
    # Signed by the professional's card, not by the structure's certificate.
    assert c.document_signer is not None
    card = x509.load_der_x509_certificate(c.document_signer().certificate_der)
    assert assertion.findtext(f"{{{SAML}}}Issuer") == card.subject.rfc4514_string()
    structure = x509.load_der_x509_certificate(c.structure_signer.certificate_der)
    assert card.subject != structure.subject


async def test_vihf_version_is_configuration(sandbox: Sandbox) -> None:
    c = sandbox.client
    c.vihf = dataclasses.replace(c.vihf, version="3.0")
    await c.td02(PAT_TROIS.ins, PAT_TROIS.oid)
    assert read_assertion(_vihf(sandbox))["VIHF_Version"] == ["3.0"]


async def test_cdt_0_1_140_direct_authentication_of_a_pharmacist_carries_the_second_role(sandbox: Sandbox) -> None:
    """The ANS VIHF table: a pharmacist's second role is their CNOP sub-section in TRE_G05, whose OID is
    configuration (no source at hand gives it); the simulator answers the TD0.2 sent with both roles."""
    c = sandbox.client
    c.vihf = dataclasses.replace(c.vihf, mode="DIRECTE", pharmacist_role_scheme="9.9.9.5")
    pharmacist = Professional(rpps="10001234568", family_name="OFFICINE", given_name="Paul", profession="21",
                              specialty="G05_A")
    status = await c.td02(PAT_TROIS.ins, PAT_TROIS.oid, pharmacist)
    assert status.ack_code == "AA"
    roles = _vihf(sandbox).xpath("//*[local-name()='Attribute'][@Name=$n]//*[@code]",
                                 n="urn:oasis:names:tc:xacml:2.0:subject:role")
    assert [(r.get("code"), r.get("codeSystem")) for r in roles] == [("21", "1.2.250.1.71.1.2.7"),
                                                                     ("G05_A", "9.9.9.5")]
    assert read_assertion(_vihf(sandbox))["NameID"] == [pharmacist.national_id]
