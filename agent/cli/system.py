"""`relais install`, `relais uninstall` and `relais doctor`: the agent as part of the workstation."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.errors import RelaisError, Unavailable

SERVICE = "relais-agent.service"
AUTOSTART = "relais-tray.desktop"


def _relais_command() -> str:
    beside = Path(sys.executable).parent / "relais"  # the console script of this very installation
    if beside.exists():
        return shlex.quote(str(beside))
    return f"{shlex.quote(sys.executable)} -m agent.cli"


def _options(args: argparse.Namespace) -> str:
    parts: list[str] = []
    if getattr(args, "config", None):
        parts += ["--config", str(Path(args.config).resolve())]
    if getattr(args, "data_dir", None):
        parts += ["--data-dir", str(Path(args.data_dir).resolve())]
    return shlex.join(parts)


def _targets() -> tuple[Path, Path]:
    config_home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return config_home / "systemd" / "user" / SERVICE, config_home / "autostart" / AUTOSTART


def _render(name: str, args: argparse.Namespace) -> str:
    template = resources.files("installer").joinpath("linux").joinpath(name).read_text(encoding="utf-8")
    return template.replace("@RELAIS@", _relais_command()).replace("@ARGS@", _options(args))


def _systemctl(*words: str) -> None:
    if shutil.which("systemctl") and os.environ.get("RELAIS_NO_SYSTEMCTL") != "1":
        subprocess.run(["systemctl", "--user", *words], check=False, timeout=30)


def cmd_install(args: argparse.Namespace) -> int:
    if sys.platform != "linux":
        raise Unavailable("L'installation automatique n'est disponible que sous Linux pour l'instant.",
                          code="install_unsupported")
    service, autostart = _targets()
    for path, name in ((service, SERVICE), (autostart, AUTOSTART)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(name, args), encoding="utf-8")
        print(f"écrit : {path}")
    _systemctl("daemon-reload")
    _systemctl("enable", "--now", SERVICE)
    print("L'agent démarrera à chaque ouverture de session ; l'icône aussi.")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    service, autostart = _targets()
    if service.exists():
        _systemctl("disable", "--now", SERVICE)
    for path in (service, autostart):
        if path.exists():
            path.unlink()
            print(f"supprimé : {path}")
    _systemctl("daemon-reload")
    print("Relais est désinstallé de la session ; le dossier de données (file d'envoi, traces) est conservé.")
    return 0


def _file_settings(config: Config) -> list[tuple[str, str]]:
    """Every configured path that must exist (certificates, keys, PKCS#11 module, reference kit)."""
    found: list[tuple[str, str]] = []
    for section in fields(config):
        value = getattr(config, section.name)
        if not is_dataclass(value):
            continue
        for item in fields(value):
            setting: Any = getattr(value, item.name)
            looks_like_path = item.name.endswith(("_file", "_path", "_dir", "module")) and item.name not in (
                "data_dir", "log_dir", "state_dir", "cache_dir")
            if looks_like_path and isinstance(setting, str) and setting:
                found.append((f"{section.name}.{item.name}", setting))
    return found


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    """Check what a workstation needs; OK / ATTENTION / ERREUR lines, exit 1 on any error."""
    from agent.cli.commands import agent_request
    from agent.store.masterkey import describe as describe_master_key

    problems = 0

    def line(level: str, text: str) -> None:
        nonlocal problems
        problems += level == "ERREUR"
        print(f"{level:9} {text}")

    line("OK", f"configuration valide : {config.source}")
    data_dir = config.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".doctor"
        probe.write_text("ok")
        probe.unlink()
        line("OK", f"dossier de données accessible en écriture : {data_dir}")
    except OSError as exc:
        line("ERREUR", f"dossier de données inaccessible : {data_dir} ({exc.strerror})")
    line(*describe_master_key(data_dir, config.store.master_key))
    try:
        status = agent_request(config, "GET", "/v1/status")
        line("OK", f"agent {status['version']} en marche sur ce dossier")
        for warning in status.get("warnings", []):
            line("ATTENTION", warning)
    except RelaisError as exc:
        line("ATTENTION", f"agent arrêté ou injoignable : {exc.message}")
    for key, value in _file_settings(config):
        if Path(value).exists():
            line("OK", f"{key} : {value}")
        else:
            line("ERREUR", f"{key} : fichier absent ({value})")
    if sys.platform == "linux":
        if Path("/run/pcscd/pcscd.comm").exists():
            line("OK", "service de cartes à puce (pcscd) présent")
        else:
            line("ATTENTION", "pcscd ne semble pas lancé : les lecteurs de cartes ne seront pas vus")
        service, _ = _targets()
        line("OK" if service.exists() else "ATTENTION",
             "démarrage automatique installé" if service.exists() else "démarrage automatique absent "
             "(relais install --user)")
    return 1 if problems else 0
