"""Nothing in the data folder readable by another account (issue 23 #3): the folder 0700; the database and its WAL
files, the master key and its record, the clients' tokens, the runtime and lock files, and the practice's private
keys 0600. Checked at every start (and tightened, with a warning) and by ``relais doctor`` (reported).

POSIX only: modes mean nothing on Windows. There the data folder lives under the user's profile
(``%LOCALAPPDATA%``), whose inherited ACL grants only the user, SYSTEM and administrators; the Windows counterpart
of this check would read the folder's DACL (``GetNamedSecurityInfoW``) and refuse any allow entry for another
account or group. It is not written yet: on Windows ``exposed`` returns nothing.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

PRIVATE_DIRS = ("practice",)  # below the data folder, 0700 like it; logs, cache and sandbox hold no secret
PUBLIC_SUFFIXES = (".pem", ".crt")  # certificates are public (inside a 0700 folder all the same)


@dataclass(frozen=True, slots=True)
class Exposure:
    path: Path
    mode: int  # the permission bits found
    wanted: int  # 0o700 for a folder, 0o600 for a file

    def describe(self) -> str:
        kind = "dossier" if self.wanted == 0o700 else "fichier"
        return (f"{kind} {self.path} lisible par d'autres comptes (droits {self.mode:04o}, attendu "
                f"{self.wanted:04o}) : chmod {self.wanted:o} {self.path}")


def exposed(data_dir: Path, *, system: str = sys.platform) -> list[Exposure]:
    """Every folder or file of ``data_dir`` that another account may read or enter (group or other bits)."""
    if system == "win32" or not data_dir.is_dir():
        return []
    found: list[Exposure] = []
    folders = [data_dir, *(data_dir / name for name in PRIVATE_DIRS if (data_dir / name).is_dir())]
    for folder in folders:
        found += _check(folder, 0o700)
        for entry in sorted(folder.iterdir()):
            if entry.is_symlink() or not entry.is_file() or entry.name.endswith(PUBLIC_SUFFIXES):
                continue
            found += _check(entry, 0o600)
    return found


def tighten(data_dir: Path, *, system: str = sys.platform) -> list[Exposure]:
    """Remove group and other bits from what ``exposed`` finds; returns what was changed."""
    changed = exposed(data_dir, system=system)
    for item in changed:
        os.chmod(item.path, item.mode & ~0o077)
    return changed


def _check(path: Path, wanted: int) -> list[Exposure]:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:  # removed meanwhile (a WAL file at a checkpoint)
        return []
    return [Exposure(path, mode, wanted)] if mode & 0o077 else []
