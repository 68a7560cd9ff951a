"""Nothing in the data folder readable by another account (issue 23 #3): the folder 0700; the database and its WAL
files, the master key and its record, the clients' tokens, the runtime and lock files, and the practice's private
keys 0600. Checked at every start (and tightened, with a warning) and by ``relais doctor`` (reported).

Modes are POSIX; on Windows the counterpart reads the data folder's DACL (agent/store/winacl.py): an allow entry
letting another account than the owner, SYSTEM or the administrators read is an exposure, and ``tighten`` replaces
the folder's entries with ``icacls`` (owner, SYSTEM, administrators, inherited by every file below). The data
folder lives under the user's profile (``%LOCALAPPDATA%``), whose inherited ACL is already that on a sound system.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.store import winacl

PRIVATE_DIRS = ("practice",)  # below the data folder, 0700 like it; logs, cache and sandbox hold no secret
PUBLIC_SUFFIXES = (".pem", ".crt")  # certificates are public (inside a 0700 folder all the same)


@dataclass(frozen=True, slots=True)
class Exposure:
    path: Path
    mode: int  # the permission bits found
    wanted: int  # 0o700 for a folder, 0o600 for a file
    readers: tuple[str, ...] = ()  # Windows: the SIDs of the other accounts the folder's DACL lets read
    owner: str = ""  # Windows: the owner's SID

    def describe(self) -> str:
        if self.readers:
            return (f"dossier {self.path} lisible par d'autres comptes ({', '.join(self.readers)}) : "
                    f"{subprocess.list2cmdline(winacl.restrict_command(self.path, self.owner))}")
        kind = "dossier" if self.wanted == 0o700 else "fichier"
        return (f"{kind} {self.path} lisible par d'autres comptes (droits {self.mode:04o}, attendu "
                f"{self.wanted:04o}) : chmod {self.wanted:o} {self.path}")


DaclReader = Callable[[Path], tuple[str, list[winacl.Ace]]]


def exposed(data_dir: Path, *, system: str = sys.platform,
            read_dacl: DaclReader = winacl.read_dacl) -> list[Exposure]:
    """Every folder or file of ``data_dir`` that another account may read or enter (group or other bits; on
    Windows, the folder's DACL, which every file below inherits)."""
    if not data_dir.is_dir():
        return []
    if system == "win32":
        owner, aces = read_dacl(data_dir)
        readers = winacl.foreign_readers(owner, aces)
        return [Exposure(data_dir, 0, 0o700, tuple(readers), owner)] if readers else []
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
        if item.readers:
            subprocess.run(winacl.restrict_command(item.path, item.owner), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            os.chmod(item.path, item.mode & ~0o077)
    return changed


def _check(path: Path, wanted: int) -> list[Exposure]:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:  # removed meanwhile (a WAL file at a checkpoint)
        return []
    return [Exposure(path, mode, wanted)] if mode & 0o077 else []
