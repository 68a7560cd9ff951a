"""`relais kit install <archive or folder>` and `relais kit status`: the CI-SIS kit of this workstation.

Both work on the data folder, whether the agent runs or not; a running agent picks a newly installed kit up at its
next start.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agent.cda.kit import ABSENT, compile_schematrons, describe, install_kit, kit_status
from agent.clock import SystemClock
from agent.config import Config


def add_parser(add: Any) -> None:
    kit = add("kit", "kit CI-SIS de l'ANS (TestContenuCDA) : installation et état")
    kit_sub = kit.add_subparsers(dest="kit_command", required=True, metavar="ACTION")
    install = kit_sub.add_parser("install", help="installer le kit depuis une archive (.zip, .tar.gz) ou un dossier")
    install.add_argument("source", metavar="ARCHIVE_OU_DOSSIER")
    install.add_argument("--version", dest="kit_version", default=None,
                         help="version à enregistrer (défaut : le nom de l'archive ou du dossier)")
    status = kit_sub.add_parser("status", help="kit installé : emplacement, version, empreinte, schématrons")
    status.add_argument("--json", action="store_true", help="sortie JSON")
    status.add_argument("--no-compile", action="store_true", help="ne pas vérifier que les schématrons compilent")
    for parser in (install, status):
        parser.add_argument("--config", metavar="FICHIER", default=argparse.SUPPRESS, help="configuration TOML")
        parser.add_argument("--data-dir", metavar="DOSSIER", default=argparse.SUPPRESS, help="dossier de données")


def run_kit(args: argparse.Namespace, config: Config) -> int:
    if args.kit_command == "install":
        manifest = install_kit(Path(args.source), config.data_dir, version=args.kit_version,
                               now=SystemClock().now())
        print(f"Kit CI-SIS {manifest.version} installé ({manifest.files} fichiers), SHA-256 de la source "
              f"{manifest.source_sha256}.")
        if config.cda.kit_dir:
            print(f"Attention : la configuration (cda.kit_dir = {config.cda.kit_dir}) désigne un autre kit, "
                  "qui reste celui de l'agent.")
        else:
            print("L'agent l'utilisera à son prochain démarrage.")
        return 0
    status = kit_status(config.data_dir)
    used = Path(config.cda.kit_dir) if config.cda.kit_dir else (status.path if status.installed else None)
    if used is not None and not args.no_compile:
        cache = Path(config.cda.cache_dir) if config.cda.cache_dir else config.data_dir / "cache" / "cda"
        status = type(status)(status.installed, status.path, status.intact, compile_schematrons(used, cache))
    if args.json:
        print(json.dumps({**status.as_dict(), "used": str(used) if used else None}, ensure_ascii=False, indent=2))
    else:
        for line in describe(status):
            print(line)
        if config.cda.kit_dir:
            print(f"Kit utilisé par l'agent : {config.cda.kit_dir} (clé cda.kit_dir de la configuration)")
    broken = status.intact is False or any(why not in ("ok", ABSENT) for why in status.compiled.values())
    return 1 if broken or used is None else 0
