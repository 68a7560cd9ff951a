"""The practice's routing state in SQLite: membership, invites, peers' addresses, forwarded orders both ways.

Functions take a connection and run inside the caller's transaction (``db.write``/``db.read``, or a short-lived
CLI connection). Times are UNIX seconds (REAL), like the orders tables.

- ``routing_practice``: this workstation's membership (one row): practice, name, certificates, latest CRL.
- ``routing_members``: certificates the CA issued (on the CA workstation), with their revocation.
- ``routing_invites``: one-time codes, stored as their derived MAC key only, with expiry and use.
- ``routing_addresses``: where peers may be reached; hints only (trust comes from the certificate).
- ``routing_inbound``: forwarded orders this workstation accepted, one row per order id (applied once).
- ``routing_nonces``: nonces of forward/cancel messages seen, kept past the freshness window (replays).
- ``routing_outbound``: orders this workstation handed to a peer, with the mirrored remote state.
- ``routing_withdrawals``: forwards taken back before their holder acknowledged them, to withdraw there.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from agent.errors import Conflict, NotFound
from agent.store.migrations import register

register("routing", [
    """
    CREATE TABLE routing_practice (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        practice_id   TEXT NOT NULL,
        practice_name TEXT NOT NULL,
        workstation   TEXT NOT NULL,
        is_ca         INTEGER NOT NULL,
        ca_pem        BLOB NOT NULL,
        cert_pem      BLOB NOT NULL,
        crl_number    INTEGER NOT NULL DEFAULT 0,
        crl_pem       BLOB,
        joined_at     REAL NOT NULL
    );
    CREATE TABLE routing_members (
        serial      TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        issued_at   REAL NOT NULL,
        revoked_at  REAL
    );
    CREATE INDEX routing_members_name ON routing_members(name);
    CREATE TABLE routing_invites (
        id          TEXT PRIMARY KEY,
        mac_key     BLOB,
        created_at  REAL NOT NULL,
        expires_at  REAL NOT NULL,
        used_at     REAL,
        used_by     TEXT,
        failures    INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE routing_addresses (
        host        TEXT NOT NULL,
        port        INTEGER NOT NULL,
        name        TEXT,
        source      TEXT NOT NULL,
        last_ok     REAL,
        PRIMARY KEY (host, port)
    );
    CREATE TABLE routing_inbound (
        order_id    TEXT PRIMARY KEY,
        origin      TEXT NOT NULL,
        sent_at     REAL NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE TABLE routing_nonces (
        nonce       TEXT PRIMARY KEY,
        origin      TEXT NOT NULL,
        at          REAL NOT NULL
    );
    CREATE INDEX routing_nonces_at ON routing_nonces(at);
    CREATE TABLE routing_outbound (
        order_id         TEXT PRIMARY KEY,
        holder           TEXT NOT NULL,
        state            TEXT NOT NULL,
        remote_state     TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        forwarded_at     REAL NOT NULL,
        updated_at       REAL NOT NULL
    );
    CREATE INDEX routing_outbound_state ON routing_outbound(state);
    """,
    # Forwards taken back before their holder acknowledged them: that holder is told to drop its copy (if the
    # acknowledgement was lost rather than the forward) as soon as it answers again.
    """
    CREATE TABLE routing_withdrawals (
        order_id     TEXT NOT NULL,
        holder       TEXT NOT NULL,
        requested_at REAL NOT NULL,
        PRIMARY KEY (order_id, holder)
    );
    """,
])


@dataclass(frozen=True, slots=True)
class Membership:
    practice_id: str
    practice_name: str
    workstation: str
    is_ca: bool
    ca_pem: bytes
    cert_pem: bytes
    crl_number: int
    crl_pem: bytes | None


def membership(conn: sqlite3.Connection) -> Membership | None:
    row = conn.execute(
        "SELECT practice_id, practice_name, workstation, is_ca, ca_pem, cert_pem, crl_number, crl_pem "
        "FROM routing_practice WHERE id = 1").fetchone()
    if row is None:
        return None
    return Membership(row[0], row[1], row[2], bool(row[3]), bytes(row[4]), bytes(row[5]), row[6],
                      bytes(row[7]) if row[7] is not None else None)


def save_membership(conn: sqlite3.Connection, m: Membership, now: float) -> None:
    if membership(conn) is not None:
        raise Conflict("Ce poste fait déjà partie d'un cabinet.", code="already_paired")
    conn.execute(
        "INSERT INTO routing_practice(id, practice_id, practice_name, workstation, is_ca, ca_pem, cert_pem, "
        "crl_number, crl_pem, joined_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (m.practice_id, m.practice_name, m.workstation, int(m.is_ca), m.ca_pem, m.cert_pem, m.crl_number,
         m.crl_pem, now))


def update_crl(conn: sqlite3.Connection, number: int, pem: bytes) -> bool:
    """Keep a newer CRL (already verified by the caller); False when ours is as new."""
    cur = conn.execute("UPDATE routing_practice SET crl_number = ?, crl_pem = ? WHERE id = 1 AND crl_number < ?",
                       (number, pem, number))
    return cur.rowcount == 1


# Members (CA workstation)
def add_member(conn: sqlite3.Connection, serial: int, name: str, fingerprint: str, now: float) -> None:
    conn.execute("INSERT INTO routing_members(serial, name, fingerprint, issued_at) VALUES (?, ?, ?, ?)",
                 (format(serial, "x"), name, fingerprint, now))


def active_member_names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM routing_members WHERE revoked_at IS NULL")}


def revoke_member(conn: sqlite3.Connection, name: str, now: float) -> list[int]:
    serials = [int(r[0], 16) for r in conn.execute(
        "SELECT serial FROM routing_members WHERE name = ? AND revoked_at IS NULL", (name,))]
    if not serials:
        raise NotFound(f"Aucun poste actif nommé « {name} » dans le cabinet.", code="peer_unknown")
    conn.execute("UPDATE routing_members SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name))
    return serials


def revoked_serials(conn: sqlite3.Connection) -> dict[int, float]:
    return {int(r[0], 16): r[1] for r in conn.execute(
        "SELECT serial, revoked_at FROM routing_members WHERE revoked_at IS NOT NULL")}


def list_members(conn: sqlite3.Connection) -> list[tuple[str, str, float, float | None]]:
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(
        "SELECT name, serial, issued_at, revoked_at FROM routing_members ORDER BY issued_at")]


# Invites
def add_invite(conn: sqlite3.Connection, invite: str, key: bytes, now: float, expires_at: float) -> None:
    conn.execute("INSERT INTO routing_invites(id, mac_key, created_at, expires_at) VALUES (?, ?, ?, ?)",
                 (invite, key, now, expires_at))


def live_invites(conn: sqlite3.Connection, now: float) -> list[tuple[str, bytes]]:
    return [(r[0], bytes(r[1])) for r in conn.execute(
        "SELECT id, mac_key FROM routing_invites WHERE used_at IS NULL AND expires_at > ? AND mac_key IS NOT NULL",
        (now,))]


def use_invite(conn: sqlite3.Connection, invite: str, name: str, now: float) -> None:
    """Mark used (and forget its key) exactly once; a second use in a race raises."""
    cur = conn.execute(
        "UPDATE routing_invites SET used_at = ?, used_by = ?, mac_key = NULL "
        "WHERE id = ? AND used_at IS NULL AND expires_at > ?", (now, name, invite, now))
    if cur.rowcount != 1:
        raise Conflict("Code d'invitation refusé (inconnu, expiré ou déjà utilisé).", code="pairing_refused")


# Addresses (hints)
def remember_address(conn: sqlite3.Connection, host: str, port: int, source: str, name: str | None = None,
                     ok_at: float | None = None) -> None:
    conn.execute(
        "INSERT INTO routing_addresses(host, port, name, source, last_ok) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(host, port) DO UPDATE SET name = COALESCE(excluded.name, name), "
        "source = CASE WHEN source = 'gossip' AND excluded.source = 'peer' THEN 'peer' ELSE source END, "
        "last_ok = COALESCE(excluded.last_ok, last_ok)", (host, port, name, source, ok_at))


def addresses(conn: sqlite3.Connection) -> list[tuple[str, int, str | None, str]]:
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(
        "SELECT host, port, name, source FROM routing_addresses ORDER BY last_ok DESC NULLS LAST")]


def forget_address(conn: sqlite3.Connection, host: str, port: int) -> None:
    conn.execute("DELETE FROM routing_addresses WHERE host = ? AND port = ?", (host, port))


def forget_name(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("DELETE FROM routing_addresses WHERE name = ?", (name,))


# Inbound forwards (holder side)
def seen_nonce(conn: sqlite3.Connection, nonce: str) -> bool:
    return conn.execute("SELECT 1 FROM routing_nonces WHERE nonce = ?", (nonce,)).fetchone() is not None


def record_nonce(conn: sqlite3.Connection, nonce: str, origin: str, at: float) -> None:
    """Raises Conflict(replayed) when the nonce was already used: the unique key decides, inside the transaction."""
    try:
        conn.execute("INSERT INTO routing_nonces(nonce, origin, at) VALUES (?, ?, ?)", (nonce, origin, at))
    except sqlite3.IntegrityError:
        raise Conflict("Message déjà reçu (rejeu) : ignoré.", code="replayed") from None


def prune_nonces(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute("DELETE FROM routing_nonces WHERE at < ?", (before,)).rowcount


def inbound_origin(conn: sqlite3.Connection, order_id: str) -> str | None:
    row = conn.execute("SELECT origin FROM routing_inbound WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else str(row[0])


def add_inbound(conn: sqlite3.Connection, order_id: str, origin: str, sent_at: float, now: float) -> None:
    conn.execute("INSERT INTO routing_inbound(order_id, origin, sent_at, received_at) VALUES (?, ?, ?, ?)",
                 (order_id, origin, sent_at, now))


# Outbound forwards (origin side)
@dataclass(frozen=True, slots=True)
class Outbound:
    order_id: str
    holder: str
    state: str  # "forwarded" once the holder acknowledged; "recalled" when it came back
    remote_state: str | None
    cancel_requested: bool
    forwarded_at: float
    updated_at: float


def _outbound(row: sqlite3.Row | tuple[object, ...]) -> Outbound:
    return Outbound(str(row[0]), str(row[1]), str(row[2]), None if row[3] is None else str(row[3]),
                    bool(row[4]), float(row[5]), float(row[6]))  # type: ignore[arg-type]


_OUT_COLS = "order_id, holder, state, remote_state, cancel_requested, forwarded_at, updated_at"


def add_outbound(conn: sqlite3.Connection, order_id: str, holder: str, remote_state: str, now: float) -> None:
    conn.execute(
        f"INSERT INTO routing_outbound({_OUT_COLS}) VALUES (?, ?, 'forwarded', ?, 0, ?, ?) "  # noqa: S608
        "ON CONFLICT(order_id) DO UPDATE SET holder = excluded.holder, state = 'forwarded', "
        "remote_state = excluded.remote_state, updated_at = excluded.updated_at",
        (order_id, holder, remote_state, now, now))


def outbound(conn: sqlite3.Connection, order_id: str) -> Outbound | None:
    row = conn.execute(f"SELECT {_OUT_COLS} FROM routing_outbound WHERE order_id = ?",  # noqa: S608
                       (order_id,)).fetchone()
    return None if row is None else _outbound(row)


def open_outbound(conn: sqlite3.Connection) -> list[Outbound]:
    """Acknowledged forwards not settled here yet: the remote state is not final, or a delivery here still says
    ``forwarded`` (the holder's acknowledgement carried a final state, but not the deliveries'): to mirror."""
    return [_outbound(r) for r in conn.execute(
        f"SELECT {_OUT_COLS} FROM routing_outbound r WHERE r.state = 'forwarded' "  # noqa: S608
        "AND (COALESCE(r.remote_state, '') NOT IN ('sent', 'cancelled') OR EXISTS ("
        " SELECT 1 FROM orders o JOIN deliveries d ON d.order_seq = o.seq"
        " WHERE o.id = r.order_id AND d.state = 'forwarded')) ORDER BY r.forwarded_at")]


def add_withdrawal(conn: sqlite3.Connection, order_id: str, holder: str, now: float) -> None:
    conn.execute("INSERT OR IGNORE INTO routing_withdrawals(order_id, holder, requested_at) VALUES (?, ?, ?)",
                 (order_id, holder, now))


def withdrawals(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in conn.execute(
        "SELECT order_id, holder FROM routing_withdrawals ORDER BY requested_at")]


def withdrawn(conn: sqlite3.Connection, order_id: str, holder: str) -> None:
    conn.execute("DELETE FROM routing_withdrawals WHERE order_id = ? AND holder = ?", (order_id, holder))


def set_remote_state(conn: sqlite3.Connection, order_id: str, remote_state: str, now: float) -> bool:
    cur = conn.execute(
        "UPDATE routing_outbound SET remote_state = ?, updated_at = ? WHERE order_id = ? "
        "AND COALESCE(remote_state, '') <> ?", (remote_state, now, order_id, remote_state))
    return cur.rowcount == 1


def request_cancel(conn: sqlite3.Connection, order_id: str, now: float) -> bool:
    cur = conn.execute("UPDATE routing_outbound SET cancel_requested = 1, updated_at = ? WHERE order_id = ?",
                       (now, order_id))
    return cur.rowcount == 1


def outbound_by_holder(conn: sqlite3.Connection) -> dict[str, int]:
    return {r[0]: r[1] for r in conn.execute(
        "SELECT holder, COUNT(*) FROM routing_outbound WHERE state = 'forwarded' "
        "AND COALESCE(remote_state, '') NOT IN ('sent', 'cancelled') GROUP BY holder")}
