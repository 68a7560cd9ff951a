"""``GET /v1/dmp/{ins}/web-access`` and ``GET /v1/dmp/web-access``: the contextual URL that opens the DMP's
web access (Web-PS) on the patient's DMP (or the professional's dashboard) in the browser, without re-typing
the patient (``agent/dmp/web.py`` says what is public). The opening is traced with the professional's RPPS."""

from __future__ import annotations

from aiohttp import web

from agent.api.consent import OID_PARAM, request_actor
from agent.api.context import SERVICES
from agent.api.params import path_ins
from agent.api.psc import professional_context
from agent.api.spec import RouteTable, json_response
from agent.dmp.web import WebAccessSettings, web_access
from agent.domain.ins import OID_INS_NIR
from agent.domain.policy import TraceEvent

ANSWER = {"type": "object", "required": ["url", "window_name"], "properties": {
    "url": {"type": "string"}, "method": {"type": "string"}, "target": {"enum": ["patient", "dashboard"]},
    "window_name": {"type": "string", "description": "nom de fenêtre constant : une seule fenêtre DMP ouverte"},
    "professional_context": {"type": ["string", "null"]}}}


def _settings(request: web.Request) -> WebAccessSettings:
    section = request.app[SERVICES].config.dmp
    return WebAccessSettings(dashboard_url=section.web_access_dashboard_url,
                             patient_url=section.web_access_patient_url)


async def patient_web_access(request: web.Request) -> web.Response:
    ins, oid = path_ins(request)
    answer = web_access(_settings(request), ins, oid)
    services = request.app[SERVICES]
    actor = await request_actor(request)
    await services.rights.traces.record(TraceEvent(action="dmp.web_access", actor=actor, ins=ins))
    return web.json_response({**answer, "professional_context": professional_context(services)["context"]})


async def dashboard_web_access(request: web.Request) -> web.Response:
    answer = web_access(_settings(request), None, OID_INS_NIR)
    return web.json_response({**answer, "professional_context": professional_context(request.app[SERVICES])["context"]})


def register(table: RouteTable) -> None:
    table.get("/v1/dmp/{ins}/web-access", patient_web_access, tag="dmp",
              summary="Adresse d'accès web au DMP du patient (Web-PS, appel contextuel)",
              parameters=(OID_PARAM,), responses={200: json_response("Adresse à ouvrir dans le navigateur", ANSWER)})
    table.get("/v1/dmp/web-access", dashboard_web_access, tag="dmp",
              summary="Adresse du tableau de bord du professionnel sur le Web-PS du DMP",
              responses={200: json_response("Adresse à ouvrir dans le navigateur", ANSWER)})
