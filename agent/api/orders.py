"""Send-order routes: create, list, detail, cancel, send now, retry; and "was this document already fed?".

``POST /v1/orders`` answers 201 only after the order is committed and fsynced, and before anything is sent:
the LGC never waits for the DMP (invariants 1 and 6).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.guard import CLIENT_KEY, read_json
from agent.api.spec import RouteTable, json_response, problem_response
from agent.clock import rfc3339
from agent.domain.catalogue import by_type_code
from agent.domain.orders import DeliveryState
from agent.errors import InvalidInput
from agent.store.orders import DeliveryView, OrderView, from_ts


def _time(value: float | None) -> str | None:
    when = from_ts(value)
    return rfc3339(when) if when is not None else None


def delivery_json(d: DeliveryView, *, with_log: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "destination": d.destination,
        "state": d.state.value,
        "attempts": d.attempts,
        "next_attempt_at": _time(d.due_at) if d.state in (DeliveryState.SCHEDULED, DeliveryState.RETRYING) else None,
        "sent_at": _time(d.sent_at),
        "entry_uuid": d.entry_uuid,
        "reconciled": d.reconciled,
        "last_error": ({"code": d.last_error_code, "message": d.last_error, "at": _time(d.last_error_at)}
                       if d.last_error_code else None),
    }
    if with_log:
        out["attempt_log"] = [
            {"number": a.number, "started_at": _time(a.started_at), "ended_at": _time(a.ended_at),
             "outcome": a.outcome, "error_code": a.error_code, "error": a.error}
            for a in d.attempt_log
        ]
    return out


def order_json(order: OrderView, *, with_log: bool = False) -> dict[str, Any]:
    return {
        "id": order.id,
        "client_ref": order.client_ref,
        "state": order.state.value,
        "created_at": _time(order.created_at),
        "send_at": _time(order.send_at),
        "patient": {"ins": order.ins, "oid": order.ins_oid, "identity_status": order.identity_status},
        "author": {"rpps": order.author_rpps},
        "document": {"unique_id": order.document_unique_id, "type_code": order.type_code,
                     "type_label": _type_label(order.type_code),
                     "submission_set_unique_id": order.submission_set_unique_id,
                     "content_erased_at": _time(order.content_erased_at)},
        "deliveries": [delivery_json(d, with_log=with_log) for d in order.deliveries],
    }


def _type_label(type_code: str) -> str | None:
    """The catalogue's French name of the document type, for screens (the dashboard)."""
    entry = by_type_code(type_code)
    return entry.title if entry is not None else None


async def pause_queue(request: web.Request) -> web.Response:
    paused = await request.app[SERVICES].orders.set_paused(True, request[CLIENT_KEY].name)
    return web.json_response({"paused": paused})


async def resume_queue(request: web.Request) -> web.Response:
    paused = await request.app[SERVICES].orders.set_paused(False, request[CLIENT_KEY].name)
    return web.json_response({"paused": paused})


async def create_order(request: web.Request) -> web.Response:
    body = await read_json(request)
    client = request.get(CLIENT_KEY)
    orders = request.app[SERVICES].orders
    submitted = await orders.submit(body, client.name if client else "")
    data = await orders.annotate(order_json(submitted.order))
    data["cse_due"] = submitted.cse_due
    return web.json_response(data, status=201 if submitted.created else 200,
                             headers={"Location": f"/v1/orders/{submitted.order.id}"})


async def list_orders(request: web.Request) -> web.Response:
    query = request.query
    try:
        limit = int(query.get("limit", "50"))
        before = int(query["cursor"]) if query.get("cursor") else None
    except ValueError as exc:
        raise InvalidInput.field("limit", "limit et cursor doivent être des nombres entiers.") from exc
    if not 1 <= limit <= 500:
        raise InvalidInput.field("limit", "limit doit être compris entre 1 et 500.")
    state = query.get("state") or None
    if state is not None and state not in {s.value for s in DeliveryState}:
        raise InvalidInput.field("state", "État inconnu.")
    orders = await request.app[SERVICES].orders.list_orders(state=state, ins=query.get("ins") or None,
                                                 author=query.get("author") or None, limit=limit + 1,
                                                 before_seq=before)
    page = orders[:limit]
    next_cursor = str(page[-1].seq) if len(orders) > limit else None
    return web.json_response({"items": [order_json(o) for o in page], "next_cursor": next_cursor})


async def get_order(request: web.Request) -> web.Response:
    orders = request.app[SERVICES].orders
    order = await orders.get(request.match_info["id"])
    return web.json_response(await orders.annotate(order_json(order, with_log=True)))


async def cancel_order(request: web.Request) -> web.Response:
    client = request.get(CLIENT_KEY)
    order = await request.app[SERVICES].orders.cancel(request.match_info["id"], client.name if client else "")
    return web.json_response(order_json(order))


