"""``GET /v1/dmp/parameters`` and ``POST /v1/dmp/parameters/refresh``: the DMP's parameters file in force (where it
came from, how old it is, its values) and a download now, e.g. after its URL changed (EX_GEN-1222). The file itself
is ``agent/dmp/params.py``; ``/v1/status`` carries the same state under ``dmp_parameters``."""

from __future__ import annotations

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.spec import RouteTable, json_response, problem_response
from agent.dmp.params import DmpParamsPart
from agent.errors import Unavailable

STATE = {"type": "object", "required": ["source", "values"], "properties": {
    "url": {"type": "string"}, "final_url": {"type": ["string", "null"], "description": "after the redirects"},
    "source": {"enum": ["dmp", "cache", "configuration"]},
    "fetched_at": {"type": ["string", "null"], "format": "date-time"},
    "age_hours": {"type": ["number", "null"]}, "stale": {"type": "boolean"},
    "last_error": {"type": ["string", "null"]},
    "values": {"type": "object", "properties": {
        "majority_age": {"type": "integer"}, "minors_management": {"type": "boolean"},
        "allow_masked_and_invisible": {"type": "boolean"}, "production": {"type": ["boolean", "null"]}}}}}


def _part(request: web.Request) -> DmpParamsPart:
    part = request.app[SERVICES].dmp_params
    if part is None:
        raise Unavailable("Les paramètres du DMP ne sont pas gérés sur ce poste.", code="dmp_disabled")
    return part


async def parameters(request: web.Request) -> web.Response:
    return web.json_response(_part(request).status())


async def refresh(request: web.Request) -> web.Response:
    part = _part(request)
    await part.refresh()
    return web.json_response(part.status())


def register(table: RouteTable) -> None:
    table.get("/v1/dmp/parameters", parameters, tag="dmp",
              summary="Paramètres du DMP en vigueur (fichier des paramètres : origine, âge, valeurs)",
              responses={200: json_response("Paramètres en vigueur", STATE)})
    table.post("/v1/dmp/parameters/refresh", refresh, tag="dmp",
               summary="Télécharger maintenant le fichier des paramètres du DMP (redirections HTTPS suivies)",
               responses={200: json_response("Paramètres relus", STATE),
                          502: problem_response("Fichier refusé (dmp_params_invalid) ou adresse non configurée "
                                                "(dmp_params_not_configured) : les paramètres en vigueur restent"),
                          503: problem_response("Serveur du fichier injoignable (dmp_params_unavailable)")})
