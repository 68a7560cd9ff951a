"""The settings a doctor may change from the dashboard: the cancellation delay and the tray's notifications.

``GET /v1/settings`` gives each one with its label (French), its value now, the configuration's default and
whether a choice made in the dashboard overrides it; ``PUT /v1/settings`` saves choices (``null``: back to the
configuration's default) in the store (``agent/store/preferences.py``). Like every write, a dashboard's PUT needs
its session cookie and CSRF header, and a foreign Origin is refused (``agent/api/guard.py``); each change is traced.
The rest of the configuration is read-only (``GET /v1/config``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.consent import request_actor
from agent.api.context import SERVICES, Services
from agent.api.guard import read_json
from agent.api.spec import RouteTable, json_response, problem_response
from agent.domain.orders import check_delay
from agent.domain.policy import TraceEvent
from agent.errors import InvalidInput
from agent.store.preferences import DELAY, KEYS, MAX_DELAY, read_preferences, write_preferences

LABELS = {
    DELAY: "Délai d'annulation avant l'envoi d'un document",
    "notifications.send_failures": "Notifier les envois en échec ou en attente de ma carte CPS",
    "notifications.patients": "Notifier l'insertion d'une carte Vitale et l'accès au DMP du patient",
    "notifications.notices": "Notifier les avis à lire et les sessions Pro Santé Connect",
}


def _defaults(services: Services) -> dict[str, Any]:
    n = services.config.notifications
    return {DELAY: services.orders.intake.default_delay, "notifications.send_failures": n.send_failures,
            "notifications.patients": n.patients, "notifications.notices": n.notices}


async def _body(services: Services) -> dict[str, Any]:
    saved = await services.db.read(read_preferences)
    defaults = _defaults(services)
    items = [{"key": key, "label": LABELS[key], "value": saved.get(key, defaults[key]), "default": defaults[key],
              "changed": key in saved, **({"unit": "seconds", "minimum": 0, "maximum": MAX_DELAY}
                                          if key == DELAY else {})} for key in KEYS]
    return {"items": items, "values": {item["key"]: item["value"] for item in items}}


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(await _body(request.app[SERVICES]))


async def put_settings(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)  # the schema checks the keys and types
    reason = check_delay(body[DELAY]) if body.get(DELAY) is not None else None
    if reason:
        raise InvalidInput.field(DELAY, reason)
    actor = await request_actor(request)
    event = TraceEvent("settings.changed", actor, outcome="ok", details={"keys": sorted(body)})

    def save(conn: Any) -> None:
        write_preferences(conn, body)
        services.rights.traces.record_in(conn, event)

    await services.db.write(save)
    services.bus.publish("settings.changed", keys=sorted(body))
    return web.json_response(await _body(services))


ITEM_SCHEMA: dict[str, Any] = {"type": "object", "required": ["key", "label", "value", "default", "changed"],
                               "properties": {"key": {"enum": list(KEYS)}, "label": {"type": "string"},
                                              "value": {"type": ["integer", "boolean"]},
                                              "default": {"type": ["integer", "boolean"]},
                                              "changed": {"type": "boolean"}, "unit": {"const": "seconds"},
                                              "minimum": {"type": "integer"}, "maximum": {"type": "integer"}}}
SETTINGS_SCHEMA: dict[str, Any] = {"type": "object", "required": ["items", "values"], "properties": {
    "items": {"type": "array", "items": ITEM_SCHEMA},
    "values": {"type": "object", "description": "the value now, by key"}}}
PUT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    DELAY: {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_DELAY,
            "description": "secondes ; null : la valeur du fichier de configuration"},
    **{key: {"type": ["boolean", "null"]} for key in KEYS if key != DELAY}}}


def register(table: RouteTable) -> None:
    table.get("/v1/settings", get_settings, tag="agent",
              summary="Réglages du médecin : délai d'annulation, notifications (valeur, défaut, modifié ou non)",
              responses={200: json_response("Réglages", SETTINGS_SCHEMA)})
    table.put("/v1/settings", put_settings, tag="agent",
              summary="Modifier les réglages du médecin (null : revenir à la valeur du fichier de configuration)",
              request_schema=PUT_SCHEMA,
              request_examples={"delay": {"summary": "Délai de 10 minutes, sans notification des avis",
                                          "value": {DELAY: 600, "notifications.notices": False}}},
              responses={200: json_response("Réglages enregistrés", SETTINGS_SCHEMA),
                         422: problem_response("Réglage inconnu ou valeur hors bornes")})
