"""Windows counterpart of the data folder's POSIX modes (agent/store/private.py): its DACL.

Windows only for ``read_dacl`` (ctypes over advapi32: ``GetNamedSecurityInfoW``, ``GetAce``,
``ConvertSidToStringSidW``); the decision (``foreign_readers``) and the repair command (``restrict_command``,
``icacls`` with SIDs, so the same on a French or an English Windows) are pure and tested on any system. The ctypes
part has not run on a real Windows in this project's CI (no Windows runner): said here, and ``relais doctor``
reports what it reads there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
# Rights that let an account read a file's content or list a folder (FILE_READ_DATA / FILE_LIST_DIRECTORY,
# GENERIC_READ, GENERIC_ALL, MAXIMUM_ALLOWED-like full control is covered by these bits).
READ_BITS = 0x0001 | 0x80000000 | 0x10000000
INHERIT_ONLY = 0x08
ACCESS_ALLOWED = 0


@dataclass(frozen=True, slots=True)
class Ace:
    sid: str
    allow: bool
    mask: int
    inherit_only: bool = False


def foreign_readers(owner_sid: str, aces: list[Ace]) -> list[str]:
    """The SIDs other than the owner, SYSTEM and the administrators that an allow entry lets read."""
    trusted = {owner_sid, SYSTEM_SID, ADMINISTRATORS_SID}
    return sorted({a.sid for a in aces if a.allow and not a.inherit_only and a.mask & READ_BITS
                   and a.sid not in trusted})


def restrict_command(path: Path, owner_sid: str) -> list[str]:
    """``icacls`` replacing the folder's entries (inherited ones removed) by the owner, SYSTEM and the
    administrators, inherited by everything below."""
    command = ["icacls", str(path), "/inheritance:r"]
    for sid in (owner_sid, SYSTEM_SID, ADMINISTRATORS_SID):
        command += ["/grant:r", f"*{sid}:(OI)(CI)F"]
    return command


def read_dacl(path: Path) -> tuple[str, list[Ace]]:  # pragma: no cover - Windows only
    """The owner's SID and the DACL's entries of ``path``."""
    if sys.platform != "win32":
        raise OSError("read_dacl: Windows only")
    import ctypes
    from ctypes import wintypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    owner, dacl, descriptor = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    se_file_object, owner_info, dacl_info = 1, 0x1, 0x4
    status = advapi32.GetNamedSecurityInfoW(ctypes.c_wchar_p(str(path)), se_file_object, owner_info | dacl_info,
                                            ctypes.byref(owner), None, ctypes.byref(dacl), None,
                                            ctypes.byref(descriptor))
    if status != 0:
        raise OSError(status, f"GetNamedSecurityInfoW({path})")

    def sid_string(sid: int) -> str:
        text = wintypes.LPWSTR()
        if not advapi32.ConvertSidToStringSidW(ctypes.c_void_p(sid), ctypes.byref(text)):
            raise ctypes.WinError(ctypes.get_last_error())
        try:
            return str(text.value)
        finally:
            kernel32.LocalFree(text)

    class AclSizeInformation(ctypes.Structure):
        _fields_ = [("AceCount", wintypes.DWORD), ("AclBytesInUse", wintypes.DWORD), ("AclBytesFree", wintypes.DWORD)]

    try:
        aces: list[Ace] = []
        if dacl.value:
            info = AclSizeInformation()
            advapi32.GetAclInformation(dacl, ctypes.byref(info), ctypes.sizeof(info), 2)  # AclSizeInformation
            for index in range(info.AceCount):
                ace = ctypes.c_void_p()
                if not advapi32.GetAce(dacl, index, ctypes.byref(ace)):
                    continue
                assert ace.value is not None
                ace_type, flags = ctypes.c_ubyte.from_address(ace.value).value, \
                    ctypes.c_ubyte.from_address(ace.value + 1).value
                mask = wintypes.DWORD.from_address(ace.value + 4).value
                if ace_type in (0, 1):  # ACCESS_ALLOWED_ACE / ACCESS_DENIED_ACE: the SID follows the mask
                    aces.append(Ace(sid_string(ace.value + 8), ace_type == ACCESS_ALLOWED, mask,
                                    bool(flags & INHERIT_ONLY)))
        assert owner.value is not None
        return sid_string(owner.value), aces
    finally:
        kernel32.LocalFree(descriptor)
