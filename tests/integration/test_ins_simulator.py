"""The INSi client against the simulator over real mutual TLS: trust, authentication, OIDs, and state on disk."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.clock import SystemClock
from agent.domain.traits import IdentityTraits
from agent.errors import PermanentRemoteError, TransientRemoteError
from agent.ins import soap
from agent.ins.client import InsiClient, InsiSettings
from agent.softkey import SoftwareSigner
from relais_sandbox.host import SandboxContext
from relais_sandbox.identities import PAT_TROIS, PAT_TROIS_CAMILLE, PAT_TROIS_JULES
from relais_sandbox.insi import InsiSimulator
from relais_sandbox.pki import SandboxPki

PAT = IdentityTraits("PAT-TROIS", ("DOMINIQUE",), "F", "1979-03-28")


@dataclass
class Sandbox:
    ctx: SandboxContext
    sim: InsiSimulator
    endpoint: dict[str, Any]
    signer: SoftwareSigner

    def settings(self, **changes: Any) -> InsiSettings:
        base = InsiSettings(url=self.endpoint["url"], ca_file=self.endpoint["ca_file"],
                            client_cert=self.endpoint["client_cert"], client_key=self.endpoint["client_key"],
                            allow_test_oids=True, timeout=5.0)
        return replace(base, **changes)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    ctx = SandboxContext(tmp_path / "sandbox", SandboxPki(tmp_path / "sandbox"))
    sim = InsiSimulator()
    endpoint = await sim.start(ctx)
    creds = ctx.pki.issue("doctor", common_name="Dr Test", client=True)
    yield Sandbox(ctx, sim, endpoint, SoftwareSigner.from_files(creds.cert_path, creds.key_path))
    await sim.stop()


async def search(settings: InsiSettings, signer: SoftwareSigner, traits: IdentityTraits = PAT) -> soap.InsiAnswer:
    client = InsiClient(settings, SystemClock())
    try:
        return await client.search_traits(traits, signer, "01234567897")
    finally:
        await client.close()


async def test_round_trip_and_journal_survives_a_restart(sandbox: Sandbox) -> None:
    answer = await search(sandbox.settings(), sandbox.signer)
    assert answer.result == "found" and answer.ins is not None and answer.ins.value == PAT_TROIS.ins
    assert answer.traits is not None and answer.traits.given_names == PAT_TROIS.given_names
    await sandbox.sim.stop()
    again = InsiSimulator()
    await again.start(sandbox.ctx)
    try:
        assert [(c["action"], c["code"], c["emitter"]) for c in again.calls] == [
            (soap.ACTION_TRAITS, "00", "01234567897")]
    finally:
        await again.stop()


async def test_search_by_carte_vitale(sandbox: Sandbox) -> None:
    client = InsiClient(sandbox.settings(), SystemClock())
    try:
        child = await client.search_vitale(soap.VitaleQuery(PAT_TROIS.ins, "PAT-TROIS", PAT_TROIS_CAMILLE.birth_date),
                                           sandbox.signer, "01234567897")
        unknown = await client.search_vitale(soap.VitaleQuery(PAT_TROIS.ins, "PAT-TROIS", PAT_TROIS_JULES.birth_date),
                                             sandbox.signer, "01234567897")
    finally:
        await client.close()
    assert child.ins is not None and child.ins.value == PAT_TROIS_CAMILLE.ins
    assert unknown.result == "not_found"


async def test_test_oids_are_refused_outside_test_platforms(sandbox: Sandbox) -> None:
    with pytest.raises(PermanentRemoteError) as refused:
        await search(sandbox.settings(allow_test_oids=False), sandbox.signer)
    assert refused.value.code == "insi_oid_refused"


async def test_the_server_must_be_trusted(sandbox: Sandbox, tmp_path: Path) -> None:
    other_ca = SandboxPki(tmp_path / "other").ca_path
    with pytest.raises(TransientRemoteError) as failed:
        await search(sandbox.settings(ca_file=str(other_ca)), sandbox.signer)
    assert failed.value.code == "insi_unreachable"
    assert sandbox.sim.calls == []


async def test_the_workstation_must_present_its_certificate(sandbox: Sandbox) -> None:
    with pytest.raises(TransientRemoteError):
        await search(sandbox.settings(client_cert="", client_key=""), sandbox.signer)
    assert sandbox.sim.calls == []


async def _post_raw(sandbox: Sandbox, data: bytes) -> bytes:
    context = ssl.create_default_context(cafile=sandbox.endpoint["ca_file"])
    context.load_cert_chain(sandbox.endpoint["client_cert"], sandbox.endpoint["client_key"])
    async with aiohttp.ClientSession() as http, \
            http.post(sandbox.endpoint["url"], data=data, ssl=context,
                      headers={"Content-Type": soap.CONTENT_TYPE}) as response:
        return await response.read()


async def test_unsigned_or_tampered_assertions_are_refused(sandbox: Sandbox) -> None:
    import datetime as dt

    from agent.xml.signing import sign_enveloped

    ctx = soap.CallContext("00000000-0000-4000-8000-000000000001", dt.datetime.now(dt.UTC), "01234567897",
                           soap.LpsInfo("X", "relais", "0", "i"))
    unsigned = soap.build_envelope(soap.ACTION_TRAITS, ctx, soap.traits_body(PAT), soap.build_assertion(ctx, "_a"))
    with pytest.raises(PermanentRemoteError) as refused:
        soap.parse_answer(await _post_raw(sandbox, unsigned))
    assert "sign" in refused.value.message.lower()

    signed = sign_enveloped(soap.build_assertion(ctx, "_b"), sandbox.signer)
    issuer = signed.find(f"{{{soap.SAML}}}Issuer")
    assert issuer is not None
    issuer.text = "99999999999"  # someone else, after signing
    tampered = soap.build_envelope(soap.ACTION_TRAITS, ctx, soap.traits_body(PAT), signed)
    with pytest.raises(PermanentRemoteError):
        soap.parse_answer(await _post_raw(sandbox, tampered))
    assert all(call["code"] == "fault" for call in sandbox.sim.calls)


async def test_an_answer_that_never_comes_is_a_timeout(sandbox: Sandbox) -> None:
    from relais_sandbox.host import FaultMode

    sandbox.sim.faults.mode = FaultMode.TIMEOUT
    sandbox.sim.faults.timeout_seconds = 2.0
    with pytest.raises(TransientRemoteError) as failed:
        await search(sandbox.settings(timeout=0.5), sandbox.signer)
    assert failed.value.code == "insi_unreachable"
