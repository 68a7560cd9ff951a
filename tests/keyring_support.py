"""An in-memory keyring backend for tests: the real `keyring` API, a dict behind it, and a switch to lock it.

`keyring.set_keyring` is process-wide: ``switched_keyrings()`` puts the previous backend back at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keyring
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import KeyringLocked


class MemoryKeyring(KeyringBackend):
    priority = 10  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.locked = False

    def get_password(self, service: str, username: str) -> str | None:
        if self.locked:
            raise KeyringLocked("verrouillé")
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.locked:
            raise KeyringLocked("verrouillé")
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


class Keyrings:
    """Switch the process's keyring between a working one and none at all (a session without Secret Service)."""

    def __init__(self) -> None:
        self.memory = MemoryKeyring()

    def available(self) -> MemoryKeyring:
        keyring.set_keyring(self.memory)
        return self.memory

    def absent(self) -> None:
        keyring.set_keyring(fail.Keyring())


@contextmanager
def switched_keyrings() -> Iterator[Keyrings]:
    previous = keyring.get_keyring()
    try:
        yield Keyrings()
    finally:
        keyring.set_keyring(previous)
