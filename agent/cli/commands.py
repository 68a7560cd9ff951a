"""What each `relais` command does; errors are RelaisError, printed in French by ``main``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from agent.clock import SystemClock, rfc3339
from agent.config import Config, load_config, resolve_config_path
from agent.errors import Unavailable
from agent.store.db import open_sync
from agent.store.tokens import create_token, list_tokens, revoke_token

CLI_TOKEN_NAME = "relais-cli"  # noqa: S105 - a client name, not a secret
TRAY_TOKEN_NAME = "relais-tray"  # noqa: S105 - a client name, not a secret


def load(args: argparse.Namespace, **overrides: dict[str, Any]) -> Config:
    path = resolve_config_path(getattr(args, "config", None))
    if getattr(args, "data_dir", None):
        overrides.setdefault("agent", {})["data_dir"] = str(Path(args.data_dir).resolve())
    return load_config(path, **overrides)


def load_client(args: argparse.Namespace) -> Config:
    """The configuration of a command that talks to the running agent. With no data folder named on the command
    line (--data-dir, --config) and no agent running on the configured one, the agent this session announced
    (``agent.locator``: `relais demo` too) is the one asked."""
    from agent.cli.wiring import RUNTIME_FILE
    from agent.locator import session_data_dir

    config = load(args)
    named = getattr(args, "data_dir", None) or getattr(args, "config", None)
    if named or (config.data_dir / RUNTIME_FILE).exists():
        return config
    announced = session_data_dir()
    if announced is None or not (announced / RUNTIME_FILE).exists():
        return config
    return load(args, agent={"data_dir": str(announced)})


def dispatch(args: argparse.Namespace) -> int:
    handler = {
        "run": cmd_run,
        "tray": cmd_tray,
        "install": _system("cmd_install"),
        "uninstall": _system("cmd_uninstall"),
        "doctor": lambda args: _system("cmd_doctor")(args, load(args)),
        "demo": cmd_demo,
        "dashboard": cmd_dashboard,
        "sandbox": cmd_sandbox,
        "status": cmd_status,
        "backup": cmd_backup,
        "token": cmd_token,
        "practice": _practice,
        "traces": cmd_traces,
        "orders": cmd_orders,
        "frames": cmd_frames,
        "homologation": cmd_homologation,
        "kit": cmd_kit,
    }[args.command]
    return int(handler(args))


def cmd_orders(args: argparse.Namespace) -> int:
    from agent.cli.orders_cli import cmd_orders as run

    return run(args)


def cmd_frames(args: argparse.Namespace) -> int:
    from agent.cli.frames_cli import cmd_frames as run

    return run(args)


def cmd_homologation(args: argparse.Namespace) -> int:
    from agent.cli.homologation_cli import cmd_homologation as run

    return run(args)


def cmd_kit(args: argparse.Namespace) -> int:
    from agent.cli.kit import run_kit

    return run_kit(args, load(args))


def _practice(args: argparse.Namespace) -> int:
    from agent.cli.practice import cmd_practice

    return cmd_practice(args)


def _system(name: str) -> Any:
    from agent.cli import system

    return getattr(system, name)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.cli.wiring import serve

    return asyncio.run(serve(load(args)))


def cmd_demo(args: argparse.Namespace) -> int:
    import platformdirs

    from agent.cli.wiring import DemoOptions, serve

    agent: dict[str, Any] = {}
    if not getattr(args, "data_dir", None):
        agent["data_dir"] = platformdirs.user_data_dir("relais-demo", appauthor=False)
    overrides: dict[str, dict[str, Any]] = {"sandbox": {"enabled": True, "url": args.sandbox}, "agent": agent}
    if args.port is not None:
        overrides["api"] = {"port": args.port}
    config = load(args, **overrides)
    demo = DemoOptions(
        token_file=Path(args.token_file) if args.token_file else None,
        cards=args.cards,
        sandbox_url=args.sandbox,
        delay=args.delay,
        peer_port=args.peer_port,
        tray=not args.no_tray,
    )
    return asyncio.run(serve(config, demo))


def cmd_sandbox(args: argparse.Namespace) -> int:
    from agent.cli.sandbox import serve_sandbox

    config = load(args)
    state_dir = Path(args.state_dir) if args.state_dir else config.data_dir / "sandbox"
    return asyncio.run(serve_sandbox(state_dir, args.port, config))


def cmd_token(args: argparse.Namespace) -> int:
    config = load(args)
    conn = open_sync(config.data_dir / "relais.db")
    now = rfc3339(SystemClock().now())
    try:
        if args.token_command == "create":  # noqa: S105
            conn.execute("BEGIN IMMEDIATE")
            try:
                token = create_token(conn, args.name, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            print(token)
            print(f"Jeton créé pour « {args.name} » : il ne sera plus affiché.", file=sys.stderr)
        elif args.token_command == "list" and getattr(args, "json", False):  # noqa: S105
            print(json.dumps([{"name": info.name, "created_at": info.created_at, "revoked_at": info.revoked_at}
                              for info in list_tokens(conn)], ensure_ascii=False, indent=2))
        elif args.token_command == "list":  # noqa: S105
            for info in list_tokens(conn):
                state = f"révoqué le {info.revoked_at}" if info.revoked_at else "actif"
                print(f"{info.name}\t{state}\tcréé le {info.created_at}")
        else:
            conn.execute("BEGIN IMMEDIATE")
            try:
                revoke_token(conn, args.name, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            print(f"Jeton de « {args.name} » révoqué.")
    finally:
        conn.close()
    return 0


def cli_token(config: Config) -> str:
    return client_token(config, CLI_TOKEN_NAME, "cli.token")


def client_token(config: Config, name: str, filename: str) -> str:
    """A local client's own token (file 0600 in the data dir): whoever has the data dir may mint it."""
    path = config.data_dir / filename
    if path.exists():
        return path.read_text().strip()
    conn = open_sync(config.data_dir / "relais.db")
    now = rfc3339(SystemClock().now())
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if any(t.name == name and t.revoked_at is None for t in list_tokens(conn)):
                revoke_token(conn, name, now)
            token = create_token(conn, name, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    from agent.cli.wiring import _atomic_write

    _atomic_write(path, token.encode(), mode=0o600)
    return token


def agent_request(config: Config, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the running agent of this data dir over its localhost API."""
    from agent.cli.wiring import RUNTIME_FILE

    runtime = config.data_dir / RUNTIME_FILE
    if not runtime.exists():
        raise Unavailable(f"Aucun agent Relais en cours d'exécution pour {config.data_dir}.", code="agent_down")
    info = json.loads(runtime.read_text())
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{info['port']}{path}", data=data, method=method,
        headers={"Authorization": f"Bearer {cli_token(config)}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        problem = json.loads(exc.read() or b"{}")
        raise Unavailable(problem.get("detail", str(exc)), code=problem.get("code", "agent_error")) from exc
    except urllib.error.URLError as exc:
        raise Unavailable(f"L'agent Relais ne répond pas : {exc.reason}", code="agent_down") from exc


def cmd_tray(args: argparse.Namespace) -> int:
    """The tray is a plain HTTP client: it gets the agent's URL and its own token, nothing else."""
    import os

    from tray.app import main as tray_main

    config = load(args)
    if args.backend:
        os.environ["PYSTRAY_BACKEND"] = args.backend

    def locate() -> tuple[str, str]:
        from agent.cli.wiring import RUNTIME_FILE

        info = json.loads((config.data_dir / RUNTIME_FILE).read_text())
        return f"http://127.0.0.1:{info['port']}", client_token(config, TRAY_TOKEN_NAME, "tray.token")

    return tray_main(locate)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """A fresh one-time link to the dashboard of this data dir's agent, opened in the browser."""
    import webbrowser

    url = str(agent_request(load_client(args), "POST", "/v1/ui/login-link")["url"])
    if args.json:
        print(json.dumps({"url": url}))
        return 0
    opened = not args.no_browser and webbrowser.open(url)
    print(f"Tableau de bord{' ouvert' if opened else ''} : {url} (lien à usage unique, valable 60 s)")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from agent.store.backup import backup_database

    config = load(args)
    summary = backup_database(config.data_dir / "relais.db", Path(args.file))
    print(f"Sauvegarde écrite : {summary.path} ({summary.orders} envoi(s), {summary.size / 1_000_000:.1f} Mo).")
    print("La clé maîtresse n'est pas dans la sauvegarde (trousseau du système ou fichier master.key du dossier "
          "de données) : sans elle, le contenu des documents ne peut pas être relu.", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    config = load_client(args)
    status = agent_request(config, "GET", "/v1/status")
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=2))
        return 0
    print(f"Relais {status['version']} sur {status['workstation_id']}, démarré le {status['started_at']}")
    if status.get("sandbox"):
        print("Mode démonstration (bac à sable)")
    for warning in status.get("warnings", []):
        print(f"Attention : {warning}")
    for key in ("cards", "queue", "connectivity"):
        if key in status:
            print(f"{key} : {json.dumps(status[key], ensure_ascii=False)}")
    for peer in status.get("peers", []):
        cps = peer.get("cps") or {}
        card = f", carte CPS {cps['rpps']}{' (PIN saisi)' if cps.get('logged_in') else ''}" if cps else ""
        print(f"poste {peer['name']} : {'joignable' if peer.get('reachable') else 'injoignable'}{card}")
    return 0


def cmd_traces(args: argparse.Namespace) -> int:
    from agent.cli.traces import run_traces

    return run_traces(args, load(args))