async def send_now(request: web.Request) -> web.Response:
    return web.json_response(order_json(await request.app[SERVICES].orders.send_now(request.match_info["id"])))


async def retry(request: web.Request) -> web.Response:
    return web.json_response(order_json(await request.app[SERVICES].orders.retry(request.match_info["id"])))


async def document_status(request: web.Request) -> web.Response:
    unique_id = request.match_info["unique_id"]
    pairs = await request.app[SERVICES].orders.document(unique_id)
    dmp = [(o, d) for o, d in pairs if d.destination == "dmp"]
    best = next(((o, d) for o, d in reversed(dmp) if d.state is DeliveryState.SENT), None)
    best = best or next(((o, d) for o, d in reversed(dmp) if d.state is not DeliveryState.CANCELLED), None)
    best = best or (dmp[-1] if dmp else None)
    return web.json_response({
        "unique_id": unique_id,
        "fed": any(d.state is DeliveryState.SENT for _, d in dmp),
        "dmp": None if best is None else {"state": best[1].state.value, "sent_at": _time(best[1].sent_at),
                                          "entry_uuid": best[1].entry_uuid, "order_id": best[0].id},
        "mss": [{"destination": d.destination, "state": d.state.value, "sent_at": _time(d.sent_at), "order_id": o.id}
                for o, d in pairs if d.destination != "dmp"],
    })


