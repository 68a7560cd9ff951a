"""Practice membership: make the CA, invite, join, accept a join, remove a workstation.

``init``, ``invite`` and ``remove`` run in the `relais practice` commands on a short-lived store connection (the
running agent notices the change at its next presence tick). ``join`` runs the client side of the pairing
exchange; ``accept_join`` is what the CA workstation's peer listener runs for it. Private keys are 0600 files in
``<data_dir>/practice``; certificates and the revocation list are in the store.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.errors import AccessRefused, Conflict, InvalidInput, Unavailable
from agent.routing import pairing, pki, tls
from agent.store import routing as repo

JOIN_PATH = "/peer/v1/join"


def _ts(when: datetime) -> float:
    return when.timestamp()


def load_ca(conn: sqlite3.Connection, data_dir: Path) -> pki.PracticeCa:
    member = repo.membership(conn)
    if member is None:
        raise Conflict("Ce poste ne fait partie d'aucun cabinet : `relais practice init` d'abord.",
                       code="not_paired")
    cert = pki.load_cert(member.ca_pem)
    if not member.is_ca:
        return pki.PracticeCa(cert)
    key = pki.load_key((tls.practice_dir(data_dir) / tls.CA_KEY_FILE).read_bytes())
    return pki.PracticeCa(cert, key)


def init(conn: sqlite3.Connection, data_dir: Path, workstation: str, practice_name: str, now: datetime
         ) -> repo.Membership:
    """Make the practice CA on this workstation and issue this workstation's own certificate."""
    if repo.membership(conn) is not None:
        raise Conflict("Ce poste fait déjà partie d'un cabinet.", code="already_paired")
    pki.check_workstation_name(workstation)
    ca = pki.create_ca(now)
    assert ca.key is not None
    key = pki.new_key()
    cert = pki.issue(ca, pki.make_csr(workstation, key), workstation, now)
    crl = pki.build_crl(ca, 1, {}, now)
    folder = tls.practice_dir(data_dir)
    tls.write_private(folder / tls.CA_KEY_FILE, pki.key_pem(ca.key))
    tls.write_private(folder / tls.KEY_FILE, pki.key_pem(key))
    tls.write_private(folder / tls.CERT_FILE, pki.cert_pem(cert), 0o644)
    member = repo.Membership(ca.practice_id, practice_name[:64] or "Cabinet", workstation, True, ca.cert_pem(),
                             pki.cert_pem(cert), crl.number, crl.pem)
    repo.save_membership(conn, member, _ts(now))
    repo.add_member(conn, cert.serial_number, workstation, pki.fingerprint(cert), _ts(now))
    return member


def invite(conn: sqlite3.Connection, now: datetime, ttl_seconds: int) -> tuple[str, datetime]:
    member = repo.membership(conn)
    if member is None or not member.is_ca:
        raise Conflict("Seul le poste qui a créé le cabinet (`relais practice init`) peut inviter.",
                       code="not_practice_ca")
    code = pairing.new_code()
    key = pairing.code_key(code)
    expires = now + timedelta(seconds=ttl_seconds)
    repo.add_invite(conn, pairing.invite_id(key), key, _ts(now), _ts(expires))
    return code, expires


def remove(conn: sqlite3.Connection, data_dir: Path, name: str, now: datetime) -> pki.Revocations:
    """Revoke every certificate of ``name`` and publish a new CRL (peers pass it on at their next exchange)."""
    ca = load_ca(conn, data_dir)
    member = repo.membership(conn)
    assert member is not None
    if ca.key is None:
        raise Conflict("Seul le poste qui a créé le cabinet peut retirer un poste.", code="not_practice_ca")
    if name == member.workstation:
        raise InvalidInput.field("name", "Ce poste porte l'autorité du cabinet : il ne peut pas se retirer.")
    repo.revoke_member(conn, name, _ts(now))
    revoked = {serial: datetime.fromtimestamp(at, now.tzinfo) for serial, at in repo.revoked_serials(conn).items()}
    crl = pki.build_crl(ca, member.crl_number + 1, revoked, now)
    repo.update_crl(conn, crl.number, crl.pem)
    repo.forget_name(conn, name)
    return crl


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    ok: bool
    response: dict[str, Any]
    name: str = ""


