"""Where the master key lives: the OS keyring (the only `keyring` importer), or a 0600 key file.

On a desktop the keyring (Secret Service, macOS Keychain, Windows Credential Locker) keeps the key out of the
data directory, so a copied database is useless. Headless machines often have no keyring backend: the key then
goes to ``master.key`` beside the database with owner-only permissions, and ``/v1/status`` warns about it.

A key is made once per data directory, and ``master-key.json`` beside the database records where it went and
its fingerprint (an HMAC of a fixed label, never the key). From then on the agent only ever looks there: a key
that existed and cannot be reached now (keyring locked or absent in this session, file deleted) stops the start
with a French message instead of making a second key, which would leave every stored document unreadable.
This module never logs a key, and never creates one when the record, or sealed content in the database, says
one existed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.errors import StoreError
from agent.logs import get_logger

log = get_logger("store.masterkey")
SERVICE = "relais"
KEY_FILE = "master.key"
RECORD_FILE = "master-key.json"
Source = Literal["keyring", "file"]
_LABEL = b"relais master key fingerprint v1"
FILE_WARNING = "Clé maîtresse dans un fichier (aucun trousseau système disponible) : protégez le dossier de données."


@dataclass(frozen=True, slots=True)
class MasterKey:
    key: bytes
    source: Source
    warning: str = ""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What ``master-key.json`` says: where this data directory's key is, and how to recognise it."""

    source: Source
    fingerprint: str


def fingerprint(key: bytes) -> str:
    return hmac.new(key, _LABEL, hashlib.sha256).hexdigest()[:32]


def _keyring_usable() -> bool:
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
    except Exception:
        return False
    return not isinstance(backend, fail.Keyring) and float(getattr(backend, "priority", 1)) > 0


def read_record(data_dir: Path) -> KeyRecord | None:
    path = data_dir / RECORD_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        source, print_ = raw["source"], raw["fingerprint"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"fichier {path} illisible : restaurez-le depuis la sauvegarde du dossier de données",
                         code="master_key_record") from exc
    if source not in ("keyring", "file") or not isinstance(print_, str):
        raise StoreError(f"fichier {path} invalide : restaurez-le depuis la sauvegarde du dossier de données",
                         code="master_key_record")
    return KeyRecord(source, print_)


