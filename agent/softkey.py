"""A Signer over a software RSA key: the structure's certificate (VIHF, INSi), and the sandbox's keys.

The production CPS signer (PKCS#11, the key never leaves the card) lives in ``agent/cards``; this one holds the
key in memory. It is the one software implementation of the ``Signer`` protocol, shared by the DMP and INSi
clients (structure certificate) and the demo's virtual CPS.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agent.domain.signing import SignatureAlgorithm
from agent.errors import ConfigError


class SoftwareSigner:
    """Signs with an RSA key held in memory."""

    def __init__(self, key: rsa.RSAPrivateKey, certificate_der: bytes,
                 algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_PKCS1V15_SHA256) -> None:
        self._key = key
        self._certificate_der = certificate_der
        self._algorithm = algorithm

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes, *,
                 algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_PKCS1V15_SHA256) -> SoftwareSigner:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("an RSA key is expected")
        cert = x509.load_pem_x509_certificate(cert_pem)
        return cls(key, cert.public_bytes(serialization.Encoding.DER), algorithm)

    @classmethod
    def from_files(cls, cert_path: Path, key_path: Path, *,
                   algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_PKCS1V15_SHA256) -> SoftwareSigner:
        """From PEM files named in the configuration: a ConfigError names the file that cannot be used."""
        try:
            return cls.from_pem(key_path.read_bytes(), cert_path.read_bytes(), algorithm=algorithm)
        except OSError as exc:
            raise ConfigError(f"certificat ou clé illisible : {exc.strerror}", path=str(exc.filename)) from exc
        except ValueError as exc:
            raise ConfigError(f"certificat ou clé invalide (une clé RSA est attendue) : {exc}",
                              path=str(key_path)) from exc

    @property
    def certificate_der(self) -> bytes:
        return self._certificate_der

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._algorithm

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        algorithm = algorithm or self._algorithm
        if algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
            pad: padding.AsymmetricPadding = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        else:
            pad = padding.PKCS1v15()
        return self._key.sign(data, pad, hashes.SHA256())
