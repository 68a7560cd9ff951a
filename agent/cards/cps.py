"""The CPS seen by the rest of the agent: a token that identifies its holder, takes a PIN and signs.

Two implementations: ``Pkcs11CpsToken`` (the ANS Cryptolib CPS on a workstation, SoftHSM2 in tests) and
``SoftwareCpsToken`` (the demo's virtual CPS). Over PC/SC, ``is_cps`` recognises a CPS3 in a reader by selecting its
PKCS#15 application; what the card holds is then read through PKCS#11, never by our own APDUs (the CPS protocol
beyond SELECT belongs to the Cryptolib).

PIN rules for the doctor: 3 attempts on a CPS; a blocked card needs its PUK (unblocking is outside Relais). The PIN
is only passed through to the token: never stored, never logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from cryptography import x509

from agent.domain.apdu import Command, Response, select_aid
from agent.domain.cps import CPS3_AID, CPS3_CONTACTLESS_AID, CpsHolder, holder_from_subject
from agent.domain.signing import Signer
from agent.errors import InvalidInput, PinRefused, Unavailable

CPS_PIN_TRIES = 3

# "signature": the non-repudiation key (documents, XAdES, CMS); "authentication": the key that proves who is
# connected (TLS client authentication, authentication assertions).
Purpose = Literal["signature", "authentication"]

Transmit = Callable[[Command], Response]


class CpsToken(Protocol):
    """One CPS as a key store. Calls may block on a card: the service runs them in a thread."""

    def holder(self) -> CpsHolder: ...

    def pin_tries_left(self) -> int | None:
        """Attempts left before the card blocks (None: the module does not say)."""
        ...

    @property
    def logged_in(self) -> bool: ...

    def login(self, pin: str) -> None:
        """Raises ``PinRefused`` (with tries left) or ``Unavailable(code="cps_blocked")``."""
        ...

    def logout(self) -> None: ...

    def signer(self, purpose: Purpose = "signature") -> Signer:
        """The key's signer; raises ``Unavailable(code="cps_not_logged_in")`` before login."""
        ...

    def close(self) -> None: ...


def is_cps(transmit: Transmit) -> bool:
    """True when the card in the reader answers SELECT of a CPS3 application (contact or contactless)."""
    return any(transmit(select_aid(aid)).ok for aid in (CPS3_AID, CPS3_CONTACTLESS_AID))


def holder_from_certificate(der: bytes) -> CpsHolder:
    cert = x509.load_der_x509_certificate(der)
    return holder_from_subject((attr.oid.dotted_string, str(attr.value)) for attr in cert.subject)


def check_pin_format(pin: str) -> None:
    """A CPS PIN is 4 to 8 digits; anything else is refused before it costs the doctor an attempt."""
    if not isinstance(pin, str) or not (pin.isascii() and pin.isdigit()) or not 4 <= len(pin) <= 8:
        raise InvalidInput.field("pin", "Le code PIN de la carte CPS compte 4 à 8 chiffres.")


def pin_refused(tries_left: int | None) -> PinRefused:
    if tries_left is None:
        detail = "Code PIN incorrect."
    elif tries_left == 1:
        detail = "Code PIN incorrect : il reste 1 essai avant le blocage de la carte CPS."
    else:
        detail = f"Code PIN incorrect : il reste {tries_left} essais avant le blocage de la carte CPS."
    return PinRefused(detail, tries_left=tries_left)


def card_blocked() -> Unavailable:
    return Unavailable("Carte CPS bloquée après trop de codes PIN faux : débloquez-la avec son code PUK "
                       "(outil de gestion de la CPS) puis réinsérez-la.", code="cps_blocked")


def not_logged_in() -> Unavailable:
    return Unavailable("Carte CPS présente mais code PIN non saisi : saisissez le code PIN pour signer.",
                       code="cps_not_logged_in")


def cps_absent() -> Unavailable:
    return Unavailable("Aucune carte CPS dans les lecteurs : insérez votre carte CPS.", code="cps_absent")
