"""Joining the practice with a one-time code: the code authenticates both sides of the exchange.

Pure functions; the peer listener (``server.py``) and `relais practice join` (``practice.py``) run them.

The code is 80 random bits written as 16 Crockford base32 characters (``K7QD-M2XP-9RTA-W4HZ``): long enough that
nobody can guess it online, nor search it offline from a recorded exchange. Both sides derive a MAC key from it
(HKDF-SHA256); the inviting workstation stores only that key, with the invite's expiry, and forgets it once used.

The exchange runs over TLS, where the joiner cannot yet check the server's certificate. Each MAC therefore binds
the SHA-256 of the server certificate the joiner saw (tls-server-end-point channel binding): a machine in between,
which must show its own certificate, cannot produce or relay a valid MAC.

    joiner -> CA    name, CSR, nonce_j, MAC(K, "join" | cert_hash | nonce_j | name | sha256(CSR))
    CA -> joiner    nonce_s, CA, certificate, CRL, MAC(K, "welcome" | cert_hash | nonce_j | nonce_s | name | ...)

The CA answers a wrong, expired or used code with the same bare refusal, and checks the joiner's MAC before it
sends anything, so a party without the code learns nothing. The joiner checks the CA's MAC before it trusts the
CA certificate, so a listener that does not know the code cannot enrol it in another "practice". The invite is
marked used in the same transaction that records the new member: a code works once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.errors import AccessRefused, InvalidInput

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_CODE_CHARS = 16
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
PROTOCOL = b"relais-join-v1"


def new_code() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_CHARS))
    return "-".join(chars[i:i + 4] for i in range(0, _CODE_CHARS, 4))


def normalise_code(code: str) -> str:
    text = code.upper().replace("-", "").replace(" ", "").translate(_CONFUSABLE)
    if len(text) != _CODE_CHARS or any(c not in _ALPHABET for c in text):
        raise InvalidInput.field("code", "Code d'invitation mal formé (16 caractères, ex. K7QD-M2XP-9RTA-W4HZ).")
    return text


def code_key(code: str) -> bytes:
    """The MAC key both sides derive from the code; the inviting side stores only this."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=PROTOCOL, info=b"mac").derive(
        normalise_code(code).encode())


def invite_id(key: bytes) -> str:
    """A public handle of an invite (for listing and revoking it), not usable to test a code offline cheaply:
    it is derived from the 256-bit key, itself from 80 random bits."""
    return hashlib.sha256(b"invite-id|" + key).hexdigest()[:12]


def _transcript(label: bytes, parts: Iterable[bytes]) -> bytes:
    out = bytearray(PROTOCOL + b"|" + label)
    for part in parts:
        out += len(part).to_bytes(4, "big") + part
    return bytes(out)


def _mac(key: bytes, label: bytes, parts: Iterable[bytes]) -> str:
    return hmac.new(key, _transcript(label, parts), hashlib.sha256).hexdigest()


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def new_nonce() -> str:
    return secrets.token_hex(16)


def join_mac(key: bytes, server_cert_hash: bytes, nonce_j: str, name: str, csr_pem: bytes) -> str:
    return _mac(key, b"join", [server_cert_hash, nonce_j.encode(), name.encode(), digest(csr_pem)])


def welcome_mac(key: bytes, server_cert_hash: bytes, nonce_j: str, nonce_s: str, name: str, ca_pem: bytes,
                cert_pem: bytes, crl_pem: bytes) -> str:
    return _mac(key, b"welcome", [server_cert_hash, nonce_j.encode(), nonce_s.encode(), name.encode(),
                                  digest(ca_pem), digest(cert_pem), digest(crl_pem)])


def match_invite(keys: Iterable[tuple[str, bytes]], server_cert_hash: bytes, nonce_j: str, name: str,
                 csr_pem: bytes, mac: str) -> tuple[str, bytes]:
    """The (id, key) of the live invite whose code made ``mac``; every invite is compared, in constant time,
    and a miss raises the same bare refusal whatever the reason."""
    found: tuple[str, bytes] | None = None
    for invite, key in keys:
        expected = join_mac(key, server_cert_hash, nonce_j, name, csr_pem)
        if hmac.compare_digest(expected.encode(), mac.encode()) and found is None:
            found = (invite, key)
    if found is None:
        raise refused()
    return found


def check_welcome(key: bytes, server_cert_hash: bytes, nonce_j: str, nonce_s: str, name: str, ca_pem: bytes,
                  cert_pem: bytes, crl_pem: bytes, mac: str) -> None:
    expected = welcome_mac(key, server_cert_hash, nonce_j, nonce_s, name, ca_pem, cert_pem, crl_pem)
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        raise AccessRefused(
            "Le poste contacté ne connaît pas ce code (ou un intermédiaire s'est interposé) : adhésion abandonnée.",
            code="pairing_refused")


def refused() -> AccessRefused:
    return AccessRefused("Code d'invitation refusé (inconnu, expiré ou déjà utilisé).", code="pairing_refused")