def _write_record(data_dir: Path, record: KeyRecord) -> None:
    path = data_dir / RECORD_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    body = json.dumps({"version": 1, "source": record.source, "fingerprint": record.fingerprint}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _account(data_dir: Path) -> str:
    return str(data_dir.resolve())


def _keyring_key(data_dir: Path) -> bytes | None:
    """The key in the keyring, or None when there is none or the keyring cannot be read now."""
    if not _keyring_usable():
        return None
    import keyring

    try:
        stored = keyring.get_password(SERVICE, _account(data_dir))
    except Exception as exc:  # locked, no session bus, backend error
        log.warning("trousseau du système illisible (%s)", type(exc).__name__)
        return None
    return base64.b64decode(stored) if stored else None


def _file_key(data_dir: Path) -> bytes | None:
    path = data_dir / KEY_FILE
    if not path.exists():
        return None
    if os.name == "posix" and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    key = path.read_bytes()
    if len(key) != 32:
        raise StoreError(f"fichier de clé maîtresse corrompu : {path}", code="master_key_corrupt")
    return key


def _existing(source: Source, data_dir: Path) -> bytes | None:
    return _keyring_key(data_dir) if source == "keyring" else _file_key(data_dir)


def unreachable_message(source: Source, data_dir: Path) -> str:
    """Why the agent stops, and what to do, for a doctor or the practice's IT support."""
    keep = ("L'agent ne démarre pas, pour ne pas créer une autre clé qui rendrait illisibles les documents déjà "
            "enregistrés.")
    if source == "keyring":
        return (f"La clé maîtresse du dossier de données {data_dir} est dans le trousseau du système, inaccessible "
                f"dans cette session (trousseau verrouillé ou absent, autre compte utilisateur). {keep} Ouvrez la "
                "session de l'utilisateur qui a installé Relais (le trousseau s'y déverrouille), puis relancez "
                "l'agent ; « relais doctor » donne le détail.")
    return (f"Le fichier de clé maîtresse {data_dir / KEY_FILE} a disparu. {keep} Restaurez-le depuis la "
            "sauvegarde du dossier de données, puis relancez l'agent ; « relais doctor » donne le détail.")


def _check(record: KeyRecord, key: bytes | None, data_dir: Path) -> bytes:
    if key is None:
        raise StoreError(unreachable_message(record.source, data_dir), code="master_key_unreachable")
    if not hmac.compare_digest(fingerprint(key), record.fingerprint):
        where = "le trousseau du système" if record.source == "keyring" else str(data_dir / KEY_FILE)
        raise StoreError(f"La clé maîtresse trouvée dans {where} n'est pas celle du dossier de données {data_dir} "
                         "(dossier copié d'un autre poste ou d'un autre compte ?). L'agent ne démarre pas.",
                         code="master_key_mismatch")
    return key


def _has_sealed_content(data_dir: Path) -> bool:
    """Whether the database holds content sealed under some master key (a data dir from before the record)."""
    path = data_dir / "relais.db"
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT 1 FROM data_keys LIMIT 1").fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False  # no data_keys table yet: nothing was ever sealed


def _result(key: bytes, source: Source) -> MasterKey:
    return MasterKey(key, source, FILE_WARNING if source == "file" else "")


def load_master_key(data_dir: Path, mode: Literal["auto", "keyring", "file"]) -> MasterKey:
    """This data directory's key: the recorded one, else one found from before the record, else a new one."""
    record = read_record(data_dir)
    if record is not None:
        if mode != "auto" and mode != record.source:
            raise StoreError(f"store.master_key = \"{mode}\", mais la clé maîtresse de {data_dir} est "
                             f"{'dans le trousseau du système' if record.source == 'keyring' else 'un fichier'} : "
                             "remettez store.master_key = \"auto\".", code="master_key_mode")
        return _result(_check(record, _existing(record.source, data_dir), data_dir), record.source)
    found = _adopt(data_dir, mode)
    if found is not None:
        _write_record(data_dir, KeyRecord(found.source, fingerprint(found.key)))
        return found
    if _has_sealed_content(data_dir):
        raise StoreError(f"Aucune clé maîtresse trouvée pour {data_dir}, qui contient pourtant des documents "
                         "chiffrés (trousseau inaccessible dans cette session, ou fichier master.key disparu). "
                         "L'agent ne démarre pas, pour ne pas créer une autre clé ; « relais doctor » donne le "
                         "détail.", code="master_key_unreachable")
    created = _create(data_dir, mode)
    _write_record(data_dir, KeyRecord(created.source, fingerprint(created.key)))  # after the key is stored
    return created


def _adopt(data_dir: Path, mode: str) -> MasterKey | None:
    """A key stored before the record existed: the keyring's first (where earlier versions put it), else the file."""
    if mode in ("auto", "keyring"):
        key = _keyring_key(data_dir)
        if key is not None:
            return _result(key, "keyring")
    if mode in ("auto", "file"):
        key = _file_key(data_dir)
        if key is not None:
            return _result(key, "file")
    return None


def _create(data_dir: Path, mode: str) -> MasterKey:
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    if mode in ("auto", "keyring") and _keyring_usable():
        import keyring

        try:
            keyring.set_password(SERVICE, _account(data_dir), base64.b64encode(key).decode())
            return _result(key, "keyring")
        except Exception as exc:
            if mode == "keyring":
                raise StoreError(f"trousseau du système inutilisable : {type(exc).__name__}") from exc
            log.warning("trousseau du système inutilisable (%s) : clé maîtresse dans un fichier", type(exc).__name__)
    elif mode == "keyring":
        raise StoreError("aucun trousseau du système disponible (store.master_key = \"keyring\")")
    fd = os.open(data_dir / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return _result(key, "file")


def describe(data_dir: Path, mode: Literal["auto", "keyring", "file"]) -> tuple[str, str]:
    """For `relais doctor`: (OK | ATTENTION | ERREUR, French line); reads only, never creates a key."""
    try:
        record = read_record(data_dir)
    except StoreError as exc:
        return "ERREUR", exc.message
    if record is None:
        if _has_sealed_content(data_dir) and _adopt(data_dir, mode) is None:
            return "ERREUR", ("clé maîtresse introuvable alors que la base contient des documents chiffrés : "
                              "trousseau inaccessible dans cette session, ou fichier master.key disparu")
        if mode == "file" or not _keyring_usable():
            return "ATTENTION", "pas de trousseau système : la clé maîtresse sera un fichier du dossier de données"
        return "OK", "trousseau système disponible pour la clé maîtresse (créée au premier démarrage)"
    try:
        _check(record, _existing(record.source, data_dir), data_dir)
    except StoreError as exc:
        return "ERREUR", exc.message
    if record.source == "file":
        return "ATTENTION", f"clé maîtresse dans le fichier {data_dir / KEY_FILE} : protégez le dossier de données"
    return "OK", f"clé maîtresse dans le trousseau du système (empreinte {record.fingerprint[:8]})"
