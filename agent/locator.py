"""How an LGC finds the agent of its own session: a session file, and on Windows a volatile registry key.

On a shared Remote Desktop or Citrix server every user session runs its own agent, with its own data folder,
tokens and port (the port may not be 7463: see ``api.port_search``). Loopback is shared by all sessions, so an
LGC must not guess a port: it reads where its session's agent listens.

- Windows: ``%LOCALAPPDATA%\\relais\\sessions\\<SessionId>.json``, and the volatile key
  ``HKCU\\Software\\Relais\\Sessions\\<SessionId>`` (values ``Url``, ``Port``, ``Pid``, ``DataDir``,
  ``SessionFile``), which Windows forgets at logoff.
- Linux: ``$XDG_RUNTIME_DIR/relais/session.json`` (one agent per user: systemd user services are per user);
  nothing is written without ``XDG_RUNTIME_DIR``. macOS: ``~/Library/Application Support/relais/session.json``.
- ``RELAIS_SESSION_DIR`` moves the file (tests, integrators' test rigs).

The file is written when the agent listens and removed when it stops, if it still names this process. It holds
no token: a token comes from ``relais token create`` run as the user (the ``cli`` member says how to run it).
This module never reads another session's file and never writes outside the user's own profile.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from agent import __version__
from agent.config import Config
from agent.logs import get_logger

log = get_logger("locator")
ENV_DIR = "RELAIS_SESSION_DIR"
REGISTRY_KEY = r"Software\Relais\Sessions"
REG_SZ = 1
REG_DWORD = 4


@dataclass(frozen=True, slots=True)
class SessionInfo:
    url: str
    port: int
    pid: int
    session: str
    user: str
    data_dir: str
    agent_version: str
    started_at: str
    sandbox: bool
    cli: tuple[str, ...]
    version: int = 1

    def as_json(self) -> dict[str, object]:
        body = asdict(self)
        body["cli"] = list(self.cli)
        return body


def session_id(system: str = sys.platform) -> str:
    """The Windows session number (Remote Desktop sessions differ); "user" elsewhere (one agent per user)."""
    if system != "win32" or sys.platform != "win32":
        return "user"
    import ctypes

    number = ctypes.c_ulong(0)
    if not ctypes.windll.kernel32.ProcessIdToSessionId(os.getpid(), ctypes.byref(number)):
        return "0"
    return str(number.value)


def session_file(system: str, env: Mapping[str, str], session: str, home: Path | None = None) -> Path | None:
    """Where this session's file goes on ``system``; None when the session has no place for it."""
    if env.get(ENV_DIR):
        return Path(env[ENV_DIR]) / f"session-{session}.json"
    if system == "win32":
        local = env.get("LOCALAPPDATA")
        return Path(local) / "relais" / "sessions" / f"{session}.json" if local else None
    if system == "darwin":
        return (home or Path.home()) / "Library" / "Application Support" / "relais" / "session.json"
    runtime = env.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "relais" / "session.json" if runtime else None


def registry_values(info: SessionInfo, path: Path | None) -> list[tuple[str, int, str | int]]:
    """The values of ``HKCU\\Software\\Relais\\Sessions\\<SessionId>``: (name, REG_ type, value)."""
    return [("Url", REG_SZ, info.url), ("Port", REG_DWORD, info.port), ("Pid", REG_DWORD, info.pid),
            ("DataDir", REG_SZ, info.data_dir), ("SessionFile", REG_SZ, str(path) if path else "")]


def cli_argv(config_source: str, data_dir: Path) -> tuple[str, ...]:
    """How the LGC runs this installation's `relais` for this agent (console Python, not pythonw)."""
    python = Path(sys.executable)
    console = python.with_name("python.exe")
    if python.name.lower() == "pythonw.exe" and console.exists():
        python = console
    argv = [str(python), "-m", "agent.cli"]
    if config_source and Path(config_source).exists():
        argv += ["--config", str(Path(config_source).resolve())]
    return (*argv, "--data-dir", str(data_dir))


def announce(config: Config, port: int, started_at: str) -> SessionInfo:
    """Publish the agent of ``config`` listening on ``port`` as this session's agent."""
    info = SessionInfo(url=f"http://127.0.0.1:{port}", port=port, pid=os.getpid(), session=session_id(),
                       user=this_user(), data_dir=str(config.data_dir), agent_version=__version__,
                       started_at=started_at, sandbox=config.sandbox.enabled,
                       cli=cli_argv(config.source, config.data_dir))
    publish(info)
    return info


def publish(info: SessionInfo) -> Path | None:
    """Write the session file (and the registry key on Windows); a failure is logged, never fatal."""
    path = session_file(sys.platform, os.environ, info.session)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(info.as_json(), out, ensure_ascii=False, indent=2)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("fichier de session %s non écrit : %s", path, exc.strerror)
            path = None
    if sys.platform == "win32":
        try:
            _registry_publish(info, path)
        except OSError as exc:
            log.warning("clé de registre de la session non écrite : %s", exc)
    if path is not None:
        log.info("session %s : agent annoncé dans %s", info.session, path)
    return path


def withdraw(info: SessionInfo) -> None:
    """Remove what ``publish`` wrote, unless another agent of this session has written it since."""
    path = session_file(sys.platform, os.environ, info.session)
    if path is not None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == info.pid:
                path.unlink()
    if sys.platform == "win32":
        with contextlib.suppress(OSError):
            _registry_withdraw(info)


def session_data_dir() -> Path | None:
    """The data folder of this session's running agent, as its session file says (None: no agent announced).
    The command line uses it when no data folder was named, so `relais status` reaches `relais demo` too."""
    path = session_file(sys.platform, os.environ, session_id())
    if path is None:
        return None
    try:
        data_dir = json.loads(path.read_text(encoding="utf-8")).get("data_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(data_dir) if isinstance(data_dir, str) and data_dir else None


def this_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        return ""


def _registry_publish(info: SessionInfo, path: Path | None) -> None:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        return
    import ctypes
    import winreg
    from ctypes import wintypes

    volatile, access = 0x1, winreg.KEY_ALL_ACCESS  # REG_OPTION_VOLATILE: Windows drops the key at logoff
    advapi = ctypes.WinDLL("advapi32")
    with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, r"Software\Relais", 0, access) as parent:
        handle = wintypes.HKEY()
        status = advapi.RegCreateKeyExW(wintypes.HKEY(int(parent)), f"Sessions\\{info.session}", 0, None,
                                        volatile, access, None, ctypes.byref(handle), None)
        if status != 0:
            raise OSError(status, f"RegCreateKeyExW: {status}")
        try:
            for name, kind, value in registry_values(info, path):
                winreg.SetValueEx(handle.value or 0, name, 0, kind, value)
        finally:
            advapi.RegCloseKey(handle)


def _registry_withdraw(info: SessionInfo) -> None:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        return
    import winreg

    name = f"{REGISTRY_KEY}\\{info.session}"
    with winreg.OpenKey(winreg.HKEY_CURRENT_USER, name) as key:
        if winreg.QueryValueEx(key, "Pid")[0] != info.pid:
            return
    winreg.DeleteKey(winreg.HKEY_CURRENT_USER, name)
