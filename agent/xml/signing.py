"""XML-DSig and XAdES through the ``Signer`` protocol: the only signxml adapter of Relais.

signxml and cryptography expect an ``RSAPrivateKey``; ``SignerKey`` is one whose ``sign()`` calls
``Signer.sign``, so a CPS signs through PKCS#11 without its key ever leaving the card. Every function here
blocks while the signer works (a card may take a second): call them from a thread, never on the event loop.

- ``sign_enveloped``: plain XML-DSig enveloped (the VIHF SAML assertion).
- ``sign_xades_enveloped``: XAdES-BES enveloped (``/v1/sign`` "xades-enveloped").
- ``sign_xades_detached``: IHE DSG detached signature: a ``ds:Manifest`` (Id ``IHEManifest``) holds one
  reference per URI with the SHA-256 of the raw content; the signature signs the manifest, the XAdES signed
  properties and the key info.
- ``verify_*``: used by the DMP simulator and the tests; the signed element returned is the only one a caller
  may trust (signature-wrapping defence: never read the original tree after verifying).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import NoDigestInfo, Prehashed
from lxml import etree
from signxml import (  # type: ignore[attr-defined]
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)
from signxml.exceptions import SignXMLException
from signxml.signer import SignatureReference
from signxml.xades.xades import (
    XAdESDataObjectFormat,
    XAdESSignatureConfiguration,
    XAdESSigner,
    XAdESVerifier,
)

from agent.domain.signing import SignatureAlgorithm, Signer
from agent.errors import InvalidInput

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
MANIFEST_ID = "IHEManifest"
MANIFEST_TYPE = "http://www.w3.org/2000/09/xmldsig#Manifest"
SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"
COMMITMENT_SOURCE = "1.2.840.10065.1.12.1.14"  # ASTM E1762 "Source" (author's signature)
EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0


class SignatureInvalid(InvalidInput):
    code = "signature_invalid"
    title = "Signature invalide"


class SignerKey(rsa.RSAPrivateKey):
    """An RSAPrivateKey facade over a ``Signer``: only ``sign`` and ``public_key`` work, as on a card."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self.certificate = x509.load_der_x509_certificate(signer.certificate_der)
        public = self.certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise InvalidInput("Le certificat de signature n'a pas de clé RSA.")
        self._public = public

    def sign(self, data: bytes, padding: asym_padding.AsymmetricPadding,
             algorithm: Prehashed | hashes.HashAlgorithm | NoDigestInfo) -> bytes:
        if not isinstance(algorithm, hashes.SHA256):
            raise InvalidInput("Seul SHA-256 est pris en charge pour la signature.")
        if isinstance(padding, asym_padding.PSS):
            return self._signer.sign(data, SignatureAlgorithm.RSA_PSS_SHA256)
        if isinstance(padding, asym_padding.PKCS1v15):
            return self._signer.sign(data, SignatureAlgorithm.RSA_PKCS1V15_SHA256)
        raise InvalidInput("Bourrage RSA non pris en charge.")

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: asym_padding.AsymmetricPadding) -> bytes:
        raise NotImplementedError("a signing key never decrypts")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise NotImplementedError("the private key stays in its token")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise NotImplementedError("the private key stays in its token")

    def __copy__(self) -> SignerKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> SignerKey:
        return self


def _signature_method(signer: Signer) -> SignatureMethod:
    if signer.algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
        return SignatureMethod.SHA256_RSA_MGF1
    return SignatureMethod.RSA_SHA256


def _wrap(exc: Exception, what: str) -> InvalidInput:
    return InvalidInput(f"Signature {what} impossible : {exc}")


def sign_enveloped(root: etree._Element, signer: Signer) -> etree._Element:
    """XML-DSig enveloped signature of ``root`` (RSA-SHA256 or PSS, exc-c14n); returns the signed root.

    The root's ``ID``/``Id`` attribute is the reference (a SAML assertion has ``ID``); the ``ds:Signature``
    goes where a ``<ds:Signature Id="placeholder"/>`` child sits, else last.
    """
    key = SignerKey(signer)
    xml_signer = XMLSigner(method=SignatureConstructionMethod.enveloped,
                           signature_algorithm=_signature_method(signer),
                           digest_algorithm=DigestAlgorithm.SHA256, c14n_algorithm=EXC_C14N)
    ref_id = root.get("ID") or root.get("Id")
    try:
        return xml_signer.sign(root, key=key, cert=[key.certificate],
                               reference_uri=[f"#{ref_id}"] if ref_id else None,
                               id_attribute="ID" if root.get("ID") else None)
    except SignXMLException as exc:
        raise _wrap(exc, "XML") from exc


def sign_xades_enveloped(root: etree._Element, signer: Signer) -> etree._Element:
    """XAdES-BES enveloped signature of the whole document ``root``; returns the signed root."""
    key = SignerKey(signer)
    xades = _XAdESSigner(method=SignatureConstructionMethod.enveloped,
                         signature_algorithm=_signature_method(signer),
                         digest_algorithm=DigestAlgorithm.SHA256, c14n_algorithm=EXC_C14N)
    try:
        return xades.sign(root, key=key, cert=[key.certificate], always_add_key_value=False)
    except SignXMLException as exc:
        raise _wrap(exc, "XAdES") from exc


