"""Where the master key lives: the OS keyring (reached through ``agent.store.keyring_child``), or a 0600 key file.

On a desktop the keyring (Secret Service, macOS Keychain, Windows Credential Locker) keeps the key out of the
data directory, so a copied database is useless. Headless machines often have no keyring backend: the key then
goes to ``master.key`` beside the database with owner-only permissions, and ``/v1/status`` warns about it.

A key is made once per data directory, and ``master-key.json`` beside the database records where it went and
its fingerprint (an HMAC of a fixed label, never the key). From then on the agent only ever looks there: a key
that existed and cannot be reached now (keyring locked or absent in this session, file deleted) stops the start
with a French message instead of making a second key, which would leave every stored document unreadable.
This module never logs a key, and never creates one when the record, or sealed content in the database, says
one existed. It never imports `keyring` either: each keyring look-up is a short-lived child process, whose memory
(GLib and libsecret on Linux) goes when it ends instead of staying with the agent for its whole life.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agent.errors import StoreError
from agent.logs import get_logger
from agent.store import keyring_child

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


# Long enough for a person to type the session password when the keyring asks for it (Secret Service, Keychain).
KEYRING_TIMEOUT_SECONDS = 120.0
_IMPORT_ROOT = Path(__file__).resolve().parents[2]  # where `agent` is importable from, for the child's `-m`


@dataclass(frozen=True, slots=True)
class KeyringAnswer:
    """What the keyring child said: ``ok``, ``absent`` (no usable keyring in this session), ``locked`` or ``failed``."""

    state: str
    secret: str | None = field(default=None, repr=False)  # a key: never in a repr, hence never in a log
    error: str = ""


def ask_keyring(op: str, data_dir: Path, secret: str | None = None) -> KeyringAnswer:
    """One keyring operation in a child process; the key goes through its standard input and output only."""
    request: dict[str, str] = {"op": op, "service": SERVICE, "account": _account(data_dir)}
    if secret is not None:
        request["secret"] = secret
    try:
        done = subprocess.run([sys.executable, "-m", "agent.store.keyring_child"], input=json.dumps(request).encode(),
                              capture_output=True, timeout=KEYRING_TIMEOUT_SECONDS, cwd=_IMPORT_ROOT, check=False,
                              creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except subprocess.TimeoutExpired:
        return KeyringAnswer(keyring_child.FAILED, error=f"pas de réponse en {KEYRING_TIMEOUT_SECONDS:g} s")
    except OSError as exc:
        return KeyringAnswer(keyring_child.FAILED, error=type(exc).__name__)
    try:
        reply = json.loads(done.stdout)
        state, found, error = reply["state"], reply["secret"], reply["error"]
    except (ValueError, KeyError, TypeError):
        # Its standard error is not logged: nothing that went through this process's pipes ever is.
        return KeyringAnswer(keyring_child.FAILED,
                             error=f"processus du trousseau terminé avec le code {done.returncode}")
    if state not in (keyring_child.OK, keyring_child.ABSENT, keyring_child.LOCKED, keyring_child.FAILED) \
            or not isinstance(found, str | None) or not isinstance(error, str):
        return KeyringAnswer(keyring_child.FAILED, error="réponse invalide du processus du trousseau")
    return KeyringAnswer(state, found, error)


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


def _keyring_key(data_dir: Path) -> tuple[bytes | None, KeyringAnswer]:
    """The key in the keyring (None when there is none or the keyring cannot be read now), and what it said."""
    answer = ask_keyring("get", data_dir)
    if answer.state == keyring_child.OK:
        return (base64.b64decode(answer.secret) if answer.secret else None), answer
    if answer.state != keyring_child.ABSENT:
        log.warning("trousseau du système illisible (%s)", answer.error or answer.state)
    return None, answer


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


def _existing(source: Source, data_dir: Path) -> tuple[bytes | None, KeyringAnswer | None]:
    """The recorded key, if it can be read now; for a keyring, also what the keyring said."""
    return _keyring_key(data_dir) if source == "keyring" else (_file_key(data_dir), None)


def _keyring_cause(answer: KeyringAnswer | None) -> str:
    if answer is None:
        return "trousseau verrouillé ou absent, autre compte utilisateur"
    return {keyring_child.LOCKED: "le trousseau est verrouillé",
            keyring_child.ABSENT: "aucun trousseau n'est disponible (service du trousseau arrêté, session ouverte "
                                  "à distance ou sans bureau)",
            keyring_child.OK: "la clé n'y figure pas (autre compte utilisateur, ou entrée effacée)",
            }.get(answer.state, f"le trousseau n'a pas répondu ({answer.error or answer.state})")


def unreachable_message(source: Source, data_dir: Path, answer: KeyringAnswer | None = None) -> str:
    """Why the agent stops, and what to do, for a doctor or the practice's IT support."""
    keep = ("L'agent ne démarre pas, pour ne pas créer une autre clé qui rendrait illisibles les documents déjà "
            "enregistrés.")
    if source == "keyring":
        return (f"La clé maîtresse du dossier de données {data_dir} est dans le trousseau du système, inaccessible "
                f"dans cette session : {_keyring_cause(answer)}. {keep} Ouvrez la session de l'utilisateur qui a "
                "installé Relais (le trousseau s'y déverrouille), puis relancez l'agent ; « relais doctor » donne le "
                "détail.")
    return (f"Le fichier de clé maîtresse {data_dir / KEY_FILE} a disparu. {keep} Restaurez-le depuis la "
            "sauvegarde du dossier de données, puis relancez l'agent ; « relais doctor » donne le détail.")


