"""`GET /v1/peers`: the practice this workstation belongs to, and its peers (reachability, the CPS each holds)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.spec import RouteTable, json_response

PEER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "address", "reachable", "cps"],
    "properties": {
        "name": {"type": "string", "description": "nom du poste, tel que son certificat le porte"},
        "address": {"type": "string", "description": "dernière adresse HÔTE:PORT où il a répondu"},
        "reachable": {"type": "boolean"},
        "cps": {"type": ["object", "null"], "properties": {"rpps": {"type": "string"},
                                                           "logged_in": {"type": "boolean"}}},
        "last_seen": {"type": ["string", "null"], "format": "date-time"},
        "last_error": {"type": ["string", "null"]},
    },
}
PEERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["paired", "peers"],
    "properties": {
        "paired": {"type": "boolean", "description": "ce poste fait partie d'un cabinet"},
        "practice": {"type": ["string", "null"]},
        "workstation": {"type": "string"},
        "peer_port": {"type": ["integer", "null"], "description": "port d'écoute des pairs (mTLS)"},
        "peers": {"type": "array", "items": PEER_SCHEMA},
    },
}


async def list_peers(request: web.Request) -> web.Response:
    peers = request.app[SERVICES].routing.peers
    member = peers.member
    body = {
        "paired": member is not None,
        "practice": member.practice_name if member is not None else None,
        "workstation": member.workstation if member is not None else request.app[SERVICES].config.workstation_id,
        "peer_port": peers.port if member is not None else None,
        "peers": peers.peers_json(),
    }
    return web.json_response(body)


def register(table: RouteTable) -> None:
    table.get("/v1/peers", list_peers, summary="Postes du cabinet, joignables ou non, et la carte CPS de chacun",
              tag="peers", responses={200: json_response("Le cabinet et ses postes", PEERS_SCHEMA)})
