"""Starting the agent and the tray at logon, per OS: what `relais install` writes and `relais uninstall` removes.

- Linux: a systemd user service (restarted if it stops) and an XDG autostart entry for the tray.
- macOS: two LaunchAgents in ~/Library/LaunchAgents (the agent kept alive, the tray started at login), limited to
  the graphical session, where the Keychain is unlocked.
- Windows: two values under the ``Run`` key: HKCU for the current user, no administrator needed; HKLM with
  ``--all-users`` (from the setup run as administrator), which starts one agent in each user's session on a
  Remote Desktop or Citrix server, with that user's readers, Credential Locker and data. A scheduled task was not
  chosen: a logon trigger needs an administrator to create it, and a task for "any user" runs outside the
  session's redirected readers unless it is set up per user. The Run key does not restart a crashed agent: the
  store is crash-safe, and the tray shows the agent as stopped.

The text of each file or value is built by a pure function (tested on any OS); ``install``/``uninstall`` write
them. The data folder is never touched here.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from agent.errors import Unavailable

SERVICE = "relais-agent.service"
AUTOSTART = "relais-tray.desktop"
AGENT_LABEL = "fr.relais.agent"
TRAY_LABEL = "fr.relais.tray"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_AGENT = "Relais"
RUN_TRAY = "Relais (icône)"
FIREWALL_RULE = "Relais - pairs du cabinet"


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start ``relais``: the program and its first arguments, then --config/--data-dir."""

    program: tuple[str, ...]
    options: tuple[str, ...] = ()

    def argv(self, command: str) -> list[str]:
        return [*self.program, command, *self.options]


def this_launch(config: str | None = None, data_dir: str | None = None, system: str = sys.platform) -> Launch:
    """The ``relais`` of this very installation, without a console window on Windows."""
    options: list[str] = []
    if config:
        options += ["--config", str(Path(config).resolve())]
    if data_dir:
        options += ["--data-dir", str(Path(data_dir).resolve())]
    here = Path(sys.executable).parent
    if system == "win32":
        # The setup's layout: <install>\relaisw.exe beside <install>\python\pythonw.exe.
        for candidate in (here.parent / "relaisw.exe", here / "relaisw.exe"):
            if candidate.exists():
                return Launch((str(candidate),), tuple(options))
        pythonw = here / "pythonw.exe"
        return Launch((str(pythonw if pythonw.exists() else sys.executable), "-m", "agent.cli"), tuple(options))
    beside = here / "relais"  # the console script of this installation (venv, /opt/relais/bin)
    if beside.exists():
        return Launch((str(beside),), tuple(options))
    return Launch((sys.executable, "-m", "agent.cli"), tuple(options))


# ---- Linux --------------------------------------------------------------------------------------------
def _template(name: str, launch: Launch) -> str:
    text = resources.files("installer").joinpath("linux").joinpath(name).read_text(encoding="utf-8")
    return text.replace("@RELAIS@", shlex.join(launch.program)).replace("@ARGS@", shlex.join(launch.options))


def systemd_unit(launch: Launch) -> str:
    return _template(SERVICE, launch)


def xdg_autostart(launch: Launch) -> str:
    return _template(AUTOSTART, launch)


def linux_targets() -> tuple[Path, Path]:
    config_home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return config_home / "systemd" / "user" / SERVICE, config_home / "autostart" / AUTOSTART


# ---- macOS --------------------------------------------------------------------------------------------
def launch_agent_plist(label: str, argv: list[str], log_dir: Path, *, keep_alive: bool) -> bytes:
    """A LaunchAgent: started at login in the graphical session; the agent restarted if it stops abnormally."""
    body: dict[str, object] = {
        "Label": label,
        "ProgramArguments": argv,
        "RunAtLoad": True,
        "LimitLoadToSessionType": "Aqua",  # the user's desktop session: Keychain and tray are there
        "ProcessType": "Interactive" if not keep_alive else "Standard",
        "StandardOutPath": str(log_dir / f"{label}.log"),
        "StandardErrorPath": str(log_dir / f"{label}.log"),
    }
    if keep_alive:
        body["KeepAlive"] = {"SuccessfulExit": False}  # a clean `relais` stop stays stopped
        body["ThrottleInterval"] = 5
    return plistlib.dumps(body, sort_keys=True)


def macos_targets(home: Path | None = None) -> tuple[Path, Path]:
    agents = (home or Path.home()) / "Library" / "LaunchAgents"
    return agents / f"{AGENT_LABEL}.plist", agents / f"{TRAY_LABEL}.plist"


