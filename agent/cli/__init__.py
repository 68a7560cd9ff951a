"""The `relais` command line: parses, loads the configuration, and hands over to the wiring.

This package is the composition root: ``wiring`` builds and connects every service; nothing else does.
Every command takes ``--config FILE`` and ``--data-dir DIR`` before or after the subcommand.
Messages are French (an administrator or the doctor reads them); errors end with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent import __version__
from agent.cli import french
from agent.errors import RelaisError


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FICHIER", default=default, help="fichier de configuration TOML")
    parser.add_argument("--data-dir", metavar="DOSSIER", default=default, help="dossier de données de l'agent")


def build_parser() -> argparse.ArgumentParser:
    french.install()
    parser = argparse.ArgumentParser(prog="relais", description="Agent Relais : cartes, INSi, DMP et MSSanté.")
    parser.add_argument("--version", action="version", version=f"relais {__version__}",
                        help="afficher la version et quitter")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMANDE")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _common(p, top=False)
        return p

    add("run", "démarrer l'agent")

    demo = add("demo", "démarrer l'agent en mode démonstration (cartes virtuelles et simulateurs)")
    demo.add_argument("--port", type=int, default=None, help="port de l'API locale (défaut 7463)")
    demo.add_argument("--delay", type=int, default=None, metavar="SECONDES", help="délai d'annulation des envois")
    demo.add_argument("--token-file", metavar="FICHIER", help="écrire le jeton d'API dans ce fichier (sinon affiché)")
    demo.add_argument("--cards", choices=["both", "cps", "vitale", "none"], default="both",
                      help="cartes virtuelles insérées au démarrage")
    demo.add_argument("--sandbox", metavar="URL", default="", help="utiliser un `relais sandbox` déjà lancé")
    demo.add_argument("--peer-port", type=int, default=None, help="port du cabinet (routage entre postes)")
    demo.add_argument("--no-tray", action="store_true", help="ne pas lancer l'icône de notification")

    sandbox = add("sandbox", "lancer les simulateurs DMP, INSi et MSSanté seuls")
    sandbox.add_argument("--port", type=int, default=7470, help="port des routes /_sandbox (défaut 7470)")
    sandbox.add_argument("--state-dir", metavar="DOSSIER", default=None, help="dossier d'état des simulateurs")

    tray = add("tray", "icône de notification et tableau de bord de l'agent de ce poste")
    tray.add_argument("--backend", choices=["xorg", "gtk", "appindicator", "win32", "darwin", "dummy"], default=None,
                      help="moteur pystray (défaut : automatique)")

    install = add("install", "démarrer l'agent et l'icône à chaque ouverture de session, et mettre la commande "
                             "relais dans le dossier des commandes de l'utilisateur (~/.local/bin ; Windows : "
                             "Microsoft\\WindowsApps du dossier LOCALAPPDATA)")
    install.add_argument("--user", action="store_true", default=True, help="pour l'utilisateur courant (défaut)")
    install.add_argument("--path-only", action="store_true",
                         help="seulement la commande relais, sans démarrage automatique (scripts/demo.sh)")
    install.add_argument("--all-users", action="store_true",
                         help="Windows : pour chaque session (clé Run de la machine, pare-feu du port du cabinet)")
    uninstall = add("uninstall", "retirer le démarrage automatique (les données sont conservées)")
    uninstall.add_argument("--all-users", action="store_true", help="Windows : retirer l'installation « --all-users »")
    doctor = add("doctor", "vérifier ce poste : configuration, dossier de données, certificats, lecteurs, agent")
    doctor.add_argument("--json", action="store_true", help="sortie JSON ({\"ok\": ..., \"checks\": [...]})")

    dashboard = add("dashboard", "ouvrir le tableau de bord de l'agent dans le navigateur (lien à usage unique)")
    dashboard.add_argument("--no-browser", action="store_true", help="afficher le lien sans ouvrir le navigateur")
    dashboard.add_argument("--json", action="store_true", help="sortie JSON ({\"url\": ...})")
    backup = add("backup", "copie cohérente de la base de l'agent (file d'envoi, traces, consentements), "
                           "même pendant qu'il tourne")
    backup.add_argument("file", metavar="FICHIER", help="fichier de sauvegarde à écrire (remplacé s'il existe) ; la "
                        "clé maîtresse n'y est pas : elle reste dans le trousseau du système ou master.key")

    status = add("status", "état de l'agent en cours d'exécution")
    status.add_argument("--json", action="store_true", help="sortie JSON")

    token = add("token", "jetons d'accès des logiciels clients")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="créer un jeton pour un client nommé")
    _common(create, top=False)
    create.add_argument("--name", required=True, metavar="NOM", help="nom du client (logiciel) qui utilisera ce jeton")
    listing = token_sub.add_parser("list", help="lister les jetons")
    _common(listing, top=False)
    listing.add_argument("--json", action="store_true", help="sortie JSON")
    revoke = token_sub.add_parser("revoke", help="révoquer le jeton d'un client")
    _common(revoke, top=False)
    revoke.add_argument("name", metavar="NOM", help="nom du client dont le jeton est révoqué")

    from agent.cli.practice import add_parser as add_practice

    add_practice(sub, _common)

    traces = add("traces", "traces des accès au DMP et des envois")
    traces_sub = traces.add_subparsers(dest="traces_command", required=True, metavar="ACTION")
    verify = traces_sub.add_parser("verify", help="vérifier la chaîne d'empreintes des traces")
    _common(verify, top=False)
    export = traces_sub.add_parser("export", help="exporter les traces (JSON ou CSV)")
    _common(export, top=False)
    export.add_argument("--from", dest="since", metavar="DATE", help="début inclus (RFC 3339 ou AAAA-MM-JJ)")
    export.add_argument("--to", dest="until", metavar="DATE", help="fin exclue (RFC 3339 ou AAAA-MM-JJ)")
    export.add_argument("--ins", help="INS du patient")
    export.add_argument("--actor", metavar="RPPS", help="RPPS du professionnel")
    export.add_argument("--action", help="action (dmp.search, order.sent...)")
    export.add_argument("--format", choices=["json", "csv"], default="json")
    export.add_argument("--output", metavar="FICHIER", help="fichier de sortie (défaut : sortie standard)")

    from agent.cli.kit import add_parser as add_kit

    add_kit(add)

    from agent.cli.orders_cli import add_parser as add_orders

    add_orders(add)

    from agent.cli.frames_cli import add_parser as add_frames
    from agent.cli.homologation_cli import add_parser as add_homologation

    add_frames(add)
    add_homologation(add)
    return parser


def disk_message(error: OSError) -> str:
    from agent.store.db import disk_problem

    where = f" ({error.filename})" if error.filename else ""
    problem = disk_problem(error)
    if problem == "disk_full":
        return f"le disque est plein{where} : libérez de la place puis relancez la commande."
    if problem == "disk_read_only":
        return f"écriture interdite{where} (disque en lecture seule ou droits insuffisants)."
    return f"erreur d'accès au disque{where} : {error.strerror or error}."


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from agent.cli import commands

    try:
        return commands.dispatch(args)
    except RelaisError as error:
        print(f"relais : {error.message}", file=sys.stderr)
        return 2
    except OSError as error:  # a full or read-only disk at start: a French sentence, never a traceback
        print(f"relais : {disk_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