def _check(record: KeyRecord, found: tuple[bytes | None, KeyringAnswer | None], data_dir: Path) -> bytes:
    key, answer = found
    if key is None:
        raise StoreError(unreachable_message(record.source, data_dir, answer), code="master_key_unreachable")
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
    found, keyring_said = _adopt(data_dir, mode)
    if found is not None:
        _write_record(data_dir, KeyRecord(found.source, fingerprint(found.key)))
        return found
    if _has_sealed_content(data_dir):
        raise StoreError(f"Aucune clé maîtresse trouvée pour {data_dir}, qui contient pourtant des documents "
                         "chiffrés (trousseau inaccessible dans cette session, ou fichier master.key disparu). "
                         "L'agent ne démarre pas, pour ne pas créer une autre clé ; « relais doctor » donne le "
                         "détail.", code="master_key_unreachable")
    created = _create(data_dir, mode, keyring_said)
    _write_record(data_dir, KeyRecord(created.source, fingerprint(created.key)))  # after the key is stored
    return created


def _adopt(data_dir: Path, mode: str) -> tuple[MasterKey | None, KeyringAnswer | None]:
    """A key stored before the record existed: the keyring's first (where earlier versions put it), else the file;
    and what the keyring said, if it was asked."""
    answer = None
    if mode in ("auto", "keyring"):
        key, answer = _keyring_key(data_dir)
        if key is not None:
            return _result(key, "keyring"), answer
    if mode in ("auto", "file"):
        key = _file_key(data_dir)
        if key is not None:
            return _result(key, "file"), answer
    return None, answer


def _create(data_dir: Path, mode: str, keyring_said: KeyringAnswer | None) -> MasterKey:
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    if mode in ("auto", "keyring"):
        # A session without any keyring has just said so: no second child process to hear it again.
        if keyring_said is not None and keyring_said.state == keyring_child.ABSENT:
            answer = keyring_said
        else:
            answer = ask_keyring("set", data_dir, base64.b64encode(key).decode())
        if answer.state == keyring_child.OK:
            return _result(key, "keyring")
        if mode == "keyring":
            raise StoreError(_no_keyring_message(answer))
        if answer.state != keyring_child.ABSENT:
            log.warning("trousseau du système inutilisable (%s) : clé maîtresse dans un fichier",
                        answer.error or answer.state)
    fd = os.open(data_dir / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return _result(key, "file")


def _no_keyring_message(answer: KeyringAnswer) -> str:
    """Why store.master_key = "keyring" cannot make its key now."""
    if answer.state == keyring_child.ABSENT:
        return ("aucun trousseau du système disponible dans cette session (store.master_key = \"keyring\") : "
                "ouvrez une session de bureau, ou mettez store.master_key = \"auto\" pour une clé dans un fichier")
    if answer.state == keyring_child.LOCKED:
        return ("trousseau du système verrouillé (store.master_key = \"keyring\") : déverrouillez-le, puis "
                "relancez l'agent")
    return f"trousseau du système inutilisable : {answer.error or answer.state}"


def describe(data_dir: Path, mode: Literal["auto", "keyring", "file"]) -> tuple[str, str]:
    """For `relais doctor`: (OK | ATTENTION | ERREUR, French line); reads only, never creates a key."""
    try:
        record = read_record(data_dir)
    except StoreError as exc:
        return "ERREUR", exc.message
    if record is None:
        if _has_sealed_content(data_dir) and _adopt(data_dir, mode)[0] is None:
            return "ERREUR", ("clé maîtresse introuvable alors que la base contient des documents chiffrés : "
                              "trousseau inaccessible dans cette session, ou fichier master.key disparu")
        if mode == "file" or ask_keyring("probe", data_dir).state != keyring_child.OK:
            return "ATTENTION", "pas de trousseau système : la clé maîtresse sera un fichier du dossier de données"
        return "OK", "trousseau système disponible pour la clé maîtresse (créée au premier démarrage)"
    try:
        _check(record, _existing(record.source, data_dir), data_dir)
    except StoreError as exc:
        return "ERREUR", exc.message
    if record.source == "file":
        return "ATTENTION", f"clé maîtresse dans le fichier {data_dir / KEY_FILE} : protégez le dossier de données"
    return "OK", f"clé maîtresse dans le trousseau du système (empreinte {record.fingerprint[:8]})"