# ---- Windows ------------------------------------------------------------------------------------------
def windows_run_values(launch: Launch) -> dict[str, str]:
    """The Run key's values: command lines as Windows parses them."""
    return {RUN_AGENT: subprocess.list2cmdline(launch.argv("run")),
            RUN_TRAY: subprocess.list2cmdline(launch.argv("tray"))}


def windows_firewall_rule(program: str, peer_port: int) -> list[str]:
    """netsh arguments allowing the practice's other workstations in on the peer port (mTLS), and nothing else."""
    return ["netsh", "advfirewall", "firewall", "add", "rule", f"name={FIREWALL_RULE}", "dir=in", "action=allow",
            "protocol=TCP", f"localport={peer_port}", f"program={program}", "profile=domain,private",
            "enable=yes"]


def _winreg_write(all_users: bool, values: dict[str, str] | None) -> None:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        raise Unavailable("clé Run : Windows uniquement", code="install_unsupported")
    import winreg

    root = winreg.HKEY_LOCAL_MACHINE if all_users else winreg.HKEY_CURRENT_USER
    with winreg.CreateKeyEx(root, RUN_KEY, 0, winreg.KEY_SET_VALUE | winreg.KEY_QUERY_VALUE) as key:
        for name in (RUN_AGENT, RUN_TRAY):
            if values is None:
                with contextlib.suppress(FileNotFoundError):
                    winreg.DeleteValue(key, name)
            else:
                winreg.SetValueEx(key, name, 0, winreg.REG_SZ, values[name])


def _winreg_installed() -> bool:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        return False
    import winreg

    for root in (winreg.HKEY_CURRENT_USER, winreg.HKEY_LOCAL_MACHINE):
        try:
            with winreg.OpenKey(root, RUN_KEY) as key:
                winreg.QueryValueEx(key, RUN_AGENT)
                return True
        except OSError:
            continue
    return False


# ---- install / uninstall ------------------------------------------------------------------------------
def _managers_allowed() -> bool:
    """RELAIS_NO_SYSTEMCTL=1 (tests, package builds): write the files, start nothing."""
    return os.environ.get("RELAIS_NO_SYSTEMCTL") != "1"


def _run(*argv: str) -> None:
    if shutil.which(argv[0]) and _managers_allowed():
        subprocess.run(list(argv), check=False, timeout=30)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"écrit : {path}")


def install(launch: Launch, *, all_users: bool = False, peer_port: int = 0, log_dir: Path | None = None) -> None:
    """Write this OS's autostart entries and start the agent now (unless RELAIS_NO_SYSTEMCTL=1)."""
    if all_users and sys.platform != "win32":
        raise Unavailable("--all-users n'existe que sous Windows (clé Run de la machine) ; sous Linux et macOS, "
                          "chaque utilisateur lance « relais install --user ».", code="install_unsupported")
    if sys.platform == "win32":  # pragma: no cover - Windows only
        _winreg_write(all_users, windows_run_values(launch))
        print("démarrage à l'ouverture de session : clé Run " + ("de la machine" if all_users else "de l'utilisateur"))
        if all_users and peer_port:
            pythonw = Path(sys.executable).with_name("pythonw.exe")
            _run(*windows_firewall_rule(str(pythonw), peer_port))
        elif _managers_allowed():
            for command in ("run", "tray"):
                subprocess.Popen(launch.argv(command), creationflags=getattr(subprocess, "DETACHED_PROCESS", 0))
    elif sys.platform == "darwin":
        logs = log_dir or Path.home() / "Library" / "Logs" / "Relais"
        logs.mkdir(parents=True, exist_ok=True)
        agent_plist, tray_plist = macos_targets()
        _write(agent_plist, launch_agent_plist(AGENT_LABEL, launch.argv("run"), logs, keep_alive=True))
        _write(tray_plist, launch_agent_plist(TRAY_LABEL, launch.argv("tray"), logs, keep_alive=False))
        for plist in (agent_plist, tray_plist):
            _run("launchctl", "bootstrap", f"gui/{os.getuid()}", str(plist))
    else:
        service, autostart = linux_targets()
        _write(service, systemd_unit(launch).encode())
        _write(autostart, xdg_autostart(launch).encode())
        _run("systemctl", "--user", "daemon-reload")
        _run("systemctl", "--user", "enable", "--now", SERVICE)


