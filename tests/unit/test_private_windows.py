"""The data folder on Windows (issue 23 #3): its DACL decides, read through a protocol-level fake of advapi32's
answer; the repair is an ``icacls`` by SIDs, the same on a French or an English Windows."""

from __future__ import annotations

from pathlib import Path

from agent.store import private, winacl
from agent.store.winacl import ADMINISTRATORS_SID, SYSTEM_SID, Ace

USER = "S-1-5-21-1004336348-1177238915-682003330-1001"
USERS = "S-1-5-32-545"  # BUILTIN\\Users: every account of the machine (a Remote Desktop server's other doctors)
EVERYONE = "S-1-1-0"


def profile_acl() -> list[Ace]:
    """What %LOCALAPPDATA% gives a folder created under it on a sound system."""
    return [Ace(USER, True, 0x1F01FF), Ace(SYSTEM_SID, True, 0x1F01FF), Ace(ADMINISTRATORS_SID, True, 0x1F01FF)]


def test_a_folder_under_the_user_profile_is_not_exposed(tmp_path: Path) -> None:
    assert private.exposed(tmp_path, system="win32", read_dacl=lambda _: (USER, profile_acl())) == []


def test_users_or_everyone_allowed_to_read_is_an_exposure_with_its_repair(tmp_path: Path) -> None:
    aces = [*profile_acl(), Ace(USERS, True, 0x1200A9), Ace(EVERYONE, True, 0x80000000),
            Ace("S-1-5-21-9-9-9-2001", False, 0x1F01FF),  # a deny entry exposes nothing
            Ace("S-1-3-0", True, 0x1F01FF, inherit_only=True),  # CREATOR OWNER: applies to children's owner only
            Ace("S-1-5-11", True, 0x100000)]  # SYNCHRONIZE only: no read
    found = private.exposed(tmp_path, system="win32", read_dacl=lambda _: (USER, aces))
    assert [f.readers for f in found] == [(EVERYONE, USERS)]
    text = found[0].describe()
    assert "lisible par d'autres comptes" in text and f"*{USER}:(OI)(CI)F" in text and "/inheritance:r" in text


def test_the_repair_grants_only_owner_system_and_administrators(tmp_path: Path) -> None:
    command = winacl.restrict_command(tmp_path, USER)
    grants = [command[i + 1] for i, part in enumerate(command) if part == "/grant:r"]
    assert command[:3] == ["icacls", str(tmp_path), "/inheritance:r"]
    assert grants == [f"*{USER}:(OI)(CI)F", f"*{SYSTEM_SID}:(OI)(CI)F", f"*{ADMINISTRATORS_SID}:(OI)(CI)F"]
