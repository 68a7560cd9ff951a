"""A keyring backend for tests that lives in a JSON file, so that the agent's keyring child process
(``python -m agent.store.keyring_child``) finds what the test put there: selected with
``PYTHON_KEYRING_BACKEND=tests.support.keyring_backend.FileKeyring``, the file named by ``RELAIS_TEST_KEYRING``
(tests/support/keyrings.py sets both). It behaves as a real backend does: ``KeyringLocked`` while locked."""

from __future__ import annotations

import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError

from tests.support.keyrings import FILE_ENV, entry_name, read_state, write_state


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @property
    def path(self) -> Path:
        return Path(os.environ[FILE_ENV])

    def _open(self) -> dict[str, object]:
        state = read_state(self.path)
        if state["locked"]:
            raise KeyringLocked("verrouillé")
        return state

    def get_password(self, service: str, username: str) -> str | None:
        entries = self._open()["entries"]
        assert isinstance(entries, dict)
        value = entries.get(entry_name(service, username))
        return value if isinstance(value, str) else None

    def set_password(self, service: str, username: str, password: str) -> None:
        state = self._open()
        entries = state["entries"]
        assert isinstance(entries, dict)
        entries[entry_name(service, username)] = password
        write_state(self.path, state)

    def delete_password(self, service: str, username: str) -> None:
        state = self._open()
        entries = state["entries"]
        assert isinstance(entries, dict)
        if entries.pop(entry_name(service, username), None) is None:
            raise PasswordDeleteError("absent")
        write_state(self.path, state)
