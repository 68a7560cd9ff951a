"""CMS (PKCS#7) detached signatures through the Signer seam: the only asn1crypto user of Relais.

cryptography's PKCS7 builder wants a private key it owns; a CPS key stays on the card, so the SignedData is
built here: signed attributes (content type, message digest, signing time) are DER-encoded as a SET and handed to
``Signer.sign``, which hashes and signs them on the card (RFC 5652 §5.4).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from asn1crypto import algos, cms, x509

from agent.domain.signing import SignatureAlgorithm, Signer


def sign_detached(data: bytes, signer: Signer, signing_time: datetime) -> bytes:
    """A DER ContentInfo(SignedData) with no encapsulated content, one signer, the signer's certificate."""
    certificate = x509.Certificate.load(signer.certificate_der)
    signed_attrs = cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(data).digest()]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": signing_time})]}),
    ])
    algorithm = signer.algorithm
    signature = signer.sign(signed_attrs.dump(), algorithm)
    if algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
        sig_alg = algos.SignedDigestAlgorithm({
            "algorithm": "rsassa_pss",
            "parameters": algos.RSASSAPSSParams({
                "hash_algorithm": {"algorithm": "sha256"},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
                "salt_length": 32,
            }),
        })
    else:
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": certificate.issuer, "serial_number": certificate.serial_number})}),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signed_attrs": signed_attrs,
        "signature_algorithm": sig_alg,
        "signature": signature,
    })
    signed_data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "data"},
        "certificates": [certificate],
        "signer_infos": [signer_info],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def signed_attributes_of(der: bytes) -> tuple[bytes, bytes, bytes]:
    """(signed attributes as signed, signature, message digest) of a detached CMS: for verification in tests."""
    info = cms.ContentInfo.load(der)
    signer_info = info["content"]["signer_infos"][0]
    attrs = signer_info["signed_attrs"]
    digest = b""
    for attr in attrs:
        if attr["type"].native == "message_digest":
            digest = bytes(attr["values"][0].native)
    raw = attrs.dump()
    # Signed as a SET (tag 0x31), stored as [0] IMPLICIT: same bytes after the tag.
    return b"\x31" + raw[1:], bytes(signer_info["signature"].native), digest
