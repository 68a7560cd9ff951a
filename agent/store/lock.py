"""One agent per data directory: an exclusive lock on ``agent.lock``, holding who owns it.

The lock is an OS file lock, so it is released when the process dies, even by SIGKILL: a crashed agent never
blocks the next start. The file's content (pid, port, start time) lets a second start say which agent holds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from agent.errors import AgentLockedError

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle: IO[str]) -> bool:
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            return True
        except OSError:
            return False
else:
    import fcntl

    def _try_lock(handle: IO[str]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "agent.lock"
        self._handle: IO[str] | None = None

    def acquire(self, **owner: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        handle = os.fdopen(fd, "a+", encoding="utf-8")  # held for the process lifetime
        if not _try_lock(handle):
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise AgentLockedError(
                f"Un autre agent Relais utilise déjà le dossier de données {self.path.parent} ({holder}). "
                "Arrêtez-le, ou donnez un autre dossier avec --data-dir."
            )
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), **owner}))
        handle.flush()
        self._handle = handle

    def update(self, **owner: Any) -> None:
        """Rewrite the owner description (e.g. with the port once bound)."""
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(json.dumps({"pid": os.getpid(), **owner}))
            self._handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _describe(content: str) -> str:
    try:
        owner = json.loads(content)
    except ValueError:
        return "propriétaire inconnu"
    parts = [f"pid {owner.get('pid')}"]
    if owner.get("port"):
        parts.append(f"port {owner['port']}")
    if owner.get("started_at"):
        parts.append(f"démarré le {owner['started_at']}")
    return ", ".join(parts)
