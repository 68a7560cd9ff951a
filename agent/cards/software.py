"""Software keys behind the Signer seam: the demo's virtual CPS and a plain software signer.

Never used with a real card: ``relais demo`` and the tests build these from the sandbox PKI. The virtual CPS
behaves like a card for the doctor: a PIN (compared in constant time), 3 attempts, blocked after the third wrong
one, a session that ends at logout.
"""

from __future__ import annotations

import hashlib
import hmac
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agent.cards.cps import (
    CPS_PIN_TRIES,
    Purpose,
    card_blocked,
    holder_from_certificate,
    not_logged_in,
    pin_refused,
)
from agent.domain.cps import CpsHolder
from agent.domain.signing import SignatureAlgorithm


class SoftwareSigner:
    def __init__(self, key: rsa.RSAPrivateKey, certificate_der: bytes,
                 algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_PKCS1V15_SHA256) -> None:
        self._key = key
        self._certificate_der = certificate_der
        self._algorithm = algorithm

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes) -> SoftwareSigner:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("an RSA key is expected")
        cert = x509.load_pem_x509_certificate(cert_pem)
        return cls(key, cert.public_bytes(serialization.Encoding.DER))

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


def _pin_digest(pin: str) -> bytes:
    return hashlib.sha256(b"relais-virtual-cps:" + pin.encode()).digest()


class SoftwareCpsToken:
    """A virtual CPS: the demo doctor's software key and certificate, guarded by a PIN with 3 attempts."""

    def __init__(self, signer: SoftwareSigner, pin: str) -> None:
        self._signer = signer
        self._pin = _pin_digest(pin)
        self._tries = CPS_PIN_TRIES
        self._logged_in = False
        self._lock = threading.Lock()
        self._holder = holder_from_certificate(signer.certificate_der)

    def holder(self) -> CpsHolder:
        return self._holder

    def pin_tries_left(self) -> int | None:
        return self._tries

    @property
    def logged_in(self) -> bool:
        return self._logged_in

    def login(self, pin: str) -> None:
        with self._lock:
            if self._tries == 0:
                raise card_blocked()
            if not hmac.compare_digest(_pin_digest(pin), self._pin):
                self._tries -= 1
                if self._tries == 0:
                    raise card_blocked()
                raise pin_refused(self._tries)
            self._tries = CPS_PIN_TRIES
            self._logged_in = True

    def logout(self) -> None:
        self._logged_in = False

    def signer(self, purpose: Purpose = "signature") -> SoftwareSigner:
        # The demo card has one key for both purposes.
        if not self._logged_in:
            raise not_logged_in()
        return self._signer

    def close(self) -> None:
        self._logged_in = False
