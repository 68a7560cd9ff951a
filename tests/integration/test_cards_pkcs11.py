"""The CPS through a real PKCS#11 module (SoftHSM2): holder, PIN, signatures verified against the certificate,
XAdES through the Signer seam verified by signxml, CMS detached."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from agent.domain.signing import SignatureAlgorithm
from agent.errors import PinRefused, Unavailable
from tests.support.cards import DOCTOR, SoftHsm

pytest.importorskip("pkcs11", reason="python-pkcs11 absent: pip install 'relais[cards]'")


def _public(cert: x509.Certificate) -> rsa.RSAPublicKey:
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@pytest.fixture
def token(softhsm: SoftHsm) -> Any:
    from agent.cards.pkcs11 import Pkcs11CpsToken

    tok = Pkcs11CpsToken(softhsm.module, token_label=softhsm.token_label)
    yield tok
    tok.close()


def test_holder_comes_from_the_token_certificate(token: Any) -> None:
    holder = token.holder()
    assert (holder.rpps, holder.family_name, holder.given_name) == (DOCTOR["rpps"], "DURAND", "CLAIRE")
    assert (holder.profession, holder.specialty) == ("10", "SM54")
    assert holder.national_id == "810003456789"


def test_wrong_pin_says_tries_left_and_the_right_one_opens_a_session(token: Any, softhsm: SoftHsm) -> None:
    with pytest.raises(PinRefused) as refused:
        token.login("0000")
    # SoftHSM2 raises the token's "count low" flag after a failure: one attempt fewer.
    assert refused.value.tries_left == 2
    assert "2 essais" in refused.value.message
    assert not token.logged_in
    with pytest.raises(Unavailable) as no_session:
        token.signer()
    assert no_session.value.code == "cps_not_logged_in"
    token.login(softhsm.pin)
    assert token.logged_in
    assert token.pin_tries_left() == 3


def test_signatures_verify_against_the_card_certificate(token: Any, softhsm: SoftHsm) -> None:
    token.login(softhsm.pin)
    signer = token.signer()
    assert x509.load_der_x509_certificate(signer.certificate_der) == softhsm.cert
    public = _public(softhsm.cert)
    data = b"compte rendu de consultation"
    signature = signer.sign(data, SignatureAlgorithm.RSA_PKCS1V15_SHA256)
    public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    pss = signer.sign(data, SignatureAlgorithm.RSA_PSS_SHA256)
    public.verify(pss, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(signature, data + b"!", padding.PKCS1v15(), hashes.SHA256())


def test_logout_ends_signing(token: Any, softhsm: SoftHsm) -> None:
    token.login(softhsm.pin)
    signer = token.signer()
    token.logout()
    with pytest.raises(Unavailable) as refused:
        signer.sign(b"x")
    assert refused.value.code == "cps_not_logged_in"


def test_xades_through_the_signer_seam_verifies_with_signxml(token: Any, softhsm: SoftHsm) -> None:
    from signxml import XMLVerifier
    from signxml.exceptions import InvalidSignature as InvalidXmlSignature

    from agent.xml.signing import sign_xades_enveloped

    token.login(softhsm.pin)
    root = etree.fromstring(b"<SubmitObjectsRequest><Document id='d1'>contenu</Document></SubmitObjectsRequest>")
    signed = sign_xades_enveloped(root, token.signer())
    cert_pem = softhsm.cert.public_bytes(serialization.Encoding.PEM)
    result = XMLVerifier().verify(signed, x509_cert=cert_pem, expect_references=3)
    verified = result[0] if isinstance(result, list) else result
    assert verified.signed_xml is not None
    assert b"contenu" in etree.tostring(verified.signed_xml)
    # Document, signed properties, key info; tampering with the document breaks it.
    signed.find("Document").text = "autre"
    with pytest.raises(InvalidXmlSignature):
        XMLVerifier().verify(signed, x509_cert=cert_pem, expect_references=3)


def test_cms_detached_signature_verifies(token: Any, softhsm: SoftHsm) -> None:
    from agent.cards.cms import sign_detached, signed_attributes_of

    token.login(softhsm.pin)
    data = b"%PDF-1.4 lettre de liaison"
    der = sign_detached(data, token.signer(), dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC))
    signed_attrs, signature, digest = signed_attributes_of(der)
    assert digest == hashlib.sha256(data).digest()
    _public(softhsm.cert).verify(signature, signed_attrs, padding.PKCS1v15(), hashes.SHA256())
    assert base64.b64encode(der)  # a DER blob an LGC can store next to the document


def test_authentication_key_is_distinct_from_the_signature_key(token: Any, softhsm: SoftHsm) -> None:
    token.login(softhsm.pin)
    auth = token.signer("authentication")
    assert x509.load_der_x509_certificate(auth.certificate_der) == softhsm.auth_cert
    assert auth.certificate_der != token.signer().certificate_der
    challenge = b"defi TLS"
    _public(softhsm.auth_cert).verify(auth.sign(challenge), challenge, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        _public(softhsm.cert).verify(auth.sign(challenge), challenge, padding.PKCS1v15(), hashes.SHA256())


async def _agent_with_token(start_agent: Any, softhsm: SoftHsm) -> Any:
    """An agent whose CPS is the PKCS#11 token alone (no PC/SC), once its presence poller has seen it."""
    agent = await start_agent(cards={"pcsc": False, "pkcs11_module": softhsm.module,
                                     "token_label": softhsm.token_label})
    for _ in range(100):  # the presence poller runs once a second
        if agent.services.cards.cps_holder() is not None:
            break
        await asyncio.sleep(0.05)
    return agent


