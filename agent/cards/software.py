"""The demo's virtual CPS: a software key (``agent.softkey``) behind a card's PIN rules.

Never used with a real card: ``relais demo`` and the tests build these from the sandbox PKI. The virtual CPS
behaves like a card for the doctor: a PIN (compared in constant time), 3 attempts, blocked after the third wrong
one, a session that ends at logout.
"""

from __future__ import annotations

import hashlib
import hmac
import threading

from agent.cards.cps import (
    CPS_PIN_TRIES,
    Purpose,
    card_blocked,
    holder_from_certificate,
    not_logged_in,
    pin_refused,
)
from agent.domain.cps import CpsHolder
from agent.softkey import SoftwareSigner


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
