"""Encryption at rest of document content (invariant 5).

Envelope encryption: each document gets its own random 256-bit data key; the content is sealed with AES-GCM
under that key, and the data key is stored wrapped (AES-GCM) under the master key. Destroying a document's
content means deleting its wrapped key row (``secure_delete`` overwrites it): the ciphertext left anywhere,
including in the WAL or a backup, can no longer be opened.

The associated data binds each blob to its key id, so a ciphertext cannot be swapped between documents.
This module never logs and never returns plaintext keys outside the process.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.errors import StoreError

_NONCE = 12
_VERSION = b"\x01"


@dataclass(frozen=True, slots=True)
class SealedBlob:
    key_id: str
    blob: bytes  # version || nonce || ciphertext+tag


class ContentCipher:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._master = AESGCM(master_key)

    def new_data_key(self, conn: sqlite3.Connection, created_at: str) -> tuple[str, bytes]:
        """Create and store (wrapped) a fresh data key; returns its id and the plaintext key for this write."""
        key_id = secrets.token_hex(16)
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        wrapped = _VERSION + nonce + self._master.encrypt(nonce, key, key_id.encode())
        conn.execute("INSERT INTO data_keys(id, wrapped, created_at) VALUES (?, ?, ?)", (key_id, wrapped, created_at))
        return key_id, key

    def seal(self, conn: sqlite3.Connection, plaintext: bytes, created_at: str) -> SealedBlob:
        key_id, key = self.new_data_key(conn, created_at)
        nonce = os.urandom(_NONCE)
        blob = _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, key_id.encode())
        return SealedBlob(key_id, blob)

    def open(self, conn: sqlite3.Connection, sealed: SealedBlob) -> bytes:
        row = conn.execute("SELECT wrapped FROM data_keys WHERE id = ?", (sealed.key_id,)).fetchone()
        if row is None:
            raise StoreError("le contenu de ce document a été détruit (durée de conservation écoulée)",
                             code="content_destroyed")
        try:
            key = self._unwrap(sealed.key_id, bytes(row[0]))
            nonce = sealed.blob[1 : 1 + _NONCE]
            return AESGCM(key).decrypt(nonce, sealed.blob[1 + _NONCE :], sealed.key_id.encode())
        except InvalidTag as exc:
            raise StoreError("contenu chiffré illisible : clé maîtresse différente ou données altérées") from exc

    def _unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        if wrapped[:1] != _VERSION:
            raise StoreError("format de clé inconnu")
        nonce = wrapped[1 : 1 + _NONCE]
        return self._master.decrypt(nonce, wrapped[1 + _NONCE :], key_id.encode())

    @staticmethod
    def destroy(conn: sqlite3.Connection, key_id: str) -> bool:
        """Erase a data key: the content it sealed is gone for good."""
        return conn.execute("DELETE FROM data_keys WHERE id = ?", (key_id,)).rowcount > 0