async def test_without_pcsc_the_token_is_the_card(softhsm: SoftHsm, start_agent: Any, http: Any) -> None:
    agent = await _agent_with_token(start_agent, softhsm)
    cards = agent.services.cards
    holder = cards.cps_holder()
    assert holder is not None and holder.rpps == DOCTOR["rpps"] and not holder.logged_in
    async with http.post(f"{agent.url}/v1/cps/login", json={"pin": softhsm.pin}, headers=agent.headers()) as r:
        assert r.status == 200
    async with http.post(f"{agent.url}/v1/sign", json={"format": "raw", "data_base64": "aGk="},
                         headers=agent.headers()) as r:
        body = await r.json()
    assert r.status == 200
    _public(softhsm.cert).verify(base64.b64decode(body["signature_base64"]), b"hi", padding.PKCS1v15(),
                                 hashes.SHA256())
    async with http.post(f"{agent.url}/v1/cps/logout", headers=agent.headers()) as r:
        assert r.status == 200 and not (await r.json())["logged_in"]


def test_a_signature_in_progress_does_not_hold_back_handing_out_the_signer(token: Any, softhsm: SoftHsm) -> None:
    """The API asks for the signer on the event loop at every request: it must not wait on the module lock that a
    signature in progress (on another thread) holds for as long as the card takes."""
    import threading

    from agent.cards.pkcs11 import _MODULE_LOCK

    token.login(softhsm.pin)
    signer = token.signer()
    holding, release, handed = threading.Event(), threading.Event(), threading.Event()

    def card_busy() -> None:
        with _MODULE_LOCK:
            holding.set()
            release.wait()

    def ask() -> None:
        if token.signer() is signer:
            handed.set()

    busy = threading.Thread(target=card_busy)
    busy.start()
    try:
        assert holding.wait(10)
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        # Not a timing check: without the lock-free path the signer is never handed out while the lock is held.
        assert handed.wait(30), "token.signer() waited for the card's lock"
    finally:
        release.set()
        busy.join()
    token.logout()
    with pytest.raises(Unavailable) as ended:
        token.signer()  # a session ended meanwhile is still refused
    assert ended.value.code == "cps_not_logged_in"


async def test_concurrent_raw_signatures_each_answer_their_own_data(softhsm: SoftHsm, start_agent: Any,
                                                                     http: Any) -> None:
    """Requests queued on the card's thread get their own signature back, whatever the order they are signed in."""
    agent = await _agent_with_token(start_agent, softhsm)
    async with http.post(f"{agent.url}/v1/cps/login", json={"pin": softhsm.pin}, headers=agent.headers()) as r:
        assert r.status == 200

    async def sign(data: bytes) -> bytes:
        async with http.post(f"{agent.url}/v1/sign", headers=agent.headers(),
                             json={"format": "raw", "data_base64": base64.b64encode(data).decode()}) as r:
            assert r.status == 200
            return base64.b64decode((await r.json())["signature_base64"])

    documents = [f"ordonnance {n}".encode() for n in range(12)]
    signatures = await asyncio.gather(*(sign(data) for data in documents))
    for data, signature in zip(documents, signatures, strict=True):
        _public(softhsm.cert).verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
