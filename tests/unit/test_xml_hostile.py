"""Hostile XML: every XML from outside goes through agent.xml.safe.parse and the signature checks.

XXE, entity expansion, a DOCTYPE, an oversized document and a signature-wrapping variant each end in a clear
error, with bounded memory.
"""

from __future__ import annotations

import copy
import datetime as dt
import tracemalloc
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from agent.dmp import soap
from agent.dmp.models import Professional
from agent.dmp.vihf import SAML, VihfSettings, read_assertion, signed_assertion
from agent.errors import TransientRemoteError
from agent.softkey import SoftwareSigner
from agent.xml.safe import UnsafeXml, parse
from agent.xml.signing import SignatureInvalid, verify_enveloped
from relais_sandbox.pki import SandboxPki

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>"""
LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">""" + b"".join(
    f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode() for i in range(1, 10)
) + b"""]><lolz>&lol9;</lolz>"""
PARAMETER_XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]><r/>"""


@pytest.mark.parametrize("data", [XXE, LAUGHS, PARAMETER_XXE], ids=["xxe", "billion-laughs", "parameter-entity"])
def test_doctype_based_attacks_are_refused_with_bounded_memory(data: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeXml) as info:
            parse(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "DOCTYPE" in info.value.message or "entités" in info.value.message or "mal formé" in info.value.message
    assert peak < 5 * 1024 * 1024  # nothing was expanded
    assert b"root:" not in info.value.message.encode()


def test_doctype_in_a_soap_answer_is_an_unreadable_answer_naming_the_dmp() -> None:
    answer = b'<?xml version="1.0"?><!DOCTYPE soap:Envelope [<!ENTITY x "y">]>' \
             b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><a>&x;</a>' \
             b'</soap:Body></soap:Envelope>'
    with pytest.raises(TransientRemoteError) as info:  # unreadable says nothing of the request: not a refusal
        soap.parse_envelope(answer)
    assert info.value.code == "dmp_answer_invalid" and "DOCTYPE" in info.value.message


def test_oversized_document_is_refused_before_parsing() -> None:
    big = b"<r>" + b"a" * (2 * 1024 * 1024) + b"</r>"
    with pytest.raises(UnsafeXml) as info:
        parse(big, max_bytes=1024 * 1024)
    assert "volumineux" in info.value.message


def test_oversized_mtom_message_is_refused() -> None:
    with pytest.raises(UnsafeXml):
        soap.read_mtom(b"x" * 2048, 'multipart/related; boundary="b"', max_bytes=1024)


def test_deeply_nested_document_is_refused() -> None:
    deep = b"<a>" * 5000 + b"</a>" * 5000
    with pytest.raises(UnsafeXml):
        parse(deep)


@pytest.fixture
def signed(tmp_path: Path) -> tuple[etree._Element, x509.Certificate]:
    pki = SandboxPki(tmp_path)
    creds = pki.issue("structure", common_name="Cabinet test")
    signer = SoftwareSigner.from_files(creds.cert_path, creds.key_path)
    assertion = signed_assertion(VihfSettings("1750803447"), Professional("10001234567", "DEMO", "Alice"),
                                 "279035121518989", "1.2.250.1.213.1.4.10", signer, dt.datetime.now(dt.UTC))
    ca = x509.load_pem_x509_certificate(pki.ca_path.read_bytes())
    return etree.fromstring(etree.tostring(assertion)), ca


def test_signed_vihf_verifies_and_reads_its_attributes(signed: tuple[etree._Element, x509.Certificate]) -> None:
    assertion, ca = signed
    verified = verify_enveloped(assertion, [ca], dt.datetime.now(dt.UTC), id_attribute="ID")
    attrs = read_assertion(verified.signed)
    assert attrs["NameID"] == ["810001234567"]
    assert attrs["Authentification_Mode"] == ["INDIRECTE"]


def test_signature_wrapping_is_refused(signed: tuple[etree._Element, x509.Certificate]) -> None:
    """The classic XSW: an evil assertion carrying the genuine signature, the signed original hidden inside."""
    original, ca = signed
    evil = copy.deepcopy(original)
    evil.set("ID", "_evil")
    nameid = evil.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    assert nameid is not None
    nameid.text = "899999999999"
    hidden = etree.SubElement(evil, f"{{{SAML}}}Advice")
    genuine = copy.deepcopy(original)
    sig = genuine.find("{http://www.w3.org/2000/09/xmldsig#}Signature")
    assert sig is not None
    genuine.remove(sig)
    hidden.append(genuine)
    with pytest.raises(SignatureInvalid):
        verify_enveloped(evil, [ca], dt.datetime.now(dt.UTC), id_attribute="ID")


def test_a_tampered_attribute_breaks_the_signature(signed: tuple[etree._Element, x509.Certificate]) -> None:
    assertion, ca = signed
    nameid = assertion.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    assert nameid is not None
    nameid.text = "899999999999"
    with pytest.raises(SignatureInvalid):
        verify_enveloped(assertion, [ca], dt.datetime.now(dt.UTC), id_attribute="ID")


def test_a_signer_outside_the_trusted_ca_is_refused(signed: tuple[etree._Element, x509.Certificate],
                                                    tmp_path: Path) -> None:
    assertion, _ = signed
    other_ca = x509.load_pem_x509_certificate(SandboxPki(tmp_path / "other").ca_path.read_bytes())
    with pytest.raises(SignatureInvalid) as info:
        verify_enveloped(assertion, [other_ca], dt.datetime.now(dt.UTC), id_attribute="ID")
    assert "autorité" in info.value.message