_BOOL = {"type": "boolean"}
ORDER_REQUEST = {
    "type": "object",
    "required": ["patient", "author", "document"],
    "properties": {
        "client_ref": {"type": "string", "maxLength": 200, "description": "idempotency key chosen by the LGC"},
        "patient": {"type": "object", "required": ["ins", "oid", "identity_status"], "properties": {
            "ins": {"type": "string", "pattern": "^[0-9AB]{15}$"}, "oid": {"type": "string"},
            "identity_status": {"enum": ["PROV", "RECUP", "VALI", "QUAL"]},
            "birth_name": {"type": "string"}, "given_names": {"type": "array", "items": {"type": "string"}},
            "sex": {"type": "string"}, "birth_date": {"type": "string"}, "birth_place": {"type": "string"}}},
        "author": {"type": "object", "required": ["rpps"], "properties": {"rpps": {"type": "string"}}},
        "document": {"type": "object", "description": "{cda_base64} (a ready CDA); other forms come with the "
                                                      "documents part",
                     "properties": {"cda_base64": {"type": "string", "contentEncoding": "base64"}}},
        "visibility": {"type": "object", "properties": {"masked_to_ps": _BOOL, "invisible_to_patient": _BOOL,
                                                        "invisible_to_legal_reps": _BOOL}},
        "destinations": {"type": "object", "properties": {
            "dmp": {"type": "boolean", "default": True},
            "mss": {"type": "array", "items": {"type": "object", "required": ["address"],
                                               "properties": {"address": {"type": "string"}}}},
            "patient_mss": _BOOL}},
        "delay_seconds": {"type": "integer", "minimum": 0, "maximum": 604800},
        "mss_message": {"type": "object", "description": "MSSanté mail options (agent/mss/orders.py)", "properties": {
            "subject": {"type": "string", "maxLength": 150,
                        "description": "the mail's subject as the doctor writes it (default: a generic one)"},
            "body": {"type": "string", "maxLength": 20000, "description": "text for professionals (CORPSMAIL_PS)"},
            "patient_body": {"type": "string", "maxLength": 20000,
                             "description": "text for the patient's mailbox (CORPSMAIL_PATIENT)"},
            "patient_no_reply": {"type": "boolean", "description": "X-MSS-MES: FIN (default: mss.patient_no_reply)"},
            "read_receipt": {"type": "boolean", "description": "ask for an MDN (default: mss.read_receipt)"}}},
    },
}
_ERROR = {"type": ["object", "null"], "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                                      "at": {"type": "string"}}}
DELIVERY_SCHEMA = {
    "type": "object", "required": ["destination", "state"],
    "properties": {"destination": {"type": "string"}, "state": {"enum": [s.value for s in DeliveryState]},
                   "attempts": {"type": "integer"}, "next_attempt_at": {"type": ["string", "null"]},
                   "sent_at": {"type": ["string", "null"]}, "entry_uuid": {"type": ["string", "null"]},
                   "reconciled": {"type": "boolean"}, "last_error": _ERROR,
                   "message_id": {"type": "string", "description": "MSS deliveries: the Message-ID fixed at creation"},
                   "acknowledgement": {"enum": ["delivered", "read", "error", "delayed", None]},
                   "acknowledgements": {"type": "array", "items": {"type": "object", "properties": {
                       "kind": {"enum": ["dsn", "mdn"]}, "outcome": {"type": "string"},
                       "status": {"type": "string"}, "at": {"type": "string"}}}},
                   "attempt_log": {"type": "array", "items": {"type": "object"}}},
}
ORDER_SCHEMA = {
    "type": "object", "required": ["id", "state", "send_at", "deliveries"],
    "properties": {"id": {"type": "string"}, "client_ref": {"type": ["string", "null"]},
                   "state": {"enum": [s.value for s in DeliveryState]},
                   "created_at": {"type": "string"}, "send_at": {"type": "string"},
                   "patient": {"type": "object"}, "author": {"type": "object"}, "document": {"type": "object"},
                   "deliveries": {"type": "array", "items": DELIVERY_SCHEMA},
                   "cse_due": {"type": ["object", "null"], "description": "On creation (LGC.CSE.04): the certificat "
                               "de santé that this CR d'examen de l'enfant makes due: kind, exam, title, message"}},
}
_CONFLICT = problem_response("already_sending, already_sent, order_cancelled, not_failed")


def register(table: RouteTable) -> None:
    tag = "orders"
    paused_schema = {"type": "object", "required": ["paused"], "properties": {"paused": {"type": "boolean"}}}
    table.post("/v1/queue/pause", pause_queue, summary="Suspendre les envois (les délais continuent, "
               "l'annulation reste possible)", tag=tag, body="none",
               description="Stored: a restarted agent stays paused. Publishes queue.paused.",
               responses={200: json_response("Envois suspendus", paused_schema)})
    table.post("/v1/queue/resume", resume_queue, summary="Reprendre les envois", tag=tag, body="none",
               description="Publishes queue.resumed.", responses={200: json_response("Envois repris", paused_schema)})
    table.post("/v1/orders", create_order, summary="Créer un ordre d'envoi (DMP, MSSanté)", tag=tag, body="upload",
               request_schema=ORDER_REQUEST,
               description="Answers once the order is on disk. 201 for a new order, 200 with the stored order "
                           "for the same client_ref and body, 409 client_ref_conflict for another body.",
               responses={201: json_response("Ordre enregistré", ORDER_SCHEMA),
                          200: json_response("Ordre déjà enregistré (même client_ref)", ORDER_SCHEMA),
                          409: problem_response("client_ref_conflict, document_already_ordered"),
                          413: problem_response("cda_too_large"),
                          422: problem_response("invalid_input, ins_not_qualified, feeding_opposed, cda_invalid, "
                                                "cda_validation_timeout")})
    table.get("/v1/orders", list_orders, summary="Lister les ordres d'envoi", tag=tag,
              parameters=tuple({"name": n, "in": "query", "schema": {"type": "string"}}
                               for n in ("state", "ins", "author", "limit", "cursor")),
              responses={200: json_response("Ordres, du plus récent au plus ancien", {
                  "type": "object", "properties": {"items": {"type": "array", "items": ORDER_SCHEMA},
                                                   "next_cursor": {"type": ["string", "null"]}}})})
    table.get("/v1/orders/{id}", get_order, summary="Détail d'un ordre d'envoi, tentatives et dernière erreur",
              tag=tag, responses={200: json_response("Ordre", ORDER_SCHEMA),
                                                  404: problem_response("order_not_found")})
    table.post("/v1/orders/{id}/cancel", cancel_order, summary="Annuler un ordre d'envoi", tag=tag,
               description="All deliveries not yet left are cancelled, or none (409). When an earlier attempt "
                           "may have reached the DMP, the agent asks it first: found there, 409 already_sent; "
                           "no answer, 503 cancel_unverified (try again).",
               responses={200: json_response("Ordre annulé", ORDER_SCHEMA), 409: _CONFLICT,
                          404: problem_response("order_not_found"),
                          503: problem_response("cancel_unverified")})
    table.post("/v1/orders/{id}/send-now", send_now, summary="Envoyer sans attendre la fin du délai", tag=tag,
               responses={200: json_response("Ordre", ORDER_SCHEMA), 409: _CONFLICT})
    table.post("/v1/orders/{id}/retry", retry, summary="Relancer un envoi en échec", tag=tag,
               responses={200: json_response("Ordre", ORDER_SCHEMA), 409: _CONFLICT})
    table.get("/v1/documents/{unique_id}", document_status, summary="Ce document a-t-il déjà été envoyé au DMP ?",
              tag=tag, responses={200: json_response("État d'envoi du document", {
                  "type": "object", "properties": {"unique_id": {"type": "string"}, "fed": {"type": "boolean"},
                                                   "dmp": {"type": ["object", "null"]},
                                                   "mss": {"type": "array"}}})})
