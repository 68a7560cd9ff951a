"""The signxml adapter over the Signer protocol: XAdES enveloped and IHE DSG detached, PKCS#1 v1.5 and PSS.

Signatures are checked through signxml's own verifier (an independent path from the signing code), and a key
object that only delegates ``sign`` (as a PKCS#11 token does) is enough to sign.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree
from signxml.xades.xades import XAdESSignatureConfiguration, XAdESVerifier

from agent.domain.signing import SignatureAlgorithm
from agent.softkey import SoftwareSigner
from agent.xml.signing import (
    SignatureInvalid,
    sign_xades_detached,
    sign_xades_enveloped,
    verify_enveloped,
    verify_xades_detached,
)
from relais_sandbox.pki import SandboxPki

NOW = dt.datetime.now(dt.UTC)


class CountingSigner:
    """A Signer that only signs (like a card) and counts how often it was asked."""

    def __init__(self, inner: SoftwareSigner) -> None:
        self.inner = inner
        self.calls: list[SignatureAlgorithm | None] = []

    @property
    def certificate_der(self) -> bytes:
        return self.inner.certificate_der

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self.inner.algorithm

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        self.calls.append(algorithm)
        return self.inner.sign(data, algorithm)


@pytest.fixture(params=list(SignatureAlgorithm), ids=lambda a: a.value)
def signer(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[CountingSigner, x509.Certificate]:
    pki = SandboxPki(tmp_path)
    creds = pki.issue("doctor", common_name="Dr Test")
    inner = SoftwareSigner.from_files(creds.cert_path, creds.key_path, algorithm=request.param)
    return CountingSigner(inner), x509.load_pem_x509_certificate(pki.ca_path.read_bytes())


def test_xades_enveloped_verifies_with_signxml(signer: tuple[CountingSigner, x509.Certificate]) -> None:
    s, ca = signer
    signed = sign_xades_enveloped(etree.fromstring(b"<doc><a>1</a></doc>"), s)
    assert s.calls == [s.algorithm]
    reparsed = etree.fromstring(etree.tostring(signed))
    cert = x509.load_der_x509_certificate(s.certificate_der)
    results = XAdESVerifier().verify(reparsed, x509_cert=cert)
    assert results[0].signed_xml is not None
    assert verify_enveloped(reparsed, [ca], NOW, xades=True).signed.tag == "doc"


def test_dsg_detached_covers_every_reference(signer: tuple[CountingSigner, x509.Certificate]) -> None:
    s, ca = signer
    contents = {"1.2.3.4": b"<ClinicalDocument/>", "1.2.3.5": b"submission set"}
    signature = etree.fromstring(etree.tostring(sign_xades_detached(list(contents.items()), s)))
    cert = x509.load_der_x509_certificate(s.certificate_der)
    independent = XAdESVerifier().verify(signature, x509_cert=cert,
                                         expect_config=XAdESSignatureConfiguration(expect_references=3))
    assert any(r.signed_xml is not None and r.signed_xml.tag.endswith("Manifest") for r in independent)
    verified = verify_xades_detached(signature, contents, [ca], NOW)
    assert [r.get("URI") for r in verified.signed] == ["1.2.3.4", "1.2.3.5"]
    with pytest.raises(SignatureInvalid, match="Empreinte"):
        verify_xades_detached(signature, {**contents, "1.2.3.4": b"<ClinicalDocument>x</ClinicalDocument>"},
                              [ca], NOW)
    with pytest.raises(SignatureInvalid, match="non couverts"):
        verify_xades_detached(signature, {**contents, "1.2.3.6": b"extra"}, [ca], NOW)


def test_a_tampered_manifest_breaks_the_signature(signer: tuple[CountingSigner, x509.Certificate]) -> None:
    s, ca = signer
    signature = sign_xades_detached([("1.2.3.4", b"doc")], s)
    value = signature.find(".//{http://www.w3.org/2000/09/xmldsig#}Manifest//"
                           "{http://www.w3.org/2000/09/xmldsig#}DigestValue")
    assert value is not None
    value.text = "AAAA" + (value.text or "")[4:]
    with pytest.raises(SignatureInvalid):
        verify_xades_detached(etree.fromstring(etree.tostring(signature)), {"1.2.3.4": b"doc"}, [ca], NOW)
