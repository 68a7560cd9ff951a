"""API tokens: one per named client (an LGC, the tray), stored hashed, compared in constant time.

A token reads ``rl_<id>_<secret>``: the id finds the row, and only the SHA-256 of the 256-bit secret is
stored. The secret is shown once, at creation. Revocation is immediate: every request checks the row, from
memory while nothing was committed to the database since (``TokenCheck``), else by reading it again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from agent.errors import Conflict, InvalidInput, NotFound

_TOKEN = re.compile(r"^rl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
# Compared against when the id is unknown, so a miss costs the same as a hit.
_DUMMY_HASH = hashlib.sha256(b"relais-no-such-token").digest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    name: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_token(conn: sqlite3.Connection, name: str, now: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput.field("name", "Nom de client invalide (lettres, chiffres, espace . _ -, 64 au plus).")
    existing = conn.execute("SELECT revoked_at FROM api_tokens WHERE name = ?", (name,)).fetchone()
    if existing is not None and existing[0] is None:
        raise Conflict(f"Un jeton actif existe déjà pour « {name} » : révoquez-le d'abord.", code="token_exists")
    if existing is not None:
        conn.execute("DELETE FROM api_tokens WHERE name = ?", (name,))
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens(id, name, secret_hash, created_at) VALUES (?, ?, ?, ?)",
        (token_id, name, _hash(secret), now),
    )
    return f"rl_{token_id}_{secret}"


def verify_token(conn: sqlite3.Connection, token: str) -> TokenInfo | None:
    """The token's client if it is valid and not revoked; None otherwise (in constant time per lookup)."""
    match = _TOKEN.match(token)
    token_id, secret = (match.group(1), match.group(2)) if match else ("", token)
    row = conn.execute(
        "SELECT id, name, secret_hash, created_at, last_used_at, revoked_at FROM api_tokens WHERE id = ?",
        (token_id,),
    ).fetchone()
    expected = bytes(row["secret_hash"]) if row is not None else _DUMMY_HASH
    ok = hmac.compare_digest(_hash(secret), expected)
    if row is None or not ok or row["revoked_at"] is not None:
        return None
    return TokenInfo(row["id"], row["name"], row["created_at"], row["last_used_at"], row["revoked_at"])


def list_tokens(conn: sqlite3.Connection) -> list[TokenInfo]:
    rows = conn.execute(
        "SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY created_at, name"
    ).fetchall()
    return [TokenInfo(r["id"], r["name"], r["created_at"], r["last_used_at"], r["revoked_at"]) for r in rows]


def revoke_token(conn: sqlite3.Connection, name: str, now: str) -> None:
    cursor = conn.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name)
    )
    if cursor.rowcount == 0:
        raise NotFound(f"Aucun jeton actif nommé « {name} ».", code="token_not_found")


class TokenCheck:
    """The API guard's token check on the event loop's own thread, without a hop to a reader thread.

    A dedicated read-only connection with no busy wait: ``PRAGMA data_version`` (SQLite's count of commits by
    any other connection, another process's ``relais token revoke`` included) says whether the remembered
    verdicts still hold; when it moved they are dropped and the row is read again (a primary-key lookup). A
    remembered token is still compared in constant time. SQLite busy (a WAL recovery, rare): ``None`` with
    ``busy`` set, and the caller checks through the reader pool as before. Never blocks: busy_timeout is 0.
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 0")
        self._version: int | None = None
        self._known: dict[str, tuple[bytes, TokenInfo]] = {}  # token id -> (secret hash, client)
        self.hits = 0  # remembered verdicts used (tests, benchmarks)

    def verify(self, token: str) -> tuple[bool, TokenInfo | None]:
        """(answered, client): answered False when SQLite was busy and nothing could be said."""
        try:
            version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            if version != self._version:
                self._known.clear()
                self._version = version
            match = _TOKEN.match(token)
            known = self._known.get(match.group(1)) if match else None
            if match and known is not None:
                ok = hmac.compare_digest(_hash(match.group(2)), known[0])
                self.hits += 1
                return True, (known[1] if ok else None)
            info = verify_token(self._conn, token)
        except sqlite3.OperationalError:
            return False, None
        if info is not None and match:
            self._known[info.id] = (_hash(match.group(2)), info)
        return True, info

    def close(self) -> None:
        self._known.clear()
        self._conn.close()
