"""Keyrings for tests, in a file a child process can read: the agent reads its master key through
``python -m agent.store.keyring_child``, so an in-process backend (``keyring.set_keyring``) would never be seen.

``switched_keyrings()`` selects a backend for every child process started meanwhile, through
``PYTHON_KEYRING_BACKEND`` (keyring's own switch): ``available()`` is ``FileKeyring``
(tests/support/keyring_backend.py), whose entries and lock live in a JSON file named by ``RELAIS_TEST_KEYRING``;
``absent()`` is keyring's ``fail`` backend (a session without Secret Service). The previous environment comes back
at the end. This module does not import keyring itself: what it reads and writes is the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BACKEND_ENV = "PYTHON_KEYRING_BACKEND"
FILE_ENV = "RELAIS_TEST_KEYRING"
FILE_BACKEND = "tests.support.keyring_backend.FileKeyring"
NO_BACKEND = "keyring.backends.fail.Keyring"


def read_state(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        state = {}
    return {"locked": bool(state.get("locked")), "entries": dict(state.get("entries") or {})}


def write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


def entry_name(service: str, username: str) -> str:
    return json.dumps([service, username])


class FileStore:
    """What a test sees of the file keyring: its entries, and a switch to lock it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def entries(self) -> dict[tuple[str, str], str]:
        return {tuple(json.loads(name)): value  # type: ignore[misc]
                for name, value in read_state(self.path)["entries"].items()}

    def put(self, service: str, username: str, password: str) -> None:
        state = read_state(self.path)
        state["entries"][entry_name(service, username)] = password
        write_state(self.path, state)

    @property
    def locked(self) -> bool:
        return bool(read_state(self.path)["locked"])

    @locked.setter
    def locked(self, value: bool) -> None:
        state = read_state(self.path)
        state["locked"] = value
        write_state(self.path, state)


class Keyrings:
    """Switch the keyring of the child processes between a working one and none at all."""

    def __init__(self, folder: Path) -> None:
        self.store = FileStore(folder / "keyring.json")
        write_state(self.store.path, {"locked": False, "entries": {}})

    def available(self) -> FileStore:
        os.environ[BACKEND_ENV] = FILE_BACKEND
        os.environ[FILE_ENV] = str(self.store.path)
        return self.store

    def absent(self) -> None:
        os.environ[BACKEND_ENV] = NO_BACKEND


@contextmanager
def switched_keyrings() -> Iterator[Keyrings]:
    previous = {name: os.environ.get(name) for name in (BACKEND_ENV, FILE_ENV)}
    try:
        with tempfile.TemporaryDirectory(prefix="relais-keyring-") as folder:
            yield Keyrings(Path(folder))
    finally:
        _restore(previous)


@contextmanager
def secret_service(folder: Path) -> Iterator[dict[str, str]]:
    """A real Secret Service: a private D-Bus session bus with gnome-keyring-daemon on it, its login keyring made and
    unlocked with a password on its standard input. Yields the environment a client needs; stops both at the end."""
    import shutil
    import subprocess
    import time

    import secretstorage  # the test process may: only the agent's process must not load keyring

    missing = [tool for tool in ("dbus-daemon", "gnome-keyring-daemon") if shutil.which(tool) is None]
    if missing:
        import pytest

        pytest.skip(f"{', '.join(missing)} absent : apt-get install dbus-daemon gnome-keyring")
    (folder / "run").mkdir(mode=0o700, parents=True)
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        assert bus.stdout is not None
        env = {"DBUS_SESSION_BUS_ADDRESS": bus.stdout.readline().strip(), "XDG_RUNTIME_DIR": str(folder / "run"),
               "XDG_DATA_HOME": str(folder / "data"), "HOME": str(folder)}
        daemon = subprocess.Popen(["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, **env})
        assert daemon.stdin is not None
        daemon.stdin.write(b"mot de passe de session")
        daemon.stdin.close()
        previous = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            deadline = time.monotonic() + 30  # a bound, not a timing assertion: the daemon registers its name
            while True:
                with secretstorage.dbus_init() as conn:
                    if secretstorage.check_service_availability(conn):
                        break
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise RuntimeError("gnome-keyring-daemon n'a pas publié le Secret Service")
                time.sleep(0.05)
            yield env
        finally:
            _restore(previous)
    finally:
        for process in (daemon, bus):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)


def _restore(previous: dict[str, str | None]) -> None:
    """Put these environment variables back as they were (None: absent)."""
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
