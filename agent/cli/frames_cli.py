"""`relais frames on|off|status|test-code|export`: the frames journal of the homologation, straight from the store.

The switch and the test code are written into the store: a running agent follows them within a few seconds
(``FramesJournal.refresh``), a stopped one at its next start. Export opens the frames with the master key.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agent.cli.commands import load
from agent.clock import parse_rfc3339
from agent.config import Config
from agent.errors import InvalidInput, NotFound
from agent.homologation.export import export_frames
from agent.store import frames as repo
from agent.store.crypto import ContentCipher
from agent.store.db import open_sync
from agent.store.masterkey import load_master_key


def _when(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
        return parse_rfc3339(text).timestamp()
    except ValueError:
        raise InvalidInput(f"--{name} : date attendue en RFC 3339 ou AAAA-MM-JJ ({text!r}).") from None


def cmd_frames(args: argparse.Namespace) -> int:
    config = load(args)
    path = config.data_dir / "relais.db"
    if args.frames_command in ("status", "export") and not path.exists():
        raise NotFound(f"Aucune base Relais dans {config.data_dir}.", code="store_absent")
    conn = open_sync(path)
    try:
        command = args.frames_command
        if command in ("on", "off"):
            _write(conn, repo.ENABLED_KEY, "1" if command == "on" else "0")
            print("Journal des trames activé : chaque échange avec le DMP, l'INSi et MSSanté est conservé "
                  f"(chiffré) {config.homologation.frames_retention_days:g} jour(s)." if command == "on"
                  else "Journal des trames désactivé : plus aucun échange n'est conservé.")
            print("Un agent en cours d'exécution l'applique dans les secondes qui viennent.", file=sys.stderr)
            return 0
        if command == "test-code":
            code = "" if args.clear else (args.code or "").strip()
            if not args.clear and not code:
                raise InvalidInput("Code de test attendu (ex. 2.1-010), ou --clear.")
            _write(conn, repo.TEST_CODE_KEY, code)
            print(f"Les trames sont classées sous le test {code}." if code
                  else "Les trames ne sont plus classées sous un code de test.")
            return 0
        if command == "status":
            _status(conn, config)
            return 0
        cipher = ContentCipher(load_master_key(config.data_dir, config.store.master_key).key)
        exported = export_frames(conn, cipher, Path(args.dir), since=_when(args.since, "since"),
                                 until=_when(args.until, "until"), test_code=args.test)
        print(f"{exported.count} échange(s) exporté(s) dans {args.dir} ({len(exported.files)} fichier(s)).",
              file=sys.stderr)
        return 0
    finally:
        conn.close()


def _write(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        repo.write_setting(conn, key, value)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _status(conn: sqlite3.Connection, config: Config) -> None:
    enabled, code = repo.read_settings(conn)
    section = config.homologation
    on = section.frames if enabled is None else enabled
    code = section.test_code if code is None else code
    total, oldest = repo.count(conn)
    print(f"Journal des trames : {'activé' if on else 'désactivé'}"
          f"{' (configuration)' if enabled is None else ''}")
    print(f"Code de test : {code or 'aucun'}")
    print(f"Conservation : {section.frames_retention_days:g} jour(s)")
    print(f"Échanges conservés : {total}" + (f" (le plus ancien : {oldest})" if oldest else ""))


def add_parser(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Declare `frames on|off|status|test-code|export` (``add`` is the CLI's subcommand factory)."""
    from agent.cli import _common

    frames = add("frames", "journal des trames échangées avec le DMP, l'INSi et MSSanté (homologation CNDA)")
    sub = frames.add_subparsers(dest="frames_command", required=True, metavar="ACTION")
    for name, help_ in (("on", "conserver chaque échange (chiffré, effacé après la durée de conservation)"),
                        ("off", "ne plus conserver les échanges"),
                        ("status", "état du journal")):
        _common(sub.add_parser(name, help=help_), top=False)
    code = sub.add_parser("test-code", help="classer les trames suivantes sous un code de test du CNDA")
    _common(code, top=False)
    code.add_argument("code", nargs="?", help="code de test (ex. 2.1-010)")
    code.add_argument("--clear", action="store_true", help="ne plus classer les trames sous un code")
    export = sub.add_parser("export", help="écrire les trames en fichiers (une requête et une réponse par échange)")
    _common(export, top=False)
    export.add_argument("--since", metavar="DATE", help="début inclus (RFC 3339 ou AAAA-MM-JJ)")
    export.add_argument("--until", metavar="DATE", help="fin exclue (RFC 3339 ou AAAA-MM-JJ)")
    export.add_argument("--test", metavar="CODE", help="seulement les trames de ce code de test")
    export.add_argument("dir", help="dossier de sortie")
