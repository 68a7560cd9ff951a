"""MSSanté routes: correspondents' address lookup in the Annuaire santé (``GET /v1/directory?name=``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.spec import RouteTable, json_response, problem_response
from agent.errors import Unavailable
from agent.mss.directory import check_query

ENTRY_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["name", "mss_addresses"],
    "properties": {"name": {"type": "string"}, "family_name": {"type": "string"}, "given_name": {"type": "string"},
                   "rpps": {"type": "string"}, "profession": {"type": "string"},
                   "mss_addresses": {"type": "array", "items": {"type": "string"}}}}


async def directory(request: web.Request) -> web.Response:
    name = check_query(request.query.get("name", ""))
    client = request.app[SERVICES].mss.directory
    if client is None:
        raise Unavailable("L'Annuaire santé n'est pas configuré sur cet agent (mss.directory_url).",
                          code="directory_unavailable")
    entries = await client.search(name)
    return web.json_response({"items": [e.as_dict() for e in entries]})


def register(table: RouteTable) -> None:
    table.get("/v1/directory", directory, summary="Rechercher l'adresse MSSanté d'un correspondant (Annuaire santé)",
              tag="mss", parameters=({"name": "name", "in": "query", "required": True, "schema": {"type": "string"}},),
              responses={200: json_response("Professionnels trouvés avec leurs adresses MSSanté", {
                  "type": "object", "properties": {"items": {"type": "array", "items": ENTRY_SCHEMA}}}),
                  422: problem_response("invalid_input"), 503: problem_response("directory_unavailable")})
