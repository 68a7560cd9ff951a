"""The CPS through PKCS#11: the only python-pkcs11 importer of Relais.

The module is the ANS Cryptolib CPS on a workstation (its path in ``cards.pkcs11_module``) and SoftHSM2 in tests.
The private keys never leave the token: ``Pkcs11Signer.sign`` hands the data to ``C_Sign`` with a hashing
mechanism (``SHA256_RSA_PKCS`` or ``SHA256_RSA_PKCS_PSS``: a CPS4 signs with PSS).

PIN attempts: PKCS#11 only exposes token flags (``USER_PIN_COUNT_LOW``, ``USER_PIN_FINAL_TRY``,
``USER_PIN_LOCKED``), so "tries left" is 3 with no flag, 2 when low, 1 on the final try and 0 when locked. SoftHSM2
raises the "low" flag after a wrong PIN but never locks, so blocked cards are tested with the virtual CPS.

Every call into the module holds one lock: a Cryptolib is not promised to be thread safe, and the service calls
from worker threads.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import MGF, Attribute, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11e

from agent.cards.cps import (
    CPS_PIN_TRIES,
    Purpose,
    card_blocked,
    cps_absent,
    holder_from_certificate,
    not_logged_in,
    pin_refused,
)
from agent.domain.cps import CpsHolder
from agent.domain.signing import SignatureAlgorithm
from agent.errors import ConfigError, Unavailable
from agent.logs import get_logger

log = get_logger("cards.pkcs11")

_MODULE_LOCK = threading.RLock()
_LIBS: dict[str, Any] = {}


def tries_left_from_flags(flags: int) -> int:
    if flags & TokenFlag.USER_PIN_LOCKED:
        return 0
    if flags & TokenFlag.USER_PIN_FINAL_TRY:
        return 1
    if flags & TokenFlag.USER_PIN_COUNT_LOW:
        return CPS_PIN_TRIES - 1
    return CPS_PIN_TRIES


def load_module(path: str) -> Any:
    """python-pkcs11 keeps one initialised library per process; so do we."""
    with _MODULE_LOCK:
        if path not in _LIBS:
            try:
                _LIBS[path] = pkcs11.lib(path)
            except (OSError, RuntimeError, p11e.PKCS11Error) as exc:
                raise ConfigError(f"module PKCS#11 impossible à charger ({exc})", key="cards.pkcs11_module") from exc
        return _LIBS[path]


@dataclass(frozen=True, slots=True)
class KeyLabels:
    authentication: str = "CPS_PRIV_AUT"
    signature: str = "CPS_PRIV_SIG"


class Pkcs11Signer:
    """Signs with the token's signature key through an open, logged-in session."""

    def __init__(self, token: Pkcs11CpsToken, key: Any, certificate_der: bytes, algorithm: SignatureAlgorithm):
        self._token = token
        self._key = key
        self._certificate_der = certificate_der
        self._algorithm = algorithm

    @property
    def certificate_der(self) -> bytes:
        return self._certificate_der

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._algorithm

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        algorithm = algorithm or self._algorithm
        with _MODULE_LOCK:
            self._token.require_session()
            try:
                if algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
                    return bytes(self._key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                                                mechanism_param=(Mechanism.SHA256, MGF.SHA256, 32)))
                return bytes(self._key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))
            except (p11e.TokenNotPresent, p11e.DeviceRemoved, p11e.SessionClosed, p11e.SessionHandleInvalid) as exc:
                self._token.forget_session()
                raise cps_absent() from exc
            except p11e.UserNotLoggedIn as exc:
                self._token.forget_session()
                raise not_logged_in() from exc
            except p11e.PKCS11Error as exc:
                raise Unavailable(f"La carte CPS a refusé la signature ({type(exc).__name__}).",
                                  code="cps_error") from exc


