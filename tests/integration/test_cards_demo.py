"""The demo's virtual cards through the API as an LGC uses it: sandbox routes insert and pull them, the events
stream says so, the CPS PIN session and every /v1/sign format work and verify."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree
from signxml import XMLVerifier

from agent.cards.cms import signed_attributes_of
from agent.cli.wiring import DemoOptions
from tests.support.cards import event_stream


async def _post(http: Any, agent: Any, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{agent.url}{path}", json=body, headers=agent.headers()) as response:
        return response.status, await response.json()


async def test_demo_cards_inserted_pulled_and_signing_formats(start_agent: Any, http: Any) -> None:
    agent = await start_agent(demo=DemoOptions(cards="none"))
    async with http.get(f"{agent.url}/v1/cards", headers=agent.headers()) as response:
        cards = await response.json()
    assert not cards["cps"]["present"] and not cards["vitale"]["present"]

    async with event_stream(http, agent) as events:
        status, _ = await _post(http, agent, "/_sandbox/cards/vitale", {"inserted": True, "beneficiaries": [
            {"nir": "279035121518989", "family_name": "Pat-Trois", "given_names": ["Dominique"],
             "birth_date": "1979-03-28"}]})
        assert status == 200
        assert (await events.wait("card.inserted"))["card"] == "vitale"
        status, _ = await _post(http, agent, "/_sandbox/cards/cps", {"inserted": True})
        inserted = await events.wait("card.inserted", card="cps")
        assert inserted["rpps"] == "01234567897"  # the author of the ANS example documents

    async with http.get(f"{agent.url}/v1/cards", headers=agent.headers()) as response:
        cards = await response.json()
    assert cards["vitale"]["beneficiaries"][0]["family_name"] == "PAT-TROIS"
    assert cards["cps"]["holder"]["family_name"] == "MULLER" and cards["cps"]["pin_tries_left"] == 3

    status, problem = await _post(http, agent, "/v1/cps/login", {"pin": "4321"})
    assert status == 401 and problem["tries_left"] == 2 and "2 essais" in problem["detail"]
    status, cps = await _post(http, agent, "/v1/cps/login", {"pin": "1234"})
    assert status == 200 and cps["logged_in"] and cps["pin_tries_left"] == 3

    data = b"lettre de liaison"
    encoded = base64.b64encode(data).decode()
    status, raw = await _post(http, agent, "/v1/sign", {"format": "raw", "data_base64": encoded})
    assert status == 200
    cert = x509.load_pem_x509_certificate(raw["certificate_pem"].encode())
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(base64.b64decode(raw["signature_base64"]), data, padding.PKCS1v15(), hashes.SHA256())

    status, cms = await _post(http, agent, "/v1/sign", {"format": "cms-detached", "data_base64": encoded})
    assert status == 200
    signed_attrs, signature, digest = signed_attributes_of(base64.b64decode(cms["signature_base64"]))
    assert digest == hashlib.sha256(data).digest()
    public.verify(signature, signed_attrs, padding.PKCS1v15(), hashes.SHA256())

    status, xades = await _post(http, agent, "/v1/sign", {"format": "xades-enveloped",
                                                           "xml": "<doc><p>compte rendu</p></doc>"})
    assert status == 200
    pem = cert.public_bytes(serialization.Encoding.PEM)
    XMLVerifier().verify(etree.fromstring(xades["xml"].encode()), x509_cert=pem, expect_references=3)

    status, problem = await _post(http, agent, "/v1/sign", {"format": "xades-enveloped",
                                                             "xml": "<!DOCTYPE d [<!ENTITY e 'x'>]><d>&e;</d>"})
    assert status == 422  # hostile XML is refused before anything is signed

    status, _ = await _post(http, agent, "/_sandbox/cards/cps", {"inserted": False})
    status, problem = await _post(http, agent, "/v1/sign", {"format": "raw", "data_base64": "aGk="})
    assert status == 503 and problem["code"] == "cps_absent" and "insérez" in problem["detail"]


async def test_demo_starts_with_both_cards_by_default(start_agent: Any, http: Any) -> None:
    agent = await start_agent(demo=DemoOptions())
    async with http.get(f"{agent.url}/v1/status", headers=agent.headers()) as response:
        status = await response.json()
    assert status["cards"]["cps"] == {"present": True, "logged_in": False, "rpps": "01234567897"}
    assert status["cards"]["vitale"] == {"present": True}
    ins = [b["nir"] for b in agent.services.cards.snapshot()["vitale"]["beneficiaries"]]
    assert "279035121518989" in ins


async def test_relais_demo_cards_option_as_a_user_starts_it(demo_process: Any, http: Any) -> None:
    demo = demo_process("agent", "--cards", "vitale")
    try:
        headers = {"Authorization": f"Bearer {demo.token}"}
        async with http.get(f"{demo.url}/v1/cards", headers=headers) as response:
            cards = await response.json()
        assert cards["vitale"]["present"] and not cards["cps"]["present"]
        async with http.post(f"{demo.url}/_sandbox/cards/cps", json={"inserted": True}, headers=headers) as response:
            assert response.status == 200
        async with http.get(f"{demo.url}/v1/cards", headers=headers) as response:
            cards = await response.json()
        assert cards["cps"]["present"] and cards["cps"]["holder"]["rpps"] == "01234567897"
    finally:
        assert demo.stop() == 0


async def test_a_pin_in_other_digits_is_refused_before_it_costs_a_card_attempt(start_agent: Any, http: Any) -> None:
    agent = await start_agent(demo=DemoOptions(cards="cps"))
    # Arabic-Indic, superscript and fullwidth digits: str.isdigit() says yes to all of them.
    for pin in ("\u0661\u0662\u0663\u0664", "\u00b9\u00b2\u00b3\u2074", "\uff11\uff12\uff13\uff14"):
        status, problem = await _post(http, agent, "/v1/cps/login", {"pin": pin})
        assert status == 422 and problem["errors"][0]["field"] == "pin", problem
    async with http.get(f"{agent.url}/v1/cards", headers=agent.headers()) as response:
        cards = await response.json()
    assert cards["cps"]["pin_tries_left"] == 3  # no attempt burnt on the card
    # Non-ASCII digits elsewhere in the API are refused too, never a 500.
    async with http.get(f"{agent.url}/v1/traces?limit=\u00b2", headers=agent.headers()) as response:
        assert response.status == 422