def uninstall(*, all_users: bool = False) -> None:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        _winreg_write(all_users, None)
        if all_users:
            _run("netsh", "advfirewall", "firewall", "delete", "rule", f"name={FIREWALL_RULE}")
        return
    if sys.platform == "darwin":
        for plist, label in zip(macos_targets(), (AGENT_LABEL, TRAY_LABEL), strict=True):
            if plist.exists():
                _run("launchctl", "bootout", f"gui/{os.getuid()}/{label}")
                plist.unlink()
                print(f"supprimé : {plist}")
        return
    service, autostart = linux_targets()
    if service.exists():
        _run("systemctl", "--user", "disable", "--now", SERVICE)
    for path in (service, autostart):
        if path.exists():
            path.unlink()
            print(f"supprimé : {path}")
    _run("systemctl", "--user", "daemon-reload")


def installed() -> bool:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return _winreg_installed()
    if sys.platform == "darwin":
        return macos_targets()[0].exists()
    return linux_targets()[0].exists()


# ---- the `relais` command on the PATH -------------------------------------------------------------------
LAUNCHER_MARK = "relais-launcher"  # in every launcher this module writes: one it did not write is never replaced
ENV_BIN_DIR = "RELAIS_BIN_DIR"


def user_bin_dir(system: str = sys.platform, env: os._Environ[str] | dict[str, str] | None = None,
                 home: Path | None = None) -> Path:
    """Where a user's own commands go, on the PATH without an administrator: ``RELAIS_BIN_DIR`` if set; POSIX:
    ``$XDG_BIN_HOME`` or ``~/.local/bin`` (the XDG place, on Debian's PATH from ~/.profile once it exists);
    Windows: ``%LOCALAPPDATA%\\Microsoft\\WindowsApps``, on every user's PATH by default since Windows 10."""
    env = os.environ if env is None else env
    if env.get(ENV_BIN_DIR):
        return Path(env[ENV_BIN_DIR])
    home = home or Path.home()
    if system == "win32":
        local = env.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(local) / "Microsoft" / "WindowsApps"
    if env.get("XDG_BIN_HOME"):
        return Path(env["XDG_BIN_HOME"])
    return home / ".local" / "bin"


def cli_program(system: str = sys.platform) -> tuple[str, ...]:
    """The console ``relais`` of this installation (on Windows relais.exe, not the windowless relaisw.exe)."""
    here = Path(sys.executable).parent
    if system == "win32":
        for candidate in (here.parent / "relais.exe", here / "relais.exe", here / "Scripts" / "relais.exe"):
            if candidate.exists():
                return (str(candidate),)
        return (sys.executable, "-m", "agent.cli")
    return this_launch(system=system).program


def launcher_text(program: tuple[str, ...], system: str = sys.platform) -> str:
    if system == "win32":
        line = " ".join(f'"{part}"' for part in program)
        return f"@echo off\r\nrem {LAUNCHER_MARK}\r\n{line} %*\r\n"
    return (f"#!/bin/sh\n# {LAUNCHER_MARK}: the relais command of {shlex.quote(program[0])}\n"
            f'exec {shlex.join(program)} "$@"\n')


def launcher_path(bin_dir: Path, system: str = sys.platform) -> Path:
    return bin_dir / ("relais.cmd" if system == "win32" else "relais")


def install_launcher(bin_dir: Path | None = None, system: str = sys.platform) -> Path:
    """Write the ``relais`` launcher into the user's bin folder (replacing only a launcher of ours); its path."""
    bin_dir = bin_dir or user_bin_dir(system)
    path = launcher_path(bin_dir, system)
    if (path.exists() or path.is_symlink()) and not _ours(path):
        raise Unavailable(f"{path} existe déjà et n'a pas été écrit par Relais : il est laissé tel quel.",
                          code="launcher_exists")
    bin_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(launcher_text(cli_program(system), system), encoding="utf-8", newline="")
    tmp.chmod(0o755)
    os.replace(tmp, path)
    return path


def remove_launcher(bin_dir: Path | None = None, system: str = sys.platform) -> Path | None:
    path = launcher_path(bin_dir or user_bin_dir(system), system)
    if path.exists() and _ours(path):
        path.unlink()
        return path
    return None


def on_path(bin_dir: Path, env: os._Environ[str] | dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    entries = [Path(p) for p in env.get("PATH", "").split(os.pathsep) if p]
    return any(_same(entry, bin_dir) for entry in entries)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _ours(path: Path) -> bool:
    try:
        return LAUNCHER_MARK in path.read_text(encoding="utf-8", errors="replace")[:400]
    except OSError:
        return False
