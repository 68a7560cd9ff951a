"""Write relais.exe and relaisw.exe into a staged Windows installation (run by scripts/build-windows.sh).

Each is distlib's launcher (t64.exe: console, w64.exe: no window), then a shebang naming the interpreter relative to
the launcher (``<launcher_dir>``, so the installation can live anywhere), then a zip whose ``__main__.py`` calls
``agent.cli.main``: the layout pip gives console scripts on Windows. Never runs anything it writes.
Usage: python windows_launchers.py TOOLS_VENV STAGE_DIR
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

MAIN = "import sys\nfrom agent.cli import main\n\nif __name__ == '__main__':\n    sys.exit(main())\n"
# (launcher written, distlib stub, interpreter in <install>\python)
LAUNCHERS = (("relais.exe", "t64.exe", "python.exe"), ("relaisw.exe", "w64.exe", "pythonw.exe"))


def launcher(stub: bytes, interpreter: str) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("__main__.py", date_time=(2020, 1, 1, 0, 0, 0))  # reproducible
        zf.writestr(info, MAIN)
    shebang = f'#!"<launcher_dir>\\python\\{interpreter}"\n'.encode()
    return stub + shebang + archive.getvalue()


def main(tools_venv: str, stage: str) -> None:
    stubs = next(Path(tools_venv).glob("lib/python3*/site-packages/distlib"))
    for name, stub, interpreter in LAUNCHERS:
        (Path(stage) / name).write_bytes(launcher((stubs / stub).read_bytes(), interpreter))


if __name__ == "__main__":
    main(*sys.argv[1:3])
