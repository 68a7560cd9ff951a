"""Where the master key lives: the OS keyring (the only `keyring` importer), or a 0600 key file.

On a desktop the keyring (Secret Service, macOS Keychain, Windows Credential Locker) keeps the key out of the
data directory, so a copied database is useless. Headless machines often have no keyring backend: the key then
goes to ``master.key`` beside the database with owner-only permissions, and ``/v1/status`` warns about it.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.errors import StoreError
from agent.logs import get_logger

log = get_logger("store.masterkey")
SERVICE = "relais"


@dataclass(frozen=True, slots=True)
class MasterKey:
    key: bytes
    source: Literal["keyring", "file"]
    warning: str = ""


def _keyring_usable() -> bool:
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
    except Exception:
        return False
    return not isinstance(backend, fail.Keyring) and float(getattr(backend, "priority", 1)) > 0


def load_master_key(data_dir: Path, mode: Literal["auto", "keyring", "file"]) -> MasterKey:
    account = str(data_dir.resolve())
    if mode in ("auto", "keyring") and _keyring_usable():
        import keyring

        try:
            stored = keyring.get_password(SERVICE, account)
            if stored is None:
                stored = base64.b64encode(secrets.token_bytes(32)).decode()
                keyring.set_password(SERVICE, account, stored)
            return MasterKey(base64.b64decode(stored), "keyring")
        except Exception as exc:
            if mode == "keyring":
                raise StoreError(f"trousseau du système inutilisable : {type(exc).__name__}") from exc
            log.warning("trousseau du système inutilisable (%s) : clé maîtresse dans un fichier", type(exc).__name__)
    elif mode == "keyring":
        raise StoreError("aucun trousseau du système disponible (store.master_key = \"keyring\")")
    return _file_key(data_dir)


def _file_key(data_dir: Path) -> MasterKey:
    path = data_dir / "master.key"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
    if os.name == "posix" and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    key = path.read_bytes()
    if len(key) != 32:
        raise StoreError(f"fichier de clé maîtresse corrompu : {path}")
    return MasterKey(
        key,
        "file",
        "Clé maîtresse dans un fichier (aucun trousseau système disponible) : protégez le dossier de données.",
    )