def accept_join(conn: sqlite3.Connection, data_dir: Path, server_cert_der: bytes, body: dict[str, Any],
                now: datetime) -> JoinOutcome:
    """The CA side of the exchange, inside one write transaction: the invite is used and the member recorded
    together. A refusal is returned (not raised). A wrong MAC cannot be charged to any invite (whoever sent it
    does not know one), so it disables none: an 80-bit code is not guessed online, and counting such refusals
    against every live invite let anyone on the LAN cancel the doctor's invites."""
    name, csr, nonce_j, mac = (body.get(k) for k in ("name", "csr_pem", "nonce", "mac"))
    if not all(isinstance(v, str) for v in (name, csr, nonce_j, mac)):
        raise InvalidInput("Demande d'adhésion incomplète.")
    assert isinstance(name, str) and isinstance(csr, str) and isinstance(nonce_j, str) and isinstance(mac, str)
    server_hash = pairing.digest(server_cert_der)
    try:
        invite_id, key = pairing.match_invite(repo.live_invites(conn, _ts(now)), server_hash, nonce_j, name,
                                              csr.encode(), mac)
    except AccessRefused:
        return JoinOutcome(False, {})
    if name in repo.active_member_names(conn):
        return JoinOutcome(False, {"detail": f"Un poste nommé « {name} » fait déjà partie du cabinet."})
    ca = load_ca(conn, data_dir)
    member = repo.membership(conn)
    assert member is not None
    cert = pki.issue(ca, csr.encode(), name, now)
    repo.use_invite(conn, invite_id, name, _ts(now))
    repo.add_member(conn, cert.serial_number, name, pki.fingerprint(cert), _ts(now))
    nonce_s = pairing.new_nonce()
    cert_pem = pki.cert_pem(cert)
    crl_pem = member.crl_pem or b""
    welcome = pairing.welcome_mac(key, server_hash, nonce_j, nonce_s, name, member.ca_pem, cert_pem, crl_pem)
    return JoinOutcome(True, {
        "nonce": nonce_s, "ca_pem": member.ca_pem.decode(), "cert_pem": cert_pem.decode(),
        "crl_pem": crl_pem.decode(), "crl_number": member.crl_number, "practice_name": member.practice_name,
        "ca_workstation": member.workstation, "mac": welcome,
    }, name)


def join(conn: sqlite3.Connection, data_dir: Path, code: str, host: str, port: int, workstation: str,
         now: datetime, *, timeout: float = 15.0) -> repo.Membership:
    """Join the practice of the workstation at host:port with its one-time code."""
    if repo.membership(conn) is not None:
        raise Conflict("Ce poste fait déjà partie d'un cabinet.", code="already_paired")
    pki.check_workstation_name(workstation)
    key_code = pairing.code_key(code)
    key = pki.new_key()
    csr = pki.make_csr(workstation, key)
    nonce_j = pairing.new_nonce()

    # The MAC binds the certificate this connection shows: compute it after the handshake, on one connection.
    # http.client gives the certificate only once connected, so the request is made in two steps.
    connection = http.client.HTTPSConnection(host, port, context=tls.join_context(), timeout=timeout)
    try:
        connection.connect()
        der = connection.sock.getpeercert(binary_form=True) if connection.sock else None  # type: ignore[union-attr]
        if not der:
            raise AccessRefused("Le poste contacté n'a présenté aucun certificat.", code="pairing_refused")
        server_hash = pairing.digest(der)
        body = {"name": workstation, "csr_pem": csr.decode(), "nonce": nonce_j,
                "mac": pairing.join_mac(key_code, server_hash, nonce_j, workstation, csr)}
        connection.request("POST", JOIN_PATH, body=json.dumps(body),
                           headers={"Content-Type": "application/json", "Host": "relais-peer"})
        response = connection.getresponse()
        raw = response.read(1_000_000)
        status = response.status
    except OSError as exc:
        raise Unavailable(f"Poste {host}:{port} injoignable : {exc}", code="peer_unreachable") from exc
    finally:
        connection.close()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if status != 200 or not isinstance(data, dict):
        detail = data.get("detail") if isinstance(data, dict) else None
        raise AccessRefused(detail or pairing.refused().message, code="pairing_refused")
    fields = {k: data.get(k) for k in ("nonce", "ca_pem", "cert_pem", "crl_pem", "mac", "practice_name")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise AccessRefused("Réponse d'adhésion incomplète.", code="pairing_refused")
    ca_pem, cert_pem, crl_pem = (str(fields[k]).encode() for k in ("ca_pem", "cert_pem", "crl_pem"))
    pairing.check_welcome(key_code, server_hash, nonce_j, str(fields["nonce"]), workstation, ca_pem, cert_pem,
                          crl_pem, str(fields["mac"]))
    # The CA is now authenticated by the code: check what it issued before keeping it.
    ca_cert = pki.load_cert(ca_pem)
    cert = pki.load_cert(cert_pem)
    if cert.public_key() != key.public_key():
        raise AccessRefused("Le certificat reçu ne correspond pas à la clé de ce poste.", code="pairing_refused")
    pki.verify_workstation(ca_cert, cert, now)
    crl = pki.load_crl(ca_cert, crl_pem) if crl_pem else None
    folder = tls.practice_dir(data_dir)
    tls.write_private(folder / tls.KEY_FILE, pki.key_pem(key))
    tls.write_private(folder / tls.CERT_FILE, cert_pem, 0o644)
    ca = pki.PracticeCa(ca_cert)
    member = repo.Membership(ca.practice_id, str(fields["practice_name"]), workstation, False, ca_pem, cert_pem,
                             crl.number if crl else 0, crl.pem if crl else None)
    repo.save_membership(conn, member, _ts(now))
    repo.remember_address(conn, host, port, "join", name=str(data.get("ca_workstation") or "") or None)
    return member
