"""CNDA 0.1-190 (SC.DMP/PSC.40, "Directe via PSC"): DMP access through Pro Santé Connect, with no card in any
reader. The whole demo agent: the simulated PSC login (browser step by HTTP), then a feed through the queue and
a consultation; the DMP token is obtained over the same TLS client certificate as the DMP calls and the simulated
DMP checks it (bound certificate, same professional as the VIHF, PSC session alive), refusing other tokens.
When the PSC session ends, the queue waits for the professional."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.cli.wiring import DemoOptions
from agent.dmp.models import Professional
from agent.dmp.transport import TlsSettings, Transport
from agent.dmp.vihf import SAML
from agent.errors import PermanentRemoteError
from agent.psc.jose import SigningKey
from relais_sandbox.identities import PAT_TROIS
from relais_sandbox.pki import SandboxPki
from relais_sandbox.psc import TEST_USERS
from tests.integration.test_dmp_api import call, ready_to_consult
from tests.integration.test_queue_demo import demo_cda
from tests.support.dmp import logged_envelope
from tests.support.ins import record_insi_answer
from tests.support.psc import browse
from tests.support.queue import order_body

DEMO = TEST_USERS[0]
OID = PAT_TROIS.oid


async def _sandbox(http: aiohttp.ClientSession, agent: Any) -> dict[str, Any]:
    status, described = await call(http, agent, "GET", "/_sandbox/endpoints")
    assert status == 200
    return dict(described)


async def _psc_calls(http: aiohttp.ClientSession, agent: Any) -> list[dict[str, str]]:
    _, calls = await call(http, agent, "GET", "/_sandbox/dmp/psc-calls")
    return list(calls["items"])


async def _login(http: aiohttp.ClientSession, agent: Any) -> None:
    status, started = await call(http, agent, "POST", "/v1/psc/login")
    assert status == 200, started
    assert (await browse(started["authorization_url"]))[0] == 200
    status, context = await call(http, agent, "GET", "/v1/professional")
    assert context["context"] == "psc" and context["professional"]["rpps"] == DEMO.rpps


async def _wait_state(http: aiohttp.ClientSession, agent: Any, order_id: str, wanted: str) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    for _ in range(150):
        _, detail = await call(http, agent, "GET", f"/v1/orders/{order_id}")
        if detail["state"] == wanted:
            return detail
        await asyncio.sleep(0.1)
    raise AssertionError(detail)


async def test_0_1_190_feed_and_consult_through_psc_with_no_card(start_agent: Any, http: aiohttp.ClientSession,
                                                                 reference_dir: Path) -> None:
    agent = await start_agent(demo=DemoOptions(cards="none", tray=False), dmp={"reference_dir": str(reference_dir)})
    status, cards = await call(http, agent, "GET", "/v1/cards")
    assert cards["professional_context"] is None
    await _login(http, agent)

    # Feeding (TD2.1, after TD0.2) through the queue, the author connected through PSC.
    body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=OID, rpps=DEMO.rpps, delay=0)
    # The INS from INSi (EX_GEN-1530): INSi is asked with a CPS or the structure's certificate, not with PSC,
    # so this card-less desk holds what an earlier INSi answer recorded.
    await record_insi_answer(agent.services.db, PAT_TROIS.ins, OID)
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order
    await _wait_state(http, agent, order["id"], "sent")

    # Consultation (TD3.1).
    await ready_to_consult(http, agent, PAT_TROIS, cps=False)
    status, found = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents?oid={OID}")
    assert status == 200, found
    assert found["items"]

    # DICA (TD0.2 in the name of the actor, agent/audit/consultation.py): the PSC mode too.
    status, access = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/access?oid={OID}&identity_status=QUAL")
    assert status == 200, access

    # Every DMP call was made in the PSC mode, for the PSC professional; the VIHF says so.
    psc_calls = await _psc_calls(http, agent)
    actions = [c["action"] for c in psc_calls]
    assert any("ProvideAndRegister" in a for a in actions) and any("RegistryStoredQuery" in a for a in actions)
    assert {c["professional"] for c in psc_calls} == {DEMO.national_id}
    _, all_calls = await call(http, agent, "GET", "/_sandbox/dmp/calls")
    assert len(psc_calls) == len(all_calls["items"])  # not one call without the PSC mode
    _, calls = await call(http, agent, "GET", "/_sandbox/dmp/calls")
    last = logged_envelope(calls["items"][-1])
    assert last.findtext(f".//{{{SAML}}}AuthnContextClassRef") == \
        "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
    _, sessions = await call(http, agent, "GET", "/_sandbox/psc/sessions")
    assert sessions["logins"] == 1


async def test_when_the_psc_session_ends_the_order_waits_for_the_professional(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    agent = await start_agent(demo=DemoOptions(cards="none", tray=False), dmp={"reference_dir": str(reference_dir)})
    await _login(http, agent)
    status, _ = await call(http, agent, "POST", "/v1/psc/logout")
    assert status == 200
    body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=OID, rpps=DEMO.rpps, delay=0)
    # The INS from INSi (EX_GEN-1530): INSi is asked with a CPS or the structure's certificate, not with PSC,
    # so this card-less desk holds what an earlier INSi answer recorded.
    await record_insi_answer(agent.services.db, PAT_TROIS.ins, OID)
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order
    detail = await _wait_state(http, agent, order["id"], "waiting_card")
    assert "Pro Santé Connect" in detail["deliveries"][0]["last_error"]["message"]
    await _login(http, agent)  # the professional reconnects: the order leaves
    await _wait_state(http, agent, order["id"], "sent")


async def test_the_dmp_refuses_psc_tokens_from_elsewhere_or_for_another_certificate(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path, tmp_path: Path) -> None:
    agent = await start_agent(demo=DemoOptions(cards="none", tray=False), dmp={"reference_dir": str(reference_dir)})
    await _login(http, agent)
    described = await _sandbox(http, agent)
    endpoint, issuer = described["endpoints"]["dmp"], described["endpoints"]["psc"]["issuer"]
    client = agent.services.dmp
    # A PSC token that the simulated PSC never issued (another provider's key) is refused at the exchange.
    forged = SigningKey.generate().sign({"iss": issuer, "sub": "x", "exp": 4_000_000_000, "sid": "s", "jti": "j"})
    status, answer = await client.transport.post_form(endpoint["psc_token_url"], {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": forged,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"})
    assert status == 400 and answer["error"] == "invalid_grant"
    # A genuine DMP token presented from another TLS client certificate is refused.
    psc_token = await agent.services.psc.access_token(DEMO.rpps)
    status, answer = await client.transport.post_form(endpoint["psc_token_url"], {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": psc_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"})
    assert status == 200
    dmp_token = answer["access_token"]
    other = SandboxPki(Path(described["state_dir"])).issue("other-client", common_name="Un autre poste",
                                                           client=True)
    elsewhere = Transport(TlsSettings(Path(endpoint["ca_file"]), other.cert_path, other.key_path))
    try:
        request = (b'<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
                   b'<s:Header/><s:Body/></s:Envelope>')
        answer_soap = await elsewhere.post(endpoint["url"] + "/registry", request, "application/soap+xml", "x",
                                           {"Authorization": f"Bearer {dmp_token}"})
        assert answer_soap.status == 400
        assert "autre certificat" in answer_soap.message.root.decode()
    finally:
        await elsewhere.close()
    assert await _psc_calls(http, agent) == []


async def test_a_psc_session_revoked_elsewhere_makes_the_order_wait(start_agent: Any, http: aiohttp.ClientSession,
                                                                    reference_dir: Path) -> None:
    agent = await start_agent(demo=DemoOptions(cards="none", tray=False), dmp={"reference_dir": str(reference_dir)})
    await _login(http, agent)
    status, revoked = await call(http, agent, "POST", "/_sandbox/psc/revoke", {"rpps": DEMO.rpps})
    assert status == 200 and revoked["revoked"] == 1  # the professional logged out of PSC on another device
    body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=OID, rpps=DEMO.rpps, delay=0)
    # The INS from INSi (EX_GEN-1530): INSi is asked with a CPS or the structure's certificate, not with PSC,
    # so this card-less desk holds what an earlier INSi answer recorded.
    await record_insi_answer(agent.services.db, PAT_TROIS.ins, OID)
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order
    detail = await _wait_state(http, agent, order["id"], "waiting_card")
    assert detail["deliveries"][0]["last_error"]["code"] in ("dmp_psc_refused", "psc_session_expired"), detail
    assert await _psc_calls(http, agent) == []  # nothing reached the DMP in the professional's name


async def test_the_dmp_refuses_a_psc_token_used_for_another_professional(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    """Were the agent to hand one professional's PSC token to a call in another's name, the DMP refuses it."""
    agent = await start_agent(demo=DemoOptions(cards="none", tray=False), dmp={"reference_dir": str(reference_dir)})
    await _login(http, agent)
    client = agent.services.dmp
    demo_token = await agent.services.psc.access_token(DEMO.rpps)

    async def same_token_for_anyone(rpps: str) -> str | None:  # the fault under test, at the agent's seam
        return demo_token

    client.psc._psc_token = same_token_for_anyone
    other = Professional(rpps=TEST_USERS[1].rpps, family_name="ESSAI", given_name="Bruno", via_psc=True)
    with pytest.raises(PermanentRemoteError) as refused:
        await client.td02(PAT_TROIS.ins, OID, other)
    assert "autre professionnel" in refused.value.message
    assert await _psc_calls(http, agent) == []