class Pkcs11CpsToken:
    """One token (one CPS) of a PKCS#11 module, found by label or by holding the signature key's label."""

    def __init__(self, module_path: str, *, token_label: str = "", labels: KeyLabels | None = None,
                 algorithm: str = "auto") -> None:
        self._lib = load_module(module_path)
        self._token_label = token_label
        self._labels = labels or KeyLabels()
        self._algorithm_choice = algorithm
        self._session: Any = None
        self._signers: dict[str, Pkcs11Signer] = {}
        self._holder: CpsHolder | None = None
        self._token = self._find_token()

    # --- discovery -------------------------------------------------------------------------------------

    def _find_token(self) -> Any:
        with _MODULE_LOCK:
            try:
                slots = self._lib.get_slots(token_present=True)
            except p11e.PKCS11Error as exc:
                raise Unavailable("Module de la carte CPS (PKCS#11) en erreur.", code="cps_error") from exc
            for slot in slots:
                try:
                    token = slot.get_token()
                except (p11e.TokenNotPresent, p11e.TokenNotRecognised, p11e.DeviceRemoved):
                    continue
                if self._token_label and token.label.strip() != self._token_label:
                    continue
                return token
        raise cps_absent()

    @staticmethod
    def present(module_path: str, token_label: str = "") -> bool:
        """Is a (matching) token in a slot? Cheap: used by the presence poller when PC/SC is off."""
        lib = load_module(module_path)
        with _MODULE_LOCK:
            try:
                for slot in lib.get_slots(token_present=True):
                    token = slot.get_token()
                    if not token_label or token.label.strip() == token_label:
                        return True
            except p11e.PKCS11Error:
                return False
        return False

    def _certificates(self, session: Any) -> list[tuple[bytes, bytes]]:
        """(CKA_ID, DER) of every certificate on the token; public objects, readable without the PIN."""
        found = []
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
            try:
                key_id = bytes(obj[Attribute.ID])
            except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
                key_id = b""
            found.append((key_id, bytes(obj[Attribute.VALUE])))
        return found

    # --- CpsToken ---------------------------------------------------------------------------------------

    def holder(self) -> CpsHolder:
        if self._holder is None:
            with _MODULE_LOCK:
                try:
                    with self._token.open() as session:
                        certificates = self._certificates(session)
                except (p11e.TokenNotPresent, p11e.DeviceRemoved) as exc:
                    raise cps_absent() from exc
            if not certificates:
                raise Unavailable("La carte CPS ne contient aucun certificat lisible.", code="cps_error")
            self._holder = holder_from_certificate(certificates[0][1])
        return self._holder

    def pin_tries_left(self) -> int | None:
        with _MODULE_LOCK:
            try:
                flags = self._refreshed_token().flags
            except p11e.PKCS11Error:
                return None
        return tries_left_from_flags(int(flags))

    def _refreshed_token(self) -> Any:
        # Token info (its flags) is read when the Token object is made: ask the slot again.
        token = self._token.slot.get_token()
        self._token = token
        return token

    @property
    def logged_in(self) -> bool:
        return self._session is not None

    def login(self, pin: str) -> None:
        with _MODULE_LOCK:
            if self._session is not None:
                return
            if tries_left_from_flags(int(self._refreshed_token().flags)) == 0:
                raise card_blocked()
            try:
                session = self._token.open(user_pin=pin)
            except p11e.PinIncorrect as exc:
                raise pin_refused(self.pin_tries_left()) from exc
            except p11e.PinLocked as exc:
                raise card_blocked() from exc
            except (p11e.PinLenRange, p11e.PinInvalid) as exc:
                raise pin_refused(self.pin_tries_left()) from exc
            except (p11e.TokenNotPresent, p11e.DeviceRemoved) as exc:
                raise cps_absent() from exc
            except p11e.UserAlreadyLoggedIn:
                session = self._token.open()
            try:
                self._signers = {"signature": self._make_signer(session, self._labels.signature)}
            except BaseException:
                session.close()
                raise
            self._session = session
        log.info("CPS : session ouverte")

    def _make_signer(self, session: Any, label: str) -> Pkcs11Signer:
        try:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        except p11e.NoSuchKey as exc:
            raise Unavailable(f"Clé « {label} » absente de la carte CPS.", code="cps_error") from exc
        try:
            key_id = bytes(key[Attribute.ID])
        except p11e.PKCS11Error:
            key_id = b""
        certificates = self._certificates(session)
        matching = [der for cid, der in certificates if key_id and cid == key_id]
        if not matching and not certificates:
            raise Unavailable("Certificat de signature absent de la carte CPS.", code="cps_error")
        der = (matching or [certificates[0][1]])[0]
        return Pkcs11Signer(self, key, der, self._choose_algorithm())

    def _choose_algorithm(self) -> SignatureAlgorithm:
        if self._algorithm_choice != "auto":
            return SignatureAlgorithm(self._algorithm_choice)
        try:
            mechanisms = set(self._token.slot.get_mechanisms())
        except p11e.PKCS11Error:
            return SignatureAlgorithm.RSA_PKCS1V15_SHA256
        if Mechanism.SHA256_RSA_PKCS not in mechanisms and Mechanism.SHA256_RSA_PKCS_PSS in mechanisms:
            return SignatureAlgorithm.RSA_PSS_SHA256
        return SignatureAlgorithm.RSA_PKCS1V15_SHA256

    def require_session(self) -> None:
        if self._session is None:
            raise not_logged_in()

    def forget_session(self) -> None:
        self._session = None
        self._signers = {}

    def logout(self) -> None:
        with _MODULE_LOCK:
            session, self._session, self._signers = self._session, None, {}
            if session is not None:
                with contextlib.suppress(p11e.PKCS11Error):  # the card is gone: nothing left to close
                    session.close()
        log.info("CPS : session fermée")

    def signer(self, purpose: Purpose = "signature") -> Pkcs11Signer:
        # Called on the event loop at each request: a signer already made is handed out without the module lock,
        # which a signature in progress holds for as long as the card takes. A session that ends meanwhile is
        # caught by the signer itself (``require_session`` under the lock).
        known = self._signers.get(purpose)
        if known is not None and self._session is not None:
            return known
        with _MODULE_LOCK:
            if self._session is None:
                raise not_logged_in()
            if purpose not in self._signers:
                label = self._labels.authentication if purpose == "authentication" else self._labels.signature
                self._signers[purpose] = self._make_signer(self._session, label)
            return self._signers[purpose]

    def close(self) -> None:
        self.logout()
