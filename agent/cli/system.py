"""`relais install`, `relais uninstall` and `relais doctor`: the agent as part of the workstation."""

from __future__ import annotations

import argparse
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.errors import ConfigError, RelaisError


def cmd_install(args: argparse.Namespace) -> int:
    from agent import autostart

    all_users = bool(getattr(args, "all_users", False))
    if not all_users:  # the setup run for every user puts relais on the machine's PATH itself
        announce_launcher(autostart.install_launcher())
    if getattr(args, "path_only", False):
        return 0
    config = load_quietly(args)
    autostart.install(autostart.this_launch(getattr(args, "config", None), getattr(args, "data_dir", None)),
                      all_users=all_users, peer_port=config.practice.peer_port if config else 0)
    print("L'agent démarrera à chaque ouverture de session ; l'icône aussi.")
    return 0


def announce_launcher(path: Path) -> None:
    """Say where the `relais` command went, and how to reach it when its folder is not on this PATH yet."""
    import sys

    from agent import autostart

    print(f"Commande relais installée : {path}")
    if autostart.on_path(path.parent):
        return
    if sys.platform == "win32":
        print(f"Ce dossier n'est pas dans le PATH de cette session : ajoutez-y {path.parent}, ou lancez {path}.")
    else:
        print(f"Ce dossier n'est pas encore dans le PATH de ce terminal (il le sera à la prochaine ouverture de "
              f"session si ~/.profile l'ajoute) ; d'ici là : export PATH=\"{path.parent}:$PATH\"")


def cmd_uninstall(args: argparse.Namespace) -> int:
    from agent import autostart

    all_users = bool(getattr(args, "all_users", False))
    autostart.uninstall(all_users=all_users)
    if not all_users:
        removed = autostart.remove_launcher()
        if removed is not None:
            print(f"supprimé : {removed}")
    print("Relais est désinstallé de la session ; le dossier de données (file d'envoi, traces) est conservé.")
    return 0


def load_quietly(args: argparse.Namespace) -> Config | None:
    """The configuration when it loads; `relais install` still writes its entries with a broken one."""
    from agent.cli.commands import load

    try:
        return load(args)
    except RelaisError:
        return None


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
    as_json = bool(getattr(args, "json", False))
    checks: list[dict[str, str]] = []

    def line(level: str, text: str) -> None:
        nonlocal problems
        problems += level == "ERREUR"
        checks.append({"level": _LEVELS[level], "text": text})
        if not as_json:
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
    _permission_lines(data_dir, line)
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
    _kit_line(config, line)
    _dmp_params_line(config, line)
    _mss_line(config, line)
    _platform_lines(config, line)
    if as_json:
        import json

        print(json.dumps({"ok": not problems, "checks": checks}, ensure_ascii=False, indent=2))
    return 1 if problems else 0


_LEVELS = {"OK": "ok", "ATTENTION": "warning", "ERREUR": "error"}  # stable English codes for scripts


def _permission_lines(data_dir: Path, line: Any) -> None:
    """Issue 23 #3: nothing of the data folder readable by another account (POSIX modes; see agent/store/private)."""
    from agent.store.private import exposed

    try:
        found = exposed(data_dir)
    except OSError as exc:  # Windows: the DACL could not be read
        line("ATTENTION", f"droits du dossier de données non vérifiés : {exc}")
        return
    for item in found:
        line("ERREUR", item.describe())
    if not found:
        line("OK", f"dossier de données et fichiers lisibles par ce seul compte : {data_dir}")


def _kit_line(config: Config, line: Any) -> None:
    """Which CI-SIS kit validates the documents (cda.kit_dir is checked with the other paths)."""
    from agent.cda.kit import installed_kit, kit_root

    if config.cda.kit_dir:
        return
    try:
        manifest = installed_kit(config.data_dir)
    except RelaisError as exc:
        line("ERREUR", exc.message)
        return
    if manifest is not None:
        line("OK", f"kit CI-SIS {manifest.version} installé : {kit_root(config.data_dir) / 'ci-sis'} "
                   "(relais kit status pour le vérifier)")
    elif config.cda.allow_unvalidated:
        line("ATTENTION", "aucun kit CI-SIS : les documents CDA partent SANS validation (cda.allow_unvalidated)")
    else:
        line("ERREUR", "aucun kit CI-SIS : aucun document CDA n'est accepté (relais kit install <archive>)")


