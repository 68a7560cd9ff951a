"""The INSi client against the simulator over real TLS, playing the CNDA's INSi cases that need no card reader.

Cases with the CNDA's test identities read them from the reference kit (``reference_dir``); the journal the
simulator keeps (``GET /_sandbox/insi/calls``) holds the raw requests the checks read.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from lxml import etree

from agent.clock import FrozenClock
from agent.domain.ins import Ins
from agent.domain.traits import IdentityTraits, parse_traits
from agent.errors import PermanentRemoteError, TransientRemoteError
from agent.ins import search as insi_search
from agent.ins import soap
from agent.ins.client import Caller, InsiClient, InsiSettings
from agent.softkey import SoftwareSigner
from relais_sandbox import cnda
from relais_sandbox.host import FaultMode, SandboxContext
from relais_sandbox.identities import PAT_TROIS, PAT_TROIS_CAMILLE, PAT_TROIS_JULES
from relais_sandbox.insi import Injection, InsiSimulator
from relais_sandbox.pki import SandboxPki

PAT = IdentityTraits("PAT-TROIS", ("DOMINIQUE",), "F", "1979-03-28")
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
START = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


@dataclass
class Sandbox:
    ctx: SandboxContext
    sim: InsiSimulator
    endpoint: dict[str, Any]
    signer: SoftwareSigner
    clock: FrozenClock

    def settings(self, **changes: Any) -> InsiSettings:
        base = InsiSettings(url=self.endpoint["url"], cpx_url=self.endpoint["cpx_url"],
                            ca_file=self.endpoint["ca_file"], client_cert=self.endpoint["client_cert"],
                            client_key=self.endpoint["client_key"], allow_test_oids=True, timeout=5.0,
                            billing_id="123456789", amo_specialty="01", retry_delay=0,
                            cps_name_qualifier="1.2.250.1.71.4.2.1", structure_name_qualifier="1.2.250.1.71.4.2.2")
        return replace(base, **changes)

    def client(self, **changes: Any) -> InsiClient:
        return InsiClient(self.settings(**changes), self.clock)

    def caller(self, settings: InsiSettings | None = None) -> Caller:
        return insi_search.cps_caller(settings or self.settings(), self.signer, "810003456789", "10")


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    clock = FrozenClock(START)
    ctx = SandboxContext(tmp_path / "sandbox", SandboxPki(tmp_path / "sandbox"))
    sim = InsiSimulator(clock=clock)
    endpoint = await sim.start(ctx)
    doctor = x509.NameAttribute(x509.oid.NameOID.TITLE, "10")
    creds = ctx.pki.issue("doctor", common_name="Dr Test", client=True, extra_subject=[doctor])
    yield Sandbox(ctx, sim, endpoint, SoftwareSigner.from_files(creds.cert_path, creds.key_path), clock)
    await sim.stop()


def sent(call: dict[str, Any]) -> etree._Element:
    return etree.fromstring(call["request"].encode())


def assertions(call: dict[str, Any]) -> list[etree._Element]:
    return list(sent(call).iter(f"{{{SAML}}}Assertion"))


def text(node: etree._Element, local: str) -> str:
    found = node.xpath(f"string(.//*[local-name()='{local}'])")
    return str(found)


async def traits_search(sandbox: Sandbox, traits: IdentityTraits, **changes: Any) -> insi_search.SearchOutcome:
    client = sandbox.client(**changes)
    try:
        return await insi_search.search_traits(client, traits, sandbox.caller(client.settings))
    finally:
        await client.close()


async def vitale_search(sandbox: Sandbox, query: soap.VitaleQuery) -> soap.InsiAnswer:
    client = sandbox.client()
    try:
        return await client.search_vitale(query, sandbox.caller())
    finally:
        await client.close()


def cnda_card_01(reference_dir: Path) -> tuple[soap.VitaleQuery, dict[str, Any]]:
    test = json.loads((reference_dir / "cnda/insi/test1_01.json").read_text(encoding="utf-8"))
    date = test["dateNaissance"]
    query = soap.VitaleQuery(insured_nir=test["nirOuvrantDroit"], birth_name="",
                             birth_date=f"{date[4:8]}-{date[2:4]}-{date[0:2]}",
                             birth_rank=int(test["rangNaissance"]), card_serial=test["numSerieCarte"])
    return query, test


async def test_insi_1_01_search_by_carte_vitale_on_card_insi_01(sandbox: Sandbox, reference_dir: Path) -> None:
    query, test = cnda_card_01(reference_dir)
    answer = await vitale_search(sandbox, query)
    assert answer.result == "found" and answer.ins is not None and answer.ins.value == "277076322082910"
    assert answer.traits is not None and answer.traits.birth_name == "NESSI"
    (call,) = sandbox.sim.calls
    assert call["action"] == soap.ACTION_VITALE and call["code"] == "00" and call["channel"] == "cpx"
    envelope = sent(call)
    # The professional's assertion AND a carte Vitale assertion naming the card by its serial number.
    names = {str(a.xpath("string(saml:Subject/saml:NameID)", namespaces={"saml": SAML})) for a in assertions(call)}
    assert names == {"810003456789", test["numSerieCarte"]}
    # ContexteBAM/COUVERTURE: the insured person, and the beneficiary's birth date and rank.
    cover = envelope.xpath("//*[local-name()='COUVERTURE']")[0]
    assert text(cover, "Num") == test["nirOuvrantDroit"][:13]
    assert (text(cover, "DateNai"), text(cover, "Rang")) == (test["dateNaissance"], str(test["rangNaissance"]))


async def test_insi_1_02_the_vitale_assertion_is_made_when_sending_not_when_selecting(
        sandbox: Sandbox, reference_dir: Path) -> None:
    query, _ = cnda_card_01(reference_dir)  # the selection
    sandbox.clock.advance(20 * 60)  # the CNDA waits 20 minutes before sending
    answer = await vitale_search(sandbox, query)
    assert answer.result == "found"
    (call,) = sandbox.sim.calls
    issued = {a.get("IssueInstant") for a in assertions(call)}
    assert issued == {"2026-12-07T09:20:00.000Z"}
    # An assertion made at selection time and sent 20 minutes later is refused by the service.
    sandbox.clock.advance(20 * 60)
    replay = await _post_raw(sandbox, call["request"].encode(), channel="cpx_url")
    with pytest.raises(PermanentRemoteError) as refused:
        soap.parse_answer(replay)
    assert "validité" in refused.value.message or "périmée" in refused.value.message


async def test_insi_2_02_professional_assertion_as_insi_reads_it(sandbox: Sandbox) -> None:
    outcome = await traits_search(sandbox, PAT)
    assert outcome.answer.result == "found"
    (assertion,) = assertions(sandbox.sim.calls[0])
    attributes = {str(a.get("Name")): text(a, "AttributeValue") for a in assertion.iter(f"{{{SAML}}}Attribute")}
    assert attributes == {"identifiantFacturation": "123456789", "codeSpecialiteAMO": "01", "secteurActivite": "SA07"}
    issuer = assertion.find(f"{{{SAML}}}Issuer")
    assert issuer is not None and issuer.get("Format", "").endswith("X509SubjectName") and "CN=Dr Test" in issuer.text


async def test_insi_2_02_bis_structure_certificate_over_mutual_tls(sandbox: Sandbox) -> None:
    structure = sandbox.ctx.pki.issue("structure", common_name="Cabinet de test", client=True)
    signer = SoftwareSigner.from_files(structure.cert_path, structure.key_path)
    settings = sandbox.settings(client_cert=str(structure.cert_path), client_key=str(structure.key_path))
    client = InsiClient(settings, sandbox.clock)
    try:
        caller = insi_search.structure_caller(settings, signer, "10B0152872")
        answer = await client.search_traits(PAT, caller)
    finally:
        await client.close()
    assert answer.result == "found"
    assert sandbox.sim.calls[0]["channel"] == "mtls" and sandbox.sim.calls[0]["emitter"] == "10B0152872"


async def test_insi_2_02_bis_without_the_workstation_certificate_no_handshake(sandbox: Sandbox) -> None:
    settings = sandbox.settings(client_cert="", client_key="")
    client = InsiClient(settings, sandbox.clock)
    try:
        with pytest.raises(TransientRemoteError):
            await client.search_traits(PAT, insi_search.structure_caller(settings, sandbox.signer, "10B0152872"))
    finally:
        await client.close()
    assert sandbox.sim.calls == []


async def test_insi_2_03_traits_with_apostrophes_and_hyphens_are_sent_as_insi_writes_them(
        sandbox: Sandbox, reference_dir: Path) -> None:
    test = json.loads((reference_dir / "cnda/insi/test2_03_cas1.json").read_text(encoding="utf-8"))
    typed, problems = parse_traits({"birth_name": test["nomNaissance"], "given_names": test["prenoms"],
                                    "sex": test["sexe"], "birth_date": test["dateNaissance"]}, START.date())
    assert problems == [] and typed is not None
    outcome = await traits_search(sandbox, typed)
    first = sent(sandbox.sim.calls[0])
    assert (text(first, "NomNaissance"), text(first, "Prenom")) == ("D'ARTAGNAN DE L'HERAULT", "PIERRE-ALAIN")
    # The test platform knows this name with another birth date: "not found", handled, with a French message.
    assert outcome.answer.result == "not_found" and outcome.message


async def test_insi_3_01_verification_of_a_known_ins(sandbox: Sandbox, reference_dir: Path) -> None:
    test = json.loads((reference_dir / "cnda/insi/test3_01.json").read_text(encoding="utf-8"))["ins"]
    number, traits = test["matriculeINS"], test["traitsIdentite"]
    typed, _ = parse_traits({"birth_name": traits["nomFamille"], "given_names": traits["prenomActeNaissance"],
                             "sex": traits["sexeAdministratif"], "birth_date": traits["dateNaissance"],
                             "birth_place": traits["lieuNaissance"]}, START.date())
    assert typed is not None
    ins = Ins(number["valeur"] + number["cle"], "1.2.250.1.213.1.4.8")
    client = sandbox.client()
    try:
        outcome = await insi_search.verify(client, ins, typed, sandbox.caller())
    finally:
        await client.close()
    assert outcome.result == "match" and outcome.ins_matches and outcome.differences == []


async def test_insi_3_02_verification_fails_when_the_traits_are_not_the_ins_holders(
        sandbox: Sandbox, reference_dir: Path) -> None:
    # Lot 1 pairs Ruth NESSI's matricule with other traits: the INS is right, the person is not.
    lots = cnda.load(reference_dir)
    ruth = lots.person("277076322082910")
    assert ruth is not None
    client = sandbox.client()
    try:
        right = await insi_search.verify(client, Ins(ruth.ins, ruth.oid), IdentityTraits(
            ruth.birth_name, ruth.given_names, ruth.sex, ruth.birth_date, ruth.birth_place), sandbox.caller())
        other_given = await insi_search.verify(client, Ins(ruth.ins, ruth.oid), IdentityTraits(
            ruth.birth_name, ("RUTH",), ruth.sex, ruth.birth_date, ruth.birth_place), sandbox.caller())
        someone_else = await insi_search.verify(client, Ins(ruth.ins, ruth.oid), IdentityTraits(
            "NESSI", ("MICHELANGELO", "ANTHONY"), "M", "2010-08-07", "63220"), sandbox.caller())
    finally:
        await client.close()
    assert right.result == "match"
    assert other_given.result == "mismatch" and other_given.ins_matches and other_given.differences == ["given_names"]
    assert someone_else.result == "mismatch" and not someone_else.ins_matches


async def test_insi_1_07_a_cr01_after_a_technical_error_leads_to_a_second_request_with_other_criteria(
        sandbox: Sandbox) -> None:
    sandbox.sim.injection = Injection("CR01", after="technical_error", times=1)
    traits = IdentityTraits("LEFEVRE", ("HELENE", "MARIE", "THERESE"), "F", "1955-01-30")
    outcome = await traits_search(sandbox, traits)
    codes = [(c["code"], c.get("fault")) for c in sandbox.sim.calls]
    assert codes[:2] == [("fault", "siram_40"), ("01", None)]  # the technical error is retried, then CR 01
    assert [text(sent(c), "Prenom") for c in sandbox.sim.calls[1:3]] == ["HELENE", "MARIE"]
    # The sequence goes on until INSi finds her with all her given names.
    assert outcome.answer.result == "found"
    assert [a["result"] for a in outcome.attempts][-1] == "found" and len(outcome.attempts) >= 2


async def test_cr02_several_identities_requery_with_the_birth_place(sandbox: Sandbox) -> None:
    outcome = await traits_search(sandbox, IdentityTraits("MARTIN", ("CLAIRE",), "F", "1985-06-12", "69383"))
    assert [a["result"] for a in outcome.attempts] == ["several", "found"]
    assert [text(sent(c), "LieuNaissance") for c in sandbox.sim.calls] == ["", "69383"]


async def test_siram_40_twice_is_temporarily_unavailable_with_the_insi_code(sandbox: Sandbox) -> None:
    sandbox.sim.injection = Injection("siram_40", times=2)
    with pytest.raises(TransientRemoteError) as failed:
        await traits_search(sandbox, PAT)
    assert failed.value.code == "insi_temporarily_unavailable"
    assert failed.value.extra["remote"]["code"] == "insi_102"
    assert len(sandbox.sim.calls) == 2  # one retry, as configured (transient_retries = 1)


async def test_siram_100_software_not_authorised_is_a_refusal(sandbox: Sandbox) -> None:
    sandbox.sim.injection = Injection("siram_100")
    with pytest.raises(PermanentRemoteError) as refused:
        await traits_search(sandbox, PAT)
    assert refused.value.extra["remote"]["code"] == "desir_550" and len(sandbox.sim.calls) == 1


async def test_round_trip_and_journal_survives_a_restart(sandbox: Sandbox) -> None:
    outcome = await traits_search(sandbox, PAT)
    assert outcome.answer.ins is not None and outcome.answer.ins.value == PAT_TROIS.ins
    await sandbox.sim.stop()
    again = InsiSimulator()
    await again.start(sandbox.ctx)
    try:
        assert [(c["action"], c["code"], c["emitter"]) for c in again.calls] == [
            (soap.ACTION_TRAITS, "00", "810003456789")]
        assert "RECSANSVITALE" in again.calls[0]["request"]
    finally:
        await again.stop()


async def test_search_by_carte_vitale_finds_the_child_on_the_parents_card(sandbox: Sandbox) -> None:
    child = await vitale_search(sandbox, soap.VitaleQuery(PAT_TROIS.ins, "PAT-TROIS", PAT_TROIS_CAMILLE.birth_date,
                                                          card_serial="900000001"))
    unknown = await vitale_search(sandbox, soap.VitaleQuery(PAT_TROIS.ins, "PAT-TROIS", PAT_TROIS_JULES.birth_date,
                                                            card_serial="900000001"))
    assert child.ins is not None and child.ins.value == PAT_TROIS_CAMILLE.ins
    assert unknown.result == "not_found"


async def test_test_oids_are_refused_outside_test_platforms(sandbox: Sandbox) -> None:
    with pytest.raises(PermanentRemoteError) as refused:
        await traits_search(sandbox, PAT, allow_test_oids=False)
    assert refused.value.code == "insi_oid_refused"


async def test_the_server_must_be_trusted(sandbox: Sandbox, tmp_path: Path) -> None:
    other_ca = SandboxPki(tmp_path / "other").ca_path
    with pytest.raises(TransientRemoteError) as failed:
        await traits_search(sandbox, PAT, ca_file=str(other_ca))
    assert failed.value.code == "insi_unreachable"
    assert sandbox.sim.calls == []


async def test_an_assertion_from_another_ca_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    stranger = SandboxPki(tmp_path / "stranger").issue("doctor", common_name="Dr Test", client=True)
    signer = SoftwareSigner.from_files(stranger.cert_path, stranger.key_path)
    client = sandbox.client()
    try:
        with pytest.raises(PermanentRemoteError) as refused:
            await client.search_traits(PAT, insi_search.cps_caller(client.settings, signer, "810003456789", "10"))
    finally:
        await client.close()
    assert refused.value.extra["remote"]["code"] == "sandbox_authentication"


async def _post_raw(sandbox: Sandbox, data: bytes, channel: str = "url") -> bytes:
    context = ssl.create_default_context(cafile=sandbox.endpoint["ca_file"])
    context.load_cert_chain(sandbox.endpoint["client_cert"], sandbox.endpoint["client_key"])
    async with aiohttp.ClientSession() as http, \
            http.post(sandbox.endpoint[channel], data=data, ssl=context,
                      headers={"Content-Type": soap.CONTENT_TYPE}) as response:
        return await response.read()


async def test_unsigned_or_tampered_assertions_are_refused(sandbox: Sandbox) -> None:
    await traits_search(sandbox, PAT)
    genuine = sandbox.sim.calls[0]["request"]
    unsigned = etree.fromstring(genuine.encode())
    for signature in unsigned.iter("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        signature.getparent().remove(signature)
    with pytest.raises(PermanentRemoteError) as refused:
        soap.parse_answer(await _post_raw(sandbox, etree.tostring(unsigned), "cpx_url"))
    assert refused.value.extra["remote"]["code"] == "sandbox_authentication"
    tampered = genuine.replace(">123456789<", ">999999999<")
    assert tampered != genuine
    with pytest.raises(PermanentRemoteError):
        soap.parse_answer(await _post_raw(sandbox, tampered.encode(), "cpx_url"))
    assert [call["code"] for call in sandbox.sim.calls] == ["00", "fault", "fault"]


async def test_an_answer_that_never_comes_is_a_timeout(sandbox: Sandbox) -> None:
    sandbox.sim.faults.mode = FaultMode.TIMEOUT
    sandbox.sim.faults.timeout_seconds = 2.0
    with pytest.raises(TransientRemoteError) as failed:
        await traits_search(sandbox, PAT, timeout=0.5)
    assert failed.value.code == "insi_unreachable"


async def test_ws_ins4_lots_every_identity_of_the_material_verifies_and_only_the_wrong_pairs_do_not(
        sandbox: Sandbox, reference_dir: Path) -> None:
    """The simulator answers the CNDA's INSi test identities as the material gives them: each identity of the three
    WS_INS4 lots verifies, except the lots' deliberately wrong pairs (Ruth NESSI's matricule with NATHALIE's
    traits, a matricule born in 1960 with traits born in 1980, a matricule born in 1999 with traits born in 2009)."""
    from agent.cli.homologation_insi import lot_identity

    results: dict[tuple[str, str, str], str] = {}
    client = sandbox.client()
    try:
        for number in (1, 2, 3):
            lot = json.loads((reference_dir / f"cnda/insi/insi_a_verifier_lot{number}_1.0.1.json").read_text(
                encoding="utf-8"))
            for item in lot["lotIdentifiants"]:
                ins, traits = lot_identity(item)
                outcome = await insi_search.verify(client, ins, traits, sandbox.caller())
                results[(ins.value, " ".join(traits.given_names), traits.birth_date)] = outcome.result
    finally:
        await client.close()
    assert len(results) == 16  # distinct (matricule, given names, birth date) over the three lots
    assert {key for key, result in results.items() if result != "match"} == {
        ("277076322082910", "NATHALIE", "1977-07-14"), ("160012B02077713", "ANTHONY", "1980-03-02"),
        ("199016322075230", "MATRICULE", "2009-07-01")}
