"""The installer build's inputs and pure pieces: locks in step with pyproject.toml, the Windows launchers' layout."""

from __future__ import annotations

import importlib.util
import io
import re
import zipfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
LOCKS = sorted(ROOT.glob("installer/*/requirements-*.txt"))


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_installer_lock_was_resolved_from_the_current_dependencies():
    # A dependency added to pyproject.toml but not to the locks would be missing from the Windows setup, the .deb
    # and the macOS bundles: scripts/lock-installers.sh must be run again.
    want = _script("lock_digest").digest(ROOT / "pyproject.toml")
    assert {lock.parent.name for lock in LOCKS} == {"windows", "macos", "debian"}
    for lock in LOCKS:
        text = lock.read_text(encoding="utf-8")
        assert f"# relais-deps-digest: {want}" in text, f"{lock.name}: run scripts/lock-installers.sh"
        pins = re.split(r"^(?=[a-z0-9])", text, flags=re.MULTILINE)[1:]  # one block per pinned package
        names = {block.split("==", 1)[0] for block in pins}
        assert {"aiohttp", "cryptography", "pyscard", "python-pkcs11"} <= names, lock.name
        assert all("--hash=sha256:" in block for block in pins), f"{lock.name}: a pin without its hash"


def test_the_windows_lock_bundles_what_windows_lacks_and_nothing_linux_only():
    text = (ROOT / "installer/windows/requirements-win_amd64.txt").read_text(encoding="utf-8")
    assert re.search(r"^tzdata==", text, flags=re.MULTILINE)  # zoneinfo has no system database on Windows
    assert not re.search(r"^(python-xlib|pygobject)==", text, flags=re.MULTILINE | re.IGNORECASE)


def test_a_windows_launcher_runs_the_cli_with_the_interpreter_beside_it():
    launchers = _script("windows_launchers")
    exe = launchers.launcher(b"MZstub", "pythonw.exe")
    assert exe.startswith(b"MZstub")
    shebang_end = exe.index(b"\n", len(b"MZstub")) + 1
    assert exe[len(b"MZstub"):shebang_end] == b'#!"<launcher_dir>\\python\\pythonw.exe"\n'
    with zipfile.ZipFile(io.BytesIO(exe[shebang_end:])) as archive:
        main = archive.read("__main__.py").decode()
    assert "from agent.cli import main" in main and "sys.exit(main())" in main
