"""A Signer over a software key file: the VIHF structure certificate, and the demo signer until a CPS is in.

The production CPS Signer (PKCS#11) lives in ``agent/cards``; this one reads a PEM key and certificate (the
structure's certificate for indirect VIHF authentication, or a sandbox-issued one in demo and tests).
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agent.domain.signing import SignatureAlgorithm
from agent.errors import ConfigError


class KeyFileSigner:
    """Signs with an RSA key held in memory (read from a PEM file)."""

    def __init__(self, key: rsa.RSAPrivateKey, certificate: x509.Certificate,
                 algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_PKCS1V15_SHA256) -> None:
        self._key = key
        self._cert_der = certificate.public_bytes(serialization.Encoding.DER)
        self._algorithm = algorithm

    @classmethod
    def from_files(cls, cert_path: Path, key_path: Path, *,
                   algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_PKCS1V15_SHA256) -> KeyFileSigner:
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"certificat ou clé illisible : {exc}", path=str(cert_path)) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError("une clé RSA est attendue", path=str(key_path))
        return cls(key, cert, algorithm)

    @property
    def certificate_der(self) -> bytes:
        return self._cert_der

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._algorithm

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        algorithm = algorithm or self._algorithm
        if algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return self._key.sign(data, pss, hashes.SHA256())
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
