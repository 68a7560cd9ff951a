"""Messages between the practice's agents, and the rules that make a forward count once. Pure code.

Every state-changing message (a forwarded order, a cancel) carries:

- ``order_id``: the order's identity, the same on every workstation it passes through; the holder stores an
  order id once (``routing_inbound``), so a resend after a lost acknowledgement is answered "already stored";
- ``at``: when the sender made the message; older than ``max_age`` or further ahead than ``max_skew`` is
  refused as stale (a recorded message cannot be played back later);
- ``nonce``: 128 random bits; the receiver records it in the same transaction that applies the message and
  ignores it when seen again (a replay within the freshness window). Nonces are kept longer than ``max_age``,
  so a replay is either recognised or stale.

Who sent a message is never in the message: it is the workstation named by the peer's certificate (mTLS).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent.clock import parse_rfc3339, rfc3339
from agent.errors import Conflict, InvalidInput

_NONCE = re.compile(r"^[0-9a-f]{32}$")
_ORDER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_RPPS = re.compile(r"^[0-9]{11}$|^8[0-9]{11}$")


@dataclass(frozen=True, slots=True)
class Freshness:
    max_age: timedelta = timedelta(minutes=5)
    max_skew: timedelta = timedelta(minutes=2)

    @property
    def keep_nonces(self) -> timedelta:
        return self.max_age + self.max_skew + timedelta(minutes=1)


def new_nonce() -> str:
    return secrets.token_hex(16)


def check_fresh(at: datetime, now: datetime, rules: Freshness) -> None:
    if at < now - rules.max_age or at > now + rules.max_skew:
        raise Conflict("Message périmé : refusé (horloges des postes à vérifier ?).", code="stale")


def _str(body: dict[str, Any], key: str, pattern: re.Pattern[str] | None = None) -> str:
    value = body.get(key)
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        raise InvalidInput.field(key, f"Champ « {key} » absent ou mal formé.")
    return value


def _at(body: dict[str, Any]) -> datetime:
    try:
        return parse_rfc3339(_str(body, "at"))
    except ValueError as exc:
        raise InvalidInput.field("at", "Horodatage mal formé.") from exc


@dataclass(frozen=True, slots=True)
class Forward:
    """An order handed to the workstation holding its author's CPS: its metadata, and the content (patient,
    document, visibility) in clear inside the mTLS channel, to be sealed again at once by the receiver."""

    order_id: str
    at: datetime
    nonce: str
    author_rpps: str
    order: dict[str, Any]  # NewOrder fields but the payload (ids fixed at creation travel unchanged)
    payload: bytes

    def to_json(self) -> dict[str, Any]:
        return {"type": "forward", "order_id": self.order_id, "at": rfc3339(self.at), "nonce": self.nonce,
                "author_rpps": self.author_rpps, "order": self.order,
                "payload_base64": base64.b64encode(self.payload).decode()}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Forward:
        if body.get("type") != "forward":
            raise InvalidInput.field("type", "Type de message inattendu.")
        order = body.get("order")
        if not isinstance(order, dict):
            raise InvalidInput.field("order", "Ordre absent.")
        try:
            payload = base64.b64decode(_str(body, "payload_base64"), validate=True)
        except ValueError as exc:
            raise InvalidInput.field("payload_base64", "Contenu mal encodé.") from exc
        return cls(_str(body, "order_id", _ORDER_ID), _at(body), _str(body, "nonce", _NONCE),
                   _str(body, "author_rpps", _RPPS), order, payload)


@dataclass(frozen=True, slots=True)
class Cancel:
    order_id: str
    at: datetime
    nonce: str

    def to_json(self) -> dict[str, Any]:
        return {"type": "cancel", "order_id": self.order_id, "at": rfc3339(self.at), "nonce": self.nonce}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Cancel:
        if body.get("type") != "cancel":
            raise InvalidInput.field("type", "Type de message inattendu.")
        return cls(_str(body, "order_id", _ORDER_ID), _at(body), _str(body, "nonce", _NONCE))


@dataclass(frozen=True, slots=True)
class Presence:
    """What an agent tells its peers: its name, the CPS it holds (RPPS) and whether logged in, where its peer
    listener is, the revocation list it knows, and the addresses of the peers it knows (hints)."""

    name: str
    port: int
    rpps: str | None
    logged_in: bool
    crl_number: int
    crl_pem: str | None = None
    peers: tuple[tuple[str, int, str], ...] = ()  # (host, port, name)
    at: datetime | None = None  # the sender's clock: forwards need clocks within the freshness window

    def to_json(self) -> dict[str, Any]:
        return {"type": "presence", "name": self.name, "port": self.port, "rpps": self.rpps,
                "logged_in": self.logged_in, "crl_number": self.crl_number, "crl_pem": self.crl_pem,
                "peers": [list(p) for p in self.peers], "at": rfc3339(self.at) if self.at else None}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Presence:
        if body.get("type") != "presence":
            raise InvalidInput.field("type", "Type de message inattendu.")
        port = body.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise InvalidInput.field("port", "Port mal formé.")
        rpps = body.get("rpps")
        if rpps is not None and (not isinstance(rpps, str) or not _RPPS.match(rpps)):
            raise InvalidInput.field("rpps", "RPPS mal formé.")
        crl_number = body.get("crl_number", 0)
        crl_pem = body.get("crl_pem")
        peers: list[tuple[str, int, str]] = []
        for item in body.get("peers") or []:
            if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[1], int)
                    and isinstance(item[2], str) and 0 < item[1] < 65536 and len(item[2]) <= 64
                    and practice_lan_address(item[0])):
                peers.append((item[0], item[1], item[2]))
        return cls(_str(body, "name"), port, rpps, bool(body.get("logged_in")),
                   crl_number if isinstance(crl_number, int) else 0,
                   crl_pem if isinstance(crl_pem, str) else None, tuple(peers[:MAX_HINTS]),
                   _at(body) if body.get("at") else None)


MAX_HINTS = 32  # addresses one presence may suggest; a practice has a few workstations


def practice_lan_address(host: str) -> bool:
    """Whether a peer may suggest ``host`` as another workstation's address: an IP literal on a practice's own
    networks (private, link-local or loopback). A member cannot make the others resolve names or connect to
    addresses outside the practice (the internet, a multicast group) by naming them in its presence."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ((ip.is_private or ip.is_link_local)
                              and not (ip.is_unspecified or ip.is_multicast or ip.is_reserved))


def same_rpps(a: str | None, b: str | None) -> bool:
    """RPPS compared on their last 11 digits (a CPS may give the 12-character "8" + RPPS form)."""
    return bool(a) and bool(b) and a[-11:] == b[-11:]  # type: ignore[index]