class _XAdESSigner(XAdESSigner):  # type: ignore[misc]
    """signxml's XAdES signer, with an explicit exc-c14n transform on the SignedProperties and KeyInfo
    references.

    signxml digests those with the configured c14n but writes no Transforms, so a verifier falls back to
    inclusive c14n and the digests would not match: the transform makes the choice explicit.
    """

    def _add_reference_to_signed_info(self, sig_root: etree._Element, node_to_reference: etree._Element,
                                      **attrs: str) -> None:
        super()._add_reference_to_signed_info(sig_root, node_to_reference, **attrs)  # type: ignore[no-untyped-call]
        reference = sig_root.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")[-1]
        transforms = etree.Element(f"{{{DS}}}Transforms")
        etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=EXC_C14N.value)
        reference.insert(0, transforms)


class _DsgSigner(_XAdESSigner):
    """XAdES detached over an IHE DSG manifest: signs the manifest, then moves it into a ds:Object."""

    def __init__(self, manifest: etree._Element, **kwargs: Any) -> None:
        super().__init__(data_object_format=XAdESDataObjectFormat(Description="IHE DSG manifest",
                                                                  MimeType="text/xml"), **kwargs)
        self._manifest = manifest
        self.signature_annotators.insert(1, self._add_manifest_object)
        self.signed_data_object_properties_annotators.append(self._add_commitment)

    def _add_commitment(self, signed_data_object_properties: etree._Element, sig_root: etree._Element,
                        signing_settings: Any) -> None:
        """IHE DSG: the purpose of the signature, from ASTM E1762 (here "Source": the author's signature)."""
        indication = etree.SubElement(signed_data_object_properties, f"{{{XADES}}}CommitmentTypeIndication")
        type_id = etree.SubElement(indication, f"{{{XADES}}}CommitmentTypeId")
        etree.SubElement(type_id, f"{{{XADES}}}Identifier").text = f"urn:oid:{COMMITMENT_SOURCE}"
        etree.SubElement(type_id, f"{{{XADES}}}Description").text = "Source"
        etree.SubElement(indication, f"{{{XADES}}}AllSignedDataObjects")

    def _unpack(self, data: Any, references: Any) -> Any:
        sig_root = etree.Element(f"{{{DS}}}Signature", nsmap={"ds": DS})
        return sig_root, sig_root, [self._manifest], [SignatureReference(URI=f"#{MANIFEST_ID}")]

    def _add_manifest_object(self, sig_root: etree._Element, signing_settings: Any) -> None:
        obj = etree.SubElement(sig_root, f"{{{DS}}}Object")
        obj.append(self._manifest)
        for ref in sig_root.iterfind(f"{{{DS}}}SignedInfo/{{{DS}}}Reference"):
            if ref.get("URI") == f"#{MANIFEST_ID}":
                ref.set("Type", MANIFEST_TYPE)


# The DigestValue of a manifest reference that names an object rather than digesting bytes: the submission set of
# an IHE DSG signature (it has no content of its own). DRIMbox (XadesSign.java) and an independent PHP XDS client
# both write "AA==" there.
PLACEHOLDER_DIGEST = "AA=="


def _digest(content: bytes | None) -> str:
    return PLACEHOLDER_DIGEST if content is None else base64.b64encode(hashlib.sha256(content).digest()).decode()


def build_manifest(references: Sequence[tuple[str, bytes | None]]) -> etree._Element:
    """One reference per (URI, content); content None: a reference by name (digest ``PLACEHOLDER_DIGEST``)."""
    manifest = etree.Element(f"{{{DS}}}Manifest", nsmap={"ds": DS}, Id=MANIFEST_ID)
    for uri, content in references:
        ref = etree.SubElement(manifest, f"{{{DS}}}Reference", URI=uri)
        etree.SubElement(ref, f"{{{DS}}}DigestMethod", Algorithm=SHA256_URI)
        etree.SubElement(ref, f"{{{DS}}}DigestValue").text = _digest(content)
    return manifest


def sign_xades_detached(references: Sequence[tuple[str, bytes | None]], signer: Signer) -> etree._Element:
    """IHE DSG detached signature over ``references`` (URI, content or None for a reference by name, see
    ``build_manifest``); returns the ``ds:Signature`` element."""
    if not references:
        raise InvalidInput("Rien à signer.")
    key = SignerKey(signer)
    dsg = _DsgSigner(build_manifest(references), method=SignatureConstructionMethod.detached,
                     signature_algorithm=_signature_method(signer), digest_algorithm=DigestAlgorithm.SHA256,
                     c14n_algorithm=EXC_C14N)
    try:
        signature: etree._Element = dsg.sign(b"", key=key, cert=[key.certificate], always_add_key_value=False)
    except SignXMLException as exc:
        raise _wrap(exc, "XAdES détachée") from exc
    return signature