def _dmp_params_line(config: Config, line: Any) -> None:
    """The DMP's parameters file (EX_GEN-1540): how old the copy on disk is; a week or more is an error."""
    import datetime as dt

    from agent.dmp.params import STALE_HOURS, cached_status

    if not config.dmp.params_url:
        if config.dmp.url:
            line("ATTENTION", "fichier des paramètres du DMP non configuré (dmp.params_url) : âge de la majorité, "
                              "gestion des mineurs et cumul des masquages viennent de la configuration")
        return
    cached = cached_status(config.data_dir / "cache", dt.datetime.now(dt.UTC))
    if cached is None:
        line("ERREUR", f"fichier des paramètres du DMP jamais téléchargé ({config.dmp.params_url})")
        return
    age = float(cached["age_hours"])
    text = f"fichier des paramètres du DMP téléchargé le {cached['fetched_at']:%d/%m/%Y %H:%M} UTC (il y a {age:.0f} h)"
    line("OK" if age <= STALE_HOURS else "ERREUR", text if age <= STALE_HOURS else
         f"{text} : plus d'une semaine, il doit être relu au moins chaque semaine (EX_GEN-1540)")


def _mss_line(config: Config, line: Any) -> None:
    """Why MSSanté would refuse to start (e.g. no IGC-Santé CA file), before the agent is started; without
    ``smtp_host``, what the DNS SRV autoconfiguration finds (or why it finds nothing)."""
    import asyncio

    from agent.mss import dnssrv
    from agent.mss.factory import check_section, resolver_settings

    section = config.mss
    if not section.enabled:
        return
    try:
        check_section(section)
    except ConfigError as exc:
        line("ERREUR", f"MSSanté ne démarrera pas : {exc.message}")
        return
    line("OK", f"MSSanté configurée : {section.sender_address}")
    if section.smtp_host:
        return
    domain = section.sender_address.rsplit("@", 1)[-1]
    try:
        found = asyncio.run(dnssrv.discover(domain, resolver_settings(section)))
    except ConfigError as exc:
        line("ERREUR", f"MSSanté : {exc.message}")
    except RelaisError as exc:
        line("ATTENTION", f"MSSanté : {exc.message}")
    else:
        line("OK", f"MSSanté autoconfigurée par DNS SRV ({domain}) : {found.describe()}")
        if not found.imap:
            line("ATTENTION", "MSSanté : aucun serveur IMAP publié (_imaps._tcp, _imap._tcp) : accusés de "
                 "réception non lus, envoi incertain jamais vérifié")


def _platform_lines(config: Config, line: Any) -> None:
    """The smart-card service, the CPS module and autostart, in this OS's terms."""
    from agent import autostart
    from agent.platforms import cryptolib_candidates, default_pkcs11_module, pcsc_service

    service = pcsc_service()
    if config.cards.pcsc:
        try:
            from agent.cards.pcsc import service_answers
        except ImportError:
            line("ATTENTION", "module pyscard absent (paquet relais[cards]) : les lecteurs de cartes ne seront pas vus")
        else:
            if service_answers():
                line("OK", f"service de cartes à puce présent : {service.name}")
            else:
                line("ATTENTION", f"{service.name} ne répond pas : {service.start_hint}")
    if not config.cards.pkcs11_module:
        found = default_pkcs11_module()
        if found:
            line("OK", f"Cryptolib CPS trouvée : {found}")
        else:
            line("ATTENTION", "Cryptolib CPS absente (signature par carte CPS impossible) ; chemins essayés : "
                 + ", ".join(cryptolib_candidates()))
    if autostart.installed():
        line("OK", "démarrage automatique installé")
    else:
        line("ATTENTION", "démarrage automatique absent (relais install --user)")
