"""`relais practice init | invite | join CODE --peer HOST:PORT | remove NAME | list`.

They work on this workstation's store directly (like `relais token`), so they run with or without the agent;
a running agent picks the change up at its next presence tick (it starts its peer listener once paired).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.clock import SystemClock, rfc3339


def add_parser(sub: Any, common: Callable[..., None]) -> None:
    practice = sub.add_parser("practice", help="cabinet : postes appairés pour le routage des envois",
                              description="cabinet : postes appairés pour le routage des envois")
    common(practice, top=False)
    actions = practice.add_subparsers(dest="practice_command", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="créer le cabinet (autorité de certification) sur ce poste")
    common(init, top=False)
    init.add_argument("--name", default="Cabinet", help="nom du cabinet")
    init.add_argument("--workstation", default=None, help="nom de ce poste (défaut : agent.workstation_id)")
    invite = actions.add_parser("invite", help="code à usage unique pour faire entrer un poste")
    common(invite, top=False)
    join = actions.add_parser("join", help="faire entrer ce poste dans un cabinet avec un code")
    common(join, top=False)
    join.add_argument("code", metavar="CODE", help="code à usage unique donné par « relais practice invite »")
    join.add_argument("--peer", required=True, metavar="HOST:PORT", help="poste qui a émis le code")
    join.add_argument("--workstation", default=None, help="nom de ce poste (défaut : agent.workstation_id)")
    remove = actions.add_parser("remove", help="retirer un poste du cabinet (son certificat est révoqué)")
    common(remove, top=False)
    remove.add_argument("name", metavar="NOM", help="nom du poste à retirer du cabinet")
    listing = actions.add_parser("list", help="postes du cabinet")
    common(listing, top=False)
    listing.add_argument("--json", action="store_true", help="sortie JSON")


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        value = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return value


def cmd_practice(args: argparse.Namespace) -> int:
    from agent.cli.commands import load
    from agent.routing import practice
    from agent.routing.peers import split_address
    from agent.store import routing as repo
    from agent.store.db import open_sync

    config = load(args)
    now = SystemClock().now()
    conn = open_sync(config.data_dir / "relais.db")
    try:
        command = args.practice_command
        if command == "init":
            name = args.workstation or config.workstation_id
            member = _transaction(conn, lambda c: practice.init(c, config.data_dir, name, args.name, now))
            print(f"Cabinet « {member.practice_name} » créé ; ce poste s'appelle « {member.workstation} ».")
            print("Faites entrer les autres postes avec `relais practice invite` puis `relais practice join`.")
        elif command == "invite":
            ttl = config.practice.invite_ttl_seconds
            code, expires = _transaction(conn, lambda c: practice.invite(c, now, ttl))
            print(code)
            local = expires.astimezone().strftime("%H:%M")
            print(f"Code à usage unique, valable jusqu'à {local} ({rfc3339(expires)}). Sur l'autre poste :\n"
                  f"  relais practice join {code} --peer <adresse de ce poste>:{config.practice.peer_port}",
                  flush=True)
        elif command == "join":
            host, port = split_address(args.peer)
            name = args.workstation or config.workstation_id
            member = _transaction(conn, lambda c: practice.join(c, config.data_dir, args.code, host, port, name,
                                                                   now))
            print(f"Ce poste (« {member.workstation} ») fait maintenant partie du cabinet "
                  f"« {member.practice_name} ».")
        elif command == "remove":
            crl = _transaction(conn, lambda c: practice.remove(c, config.data_dir, args.name, now))
            print(f"Poste « {args.name} » retiré du cabinet : son certificat est refusé dès maintenant "
                  f"(liste de révocation n° {crl.number}, transmise aux autres postes).")
        elif getattr(args, "json", False):
            member = repo.membership(conn)
            print(json.dumps({
                "practice": member.practice_name if member else None,
                "workstation": member.workstation if member else None,
                "authority": bool(member and member.is_ca),
                "members": [{"name": name, "joined_at": datetime.fromtimestamp(issued, UTC).isoformat(),
                             "removed_at": datetime.fromtimestamp(revoked, UTC).isoformat() if revoked else None}
                            for name, _serial, issued, revoked in (repo.list_members(conn) if member else [])],
            }, ensure_ascii=False, indent=2))
        else:
            member = repo.membership(conn)
            if member is None:
                print("Ce poste ne fait partie d'aucun cabinet.")
                return 0
            role = "autorité du cabinet" if member.is_ca else "membre"
            print(f"Cabinet « {member.practice_name} » ; ce poste : « {member.workstation} » ({role}).")
            for name, _serial, issued, revoked in repo.list_members(conn):
                when = datetime.fromtimestamp(issued, UTC).date().isoformat()
                state = f"retiré le {datetime.fromtimestamp(revoked, UTC).date()}" if revoked else "actif"
                print(f"  {name}\tentré le {when}\t{state}")
    finally:
        conn.close()
    return 0