# --- verification -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verified:
    signed: etree._Element  # the element the signature covers: the only one to read after verification
    certificate: x509.Certificate


def _embedded_certificate(signature: etree._Element) -> x509.Certificate:
    node = signature.find(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
    if node is None or not (node.text or "").strip():
        raise SignatureInvalid("Signature sans certificat X.509.")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join((node.text or "").split())))
    except ValueError as exc:
        raise SignatureInvalid("Certificat de signature illisible.") from exc


def check_certificate(cert: x509.Certificate, trusted: Sequence[x509.Certificate], now: dt.datetime) -> None:
    """The certificate is issued by one of ``trusted`` and valid at ``now``, else SignatureInvalid."""
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SignatureInvalid("Certificat de signature expiré ou pas encore valide.")
    for ca in trusted:
        if cert == ca:
            return
        try:
            cert.verify_directly_issued_by(ca)
            return
        except (ValueError, TypeError, CryptoInvalidSignature):
            continue
    raise SignatureInvalid("Certificat de signature émis par une autorité non reconnue.")


def _find_signature(root: etree._Element) -> etree._Element:
    if root.tag == f"{{{DS}}}Signature":
        return root
    found = root.findall(f".//{{{DS}}}Signature")
    if len(found) != 1:
        raise SignatureInvalid(f"Une signature exactement est attendue ({len(found)} trouvée(s)).")
    return found[0]


def verify_enveloped(root: etree._Element, trusted: Sequence[x509.Certificate], now: dt.datetime, *,
                     xades: bool = False, id_attribute: str | None = None) -> Verified:
    """Verify an enveloped XML-DSig (or XAdES) signature on ``root`` against trusted issuers."""
    cert = _embedded_certificate(_find_signature(root))
    check_certificate(cert, trusted, now)
    try:
        if xades:
            results = XAdESVerifier().verify(copy.deepcopy(root), x509_cert=cert,
                                             expect_config=XAdESSignatureConfiguration())
            result = results[0] if isinstance(results, list) else results
        else:
            verifier = XMLVerifier()
            single = verifier.verify(copy.deepcopy(root), x509_cert=cert, id_attribute=id_attribute)
            result = single[0] if isinstance(single, list) else single
    except SignXMLException as exc:
        raise SignatureInvalid(f"Signature XML invalide : {exc}") from exc
    signed = result.signed_xml
    if signed is None or signed.tag != root.tag:
        raise SignatureInvalid("La signature ne couvre pas l'élément attendu.")
    # Signature wrapping: the reference must designate this very element, not a signed copy hidden elsewhere.
    id_name = id_attribute or ("ID" if root.get("ID") is not None else "Id")
    if root.get(id_name) is not None and signed.get(id_name) != root.get(id_name):
        raise SignatureInvalid("La signature désigne un autre élément que celui présenté (enveloppement).")
    if len(root.findall(f".//{{{DS}}}Signature")) != 1:
        raise SignatureInvalid("Une signature exactement est attendue.")
    return Verified(signed, cert)


def verify_xades_detached(signature: etree._Element, contents: Mapping[str, bytes | None],
                          trusted: Sequence[x509.Certificate], now: dt.datetime) -> Verified:
    """Verify an IHE DSG signature: the XAdES signature over the manifest, then each manifest digest.

    ``contents`` maps every URI that must be covered to its bytes (None: a reference by name, whose digest is
    ``PLACEHOLDER_DIGEST``); a URI missing from the manifest, an extra one, or a digest that does not match is
    refused.
    """
    cert = _embedded_certificate(signature)
    check_certificate(cert, trusted, now)
    try:
        results = XAdESVerifier().verify(copy.deepcopy(signature), x509_cert=cert,
                                         expect_config=XAdESSignatureConfiguration(expect_references=3))
    except SignXMLException as exc:
        raise SignatureInvalid(f"Signature XAdES invalide : {exc}") from exc
    manifest = None
    for result in results if isinstance(results, list) else [results]:
        if result.signed_xml is not None and result.signed_xml.tag == f"{{{DS}}}Manifest":
            manifest = result.signed_xml
    if manifest is None or manifest.get("Id") != MANIFEST_ID:
        raise SignatureInvalid("La signature ne couvre pas de manifeste IHE DSG.")
    seen: set[str] = set()
    for ref in manifest.iterfind(f"{{{DS}}}Reference"):
        uri = ref.get("URI") or ""
        method = ref.find(f"{{{DS}}}DigestMethod")
        value = ref.find(f"{{{DS}}}DigestValue")
        if uri in seen or uri not in contents or method is None or method.get("Algorithm") != SHA256_URI:
            raise SignatureInvalid(f"Référence inattendue dans le manifeste : {uri}")
        expected = _digest(contents[uri])
        if value is None or not hmac.compare_digest(expected, (value.text or "").strip()):
            raise SignatureInvalid(f"Empreinte fausse pour {uri} : le contenu a changé depuis la signature.")
        seen.add(uri)
    missing = set(contents) - seen
    if missing:
        raise SignatureInvalid(f"Éléments non couverts par la signature : {', '.join(sorted(missing))}")
    return Verified(manifest, cert)
