"""The Signer seam: who signs (a software key in the demo, the CPS through PKCS#11) is hidden behind it.

XAdES, XML-DSig (VIHF), CMS and raw signatures all call ``Signer.sign``; the private key never has to leave
the card. Implementations live in ``agent/cards`` (PKCS#11 CPS, software key); ``agent/xml`` adapts a Signer
to what signxml and cryptography expect.
"""

from __future__ import annotations

import enum
from typing import Protocol


class SignatureAlgorithm(enum.StrEnum):
    RSA_PKCS1V15_SHA256 = "rsa-pkcs1v15-sha256"
    RSA_PSS_SHA256 = "rsa-pss-sha256"  # CPS4 cards sign with PSS


class Signer(Protocol):
    @property
    def certificate_der(self) -> bytes:
        """The signing certificate, DER."""
        ...

    @property
    def algorithm(self) -> SignatureAlgorithm:
        """The algorithm this key signs with by default."""
        ...

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        """Sign ``data`` (hashing included); may block on a card: call from a thread, not the event loop."""
        ...
