"""`relais orders list|cancel|retry-failed`: the send-order queue from the command line, through the agent's API."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections.abc import Callable

from agent.cli.commands import agent_request, load_client

_STATES_FR = {
    "scheduled": "programmé", "ready": "prêt", "sending": "en cours d'envoi", "sent": "envoyé",
    "retrying": "nouvel essai prévu", "waiting_network": "attend le réseau", "waiting_card": "attend la carte CPS",
    "failed": "en échec", "cancelled": "annulé",
}


def cmd_orders(args: argparse.Namespace) -> int:
    config = load_client(args)
    if args.orders_command == "cancel":
        order = agent_request(config, "POST", f"/v1/orders/{urllib.parse.quote(args.id, safe='')}/cancel", {})
        print(f"Envoi {order['id']} annulé.")
        return 0
    if args.orders_command == "retry-failed":
        result = agent_request(config, "POST", "/v1/orders/retry-failed")
        retried = int(result["retried"])
        print("Aucun envoi en échec." if not retried else f"{retried} envoi(s) en échec relancé(s).")
        return 0
    query = {"limit": str(args.limit)}
    if args.state:
        query["state"] = args.state
    listing = agent_request(config, "GET", "/v1/orders?" + urllib.parse.urlencode(query))
    if args.json:
        print(json.dumps(listing, ensure_ascii=False, indent=2))
        return 0
    if not listing["items"]:
        print("Aucun envoi.")
    for order in listing["items"]:
        deliveries = ", ".join(f"{d['destination']} {_STATES_FR.get(d['state'], d['state'])}"
                               for d in order["deliveries"])
        print(f"{order['id']}\t{order['created_at']}\t{_STATES_FR.get(order['state'], order['state'])}"
              f"\t{deliveries}")
    return 0


def add_parser(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Declare `orders list|cancel|retry-failed` (``add`` is the CLI's subcommand factory)."""
    from agent.cli import _common

    orders = add("orders", "ordres d'envoi au DMP et par MSSanté")
    sub = orders.add_subparsers(dest="orders_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="lister les envois, du plus récent au plus ancien")
    _common(listing, top=False)
    listing.add_argument("--state", choices=sorted(_STATES_FR), help="seulement les envois dans cet état")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="au plus N envois (défaut 50)")
    listing.add_argument("--json", action="store_true", help="sortie JSON")
    cancel = sub.add_parser("cancel", help="annuler un envoi qui n'est pas encore parti")
    _common(cancel, top=False)
    cancel.add_argument("id", metavar="ID", help="identifiant de l'envoi (relais orders list)")
    retry_all = sub.add_parser("retry-failed", help="réessayer tout : relancer tous les envois en échec")
    _common(retry_all, top=False)
