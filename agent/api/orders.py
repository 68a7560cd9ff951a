"""Send-order routes: create, list, detail, cancel, send now, retry; and "was this document already fed?".

``POST /v1/orders`` answers 201 only after the order is committed and fsynced, and before anything is sent:
the LGC never waits for the DMP (invariants 1 and 6).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.guard import CLIENT_KEY, read_json
from agent.api.spec import RouteTable, component, json_response, problem_response
from agent.cda.service import KINDS
from agent.clock import rfc3339
from agent.domain.catalogue import by_type_code
from agent.domain.failures import explain
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
        "last_error": _last_error(d),
    }
    if with_log:
        out["attempt_log"] = [
            {"number": a.number, "started_at": _time(a.started_at), "ended_at": _time(a.ended_at),
             "outcome": a.outcome, "error_code": a.error_code, "error": a.error}
            for a in d.attempt_log
        ]
    return out


def _last_error(d: DeliveryView) -> dict[str, Any] | None:
    if not d.last_error_code:
        return None
    out: dict[str, Any] = {"code": d.last_error_code, "message": d.last_error, "at": _time(d.last_error_at)}
    if d.last_remote_code:  # PRE_ERR: the service's own code and text, beside the French message
        out.update(dmp_code=d.last_remote_code, dmp_text=d.last_remote_text or "")
    if d.state is DeliveryState.FAILED:
        explained = explain(d.last_error_code)
        out.update(explanation=explained.text, error_class=explained.kind, retry_helps=explained.retry_helps)
    return out


def order_json(order: OrderView, *, with_log: bool = False, display: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """An order's JSON; ``display`` (``OrderService.readable``) adds what the doctor reads: the document's title,
    the patient's name and birth date, the author's name, the visibility (null when not known)."""
    shown = display or {}
    return {
        "id": order.id,
        "client_ref": order.client_ref,
        "state": order.state.value,
        "created_at": _time(order.created_at),
        "send_at": _time(order.send_at),
        "patient": {"ins": order.ins, "oid": order.ins_oid, "identity_status": order.identity_status,
                    "display_name": shown.get("patient_name"), "birth_date": shown.get("patient_birth_date")},
        "author": {"rpps": order.author_rpps, "display_name": shown.get("author_name")},
        "document": {"unique_id": order.document_unique_id, "type_code": order.type_code,
                     "type_label": _type_label(order.type_code), "title": shown.get("title"),
                     "submission_set_unique_id": order.submission_set_unique_id,
                     "content_erased_at": _time(order.content_erased_at),
                     "replaces": shown.get("replaces")},
        "visibility": shown.get("visibility"),
        "deliveries": [delivery_json(d, with_log=with_log) for d in order.deliveries],
    }


async def readable_json(request: web.Request, order: OrderView, *, with_log: bool = False) -> dict[str, Any]:
    shown = await request.app[SERVICES].orders.readable([order])
    return order_json(order, with_log=with_log, display=shown.get(order.id))


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
    data = await orders.annotate(await readable_json(request, submitted.order))
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
    shown = await request.app[SERVICES].orders.readable(page)
    return web.json_response({"items": [order_json(o, display=shown.get(o.id)) for o in page],
                              "next_cursor": next_cursor})


async def get_order(request: web.Request) -> web.Response:
    orders = request.app[SERVICES].orders
    order = await orders.get(request.match_info["id"])
    return web.json_response(await orders.annotate(await readable_json(request, order, with_log=True)))


async def cancel_order(request: web.Request) -> web.Response:
    client = request.get(CLIENT_KEY)
    order = await request.app[SERVICES].orders.cancel(request.match_info["id"], client.name if client else "")
    return web.json_response(await readable_json(request, order))


async def dismiss(request: web.Request) -> web.Response:
    client = request.get(CLIENT_KEY)
    order = await request.app[SERVICES].orders.dismiss(request.match_info["id"], client.name if client else "")
    return web.json_response(await readable_json(request, order))


async def send_now(request: web.Request) -> web.Response:
    return web.json_response(order_json(await request.app[SERVICES].orders.send_now(request.match_info["id"])))


async def retry(request: web.Request) -> web.Response:
    return web.json_response(order_json(await request.app[SERVICES].orders.retry(request.match_info["id"])))


async def retry_failed(request: web.Request) -> web.Response:
    client = request.get(CLIENT_KEY)
    order_ids = await request.app[SERVICES].orders.retry_failed(client.name if client else "")
    return web.json_response({"retried": len(order_ids), "orders": order_ids})


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
_TEXT = {"type": "string"}
_ADDRESS = {"type": "object", "description": "free lines, or structured (postal code and city)", "properties": {
    "lines": {"type": "array", "items": _TEXT, "maxItems": 5}, "postal_code": _TEXT, "city": _TEXT,
    "country": _TEXT}}
ORDER_PATIENT = component("NewOrderPatient", {
    "type": "object", "required": ["ins", "oid", "identity_status"],
    "description": "The patient's INS and identity status; the traits are needed when the agent builds the "
                   "document (PDF or structured forms), and give the queue its readable name.",
    "properties": {
        "ins": {"type": "string", "pattern": "^[0-9AB]{15}$"}, "oid": _TEXT,
        "identity_status": {"enum": ["PROV", "RECUP", "VALI", "QUAL"]},
        "birth_name": _TEXT, "given_names": {"type": "array", "items": _TEXT},
        "sex": {"type": "string", "description": "M, F or U"},
        "birth_date": {"type": "string", "format": "date"}, "birth_place": _TEXT,
        "used_name": _TEXT, "used_given": _TEXT, "address": _ADDRESS}}, request=True)
ORDER_AUTHOR = component("NewOrderAuthor", {
    "type": "object", "required": ["rpps"],
    "description": "The author (RPPS); the other fields when the agent builds the document.",
    "properties": {
        "rpps": {"type": "string", "pattern": "^[0-9]{11}$"}, "family": _TEXT, "given": _TEXT,
        "civility": {"enum": ["M", "MME"]}, "title": _TEXT, "profession_code": _TEXT,
        "profession_display": {"type": "string", "description": "accepted for POST /v1/cda compatibility; the "
                               "display comes from the value set"},
        "telecom": _TEXT,
        "organisation": {"type": "object", "required": ["id", "name"], "properties": {
            "id": _TEXT, "name": _TEXT, "sector_code": _TEXT, "facility_code": _TEXT, "address": _ADDRESS,
            "telecom": _TEXT}}}}, request=True)
ORDER_SENDER = component("NewOrderSender", {
    "type": "object", "required": ["id", "family", "given"],
    "description": "Who sends the document when it is not its author (a secretary, another doctor's CPS, the "
                   "structure in indirect mode; [CDT] 2.1-900): the DMP sees them in the VIHF and as the "
                   "submission set's author; the CDA must list them among its authors (the agent adds them to a "
                   "document it builds). Absent: the author sends.",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9A-Za-z/._-]{1,64}$",
               "description": "national id: 11-digit RPPS, or the id the CDA's author block gives them"},
        "family": _TEXT, "given": _TEXT,
        "profession_code": {"type": "string", "description": "VIHF role (TRE_G15 profession, default 10)"},
        "specialty_code": {"type": "string", "description": "VIHF second role (savoir-faire, or the pharmacist's "
                                                            "CNOP sub-section)"},
        "organisation": {"type": "object", "required": ["id", "name"], "properties": {
            "id": _TEXT, "name": _TEXT}}}}, request=True)
_EXAM = {"type": "string", "description": "the child's examination (LGC.CSE.04), for the certificat de santé notice"}
_N1 = {"type_code": {"type": "string", "description": "LOINC type code of the Ségur catalogue (JDV_J07)"},
       "title": {"type": "string", "maxLength": 250}, "service_start": {"type": "string", "format": "date-time"},
       "service_stop": {"type": "string", "format": "date-time"}, "exam": _EXAM}
DOCUMENT_CDA = component("DocumentCda", {
    "type": "object", "description": "CDA prêt", "required": ["cda_base64"],
    "properties": {"cda_base64": {"type": "string", "contentEncoding": "base64"}, "exam": _EXAM}}, request=True)
DOCUMENT_PDF = component("DocumentPdf", {
    "type": "object", "description": "PDF (CDA N1 construit par l'agent)",
    "required": ["pdf_base64", "type_code", "title", "service_start"],
    "properties": {"pdf_base64": {"type": "string", "contentEncoding": "base64"}, **_N1}}, request=True)
DOCUMENT_CONTENT = component("DocumentContent", {
    "type": "object", "description": "PDF, texte, RTF, JPEG ou TIFF (CDA N1)",
    "required": ["content_base64", "type_code", "title", "service_start"],
    "properties": {"content_base64": {"type": "string", "contentEncoding": "base64"},
                   "media_type": {"type": "string", "description": "application/pdf, text/plain, text/rtf, "
                                                 "image/jpeg or image/tiff"}, **_N1}}, request=True)
DOCUMENT_STRUCTURED = component("DocumentStructured", {
    "type": "object", "description": "Document structuré (N3) construit par l'agent", "required": ["kind", "data"],
    "properties": {"kind": {"enum": list(KINDS)},
                   "data": {"type": "object", "description": "the kind's data, as for POST /v1/cda"}}}, request=True)
ORDER_DOCUMENT = component("NewOrderDocument", {"oneOf": [DOCUMENT_CDA, DOCUMENT_PDF, DOCUMENT_CONTENT,
                                                       DOCUMENT_STRUCTURED]})
VISIBILITY = component("Visibility", {
    "type": "object", "description": "DMP visibility (absent: visible to all)",
    "properties": {"masked_to_ps": _BOOL, "invisible_to_patient": _BOOL, "invisible_to_legal_reps": _BOOL}},
    request=True)
DESTINATIONS = component("Destinations", {
    "type": "object", "description": "absent: the DMP only",
    "properties": {"dmp": {"type": "boolean", "default": True},
                   "mss": {"type": "array", "items": {"type": "object", "required": ["address"],
                                                      "properties": {"address": _TEXT}}},
                   "patient_mss": _BOOL}}, request=True)
MSS_MESSAGE = component("MssMessage", {
    "type": "object", "description": "MSSanté mail options (agent/mss/orders.py)", "properties": {
        "subject": {"type": "string", "maxLength": 150,
                    "description": "the mail's subject as the doctor writes it (default: a generic one)"},
        "body": {"type": "string", "maxLength": 20000, "description": "text for professionals (CORPSMAIL_PS)"},
        "patient_body": {"type": "string", "maxLength": 20000,
                         "description": "text for the patient's mailbox (CORPSMAIL_PATIENT)"},
        "patient_no_reply": {"type": "boolean", "description": "X-MSS-MES: FIN (default: mss.patient_no_reply)"},
        "read_receipt": {"type": "boolean", "description": "ask for an MDN (default: mss.read_receipt)"}}},
    request=True)
ORDER_REQUEST = component("OrderRequest", {
    "type": "object",
    "required": ["patient", "author", "document"],
    "properties": {
        "client_ref": {"type": "string", "maxLength": 200, "description": "idempotency key chosen by the LGC"},
        "patient": ORDER_PATIENT, "author": ORDER_AUTHOR, "sender": ORDER_SENDER, "document": ORDER_DOCUMENT,
        "visibility": VISIBILITY, "destinations": DESTINATIONS,
        "secret_connection": {"type": "boolean", "default": False,
                              "description": "connexion secrète d'un patient mineur : documents invisibles aux "
                                             "représentants légaux, dit au DMP (VIHF)"},
        "delay_seconds": {"type": "integer", "minimum": 0, "maximum": 604800},
        "mss_message": MSS_MESSAGE,
        "replaces": {"type": "string", "maxLength": 128,
                     "description": "DMP (TD2.1b, RPLC) : remplacer un document que ce poste a envoyé au DMP du "
                                    "patient, désigné par son uniqueId (OID, l'id du CDA) ou son entryUUID "
                                    "(urn:uuid:...). Le document de la demande est la nouvelle version (son propre "
                                    "id ; titre, contenu et visibilité au choix) ; la version remplacée est "
                                    "recherchée dans le DMP en mode ObjectRef juste avant l'envoi et devient "
                                    "« deprecated ». Un document visible du patient ou de ses représentants ne "
                                    "peut plus leur être rendu invisible (409)."},
    },
}, request=True)
_PDF_EXAMPLE = "JVBERi0xLjQKMSAwIG9iajw8Pj5lbmRvYmoKdHJhaWxlcjw8Pj4KJSVFT0YK"
ORDER_EXAMPLES = {
    "pdf": {"summary": "Un PDF au DMP (le README)", "value": {
        "client_ref": "visite-8812-doc-3",
        "patient": {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "identity_status": "QUAL",
                    "birth_name": "PAT-TROIS", "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28",
                    "birth_place": "51215"},
        "author": {"rpps": "01234567897"},
        "document": {"pdf_base64": _PDF_EXAMPLE, "type_code": "11488-4", "title": "Compte rendu de consultation",
                     "service_start": "2026-11-22T09:00:00+01:00"},
        "destinations": {"dmp": True}}},
    "cda_mss": {"summary": "Un CDA prêt, au DMP et à un confrère par MSSanté, invisible au patient", "value": {
        "patient": {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "identity_status": "QUAL"},
        "author": {"rpps": "01234567897"},
        "document": {"cda_base64": "PENsaW5pY2FsRG9jdW1lbnQgeG1sbnM9InVybjpobDctb3JnOnYzIi8+"},
        "visibility": {"invisible_to_patient": True},
        "destinations": {"dmp": True, "mss": [{"address": "confrere@medecin.mssante.fr"}]},
        "delay_seconds": 600}},
    "replacement": {"summary": "Remplacer au DMP un document déjà envoyé (nouveau titre et contenu, rendu visible "
                               "au patient)", "value": {
        "patient": {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "identity_status": "QUAL"},
        "author": {"rpps": "01234567897"},
        "document": {"pdf_base64": _PDF_EXAMPLE, "type_code": "11488-4", "title": "document RPLC-CPS FINAL",
                     "service_start": "2026-11-22T09:00:00+01:00"},
        "replaces": "1.2.250.1.999.1.20261122.1",
        "destinations": {"dmp": True}}},
}
_ERROR = {"type": ["object", "null"], "properties": {
    "code": {"type": "string"}, "message": {"type": "string", "description": "technical detail (French)"},
    "at": {"type": "string"},
    "dmp_code": {"type": "string", "description": "the DMP's own error code (registry errorCode, SOAP fault subcode, "
                                                  "HL7v3 acknowledgement code), when it gave one (PRE_ERR)"},
    "dmp_text": {"type": "string", "description": "the DMP's own text for that code, as it gave it"},
    "explanation": {"type": "string", "description": "failed deliveries: what happened and what to do, for the "
                                                     "doctor (French)"},
    "error_class": {"enum": ["refused", "patient", "identity", "configuration", "unreachable", "content",
                             "unknown"]},
    "retry_helps": {"type": "boolean", "description": "failed deliveries: whether POST .../retry can help (else "
                                                      "correct and send a new order, and dismiss this one)"}}}
DELIVERY_SCHEMA = component("Delivery", {
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
})
ORDER_SCHEMA = component("Order", {
    "type": "object", "required": ["id", "state", "send_at", "deliveries"],
    "properties": {"id": {"type": "string"}, "client_ref": {"type": ["string", "null"]},
                   "state": {"enum": [s.value for s in DeliveryState]},
                   "created_at": {"type": "string"}, "send_at": {"type": "string"},
                   "patient": {"type": "object", "properties": {
                       "ins": {"type": "string"}, "oid": {"type": "string"}, "identity_status": {"type": "string"},
                       "display_name": {"type": ["string", "null"], "description": "NOM Prénom, from the document"},
                       "birth_date": {"type": ["string", "null"], "format": "date"}}},
                   "author": {"type": "object", "properties": {"rpps": {"type": "string"},
                                                               "display_name": {"type": ["string", "null"]}}},
                   "document": {"type": "object", "properties": {
                       "unique_id": {"type": "string"}, "type_code": {"type": "string"},
                       "type_label": {"type": ["string", "null"]},
                       "title": {"type": ["string", "null"], "description": "the title the LGC gave the document"},
                       "submission_set_unique_id": {"type": "string"},
                       "content_erased_at": {"type": ["string", "null"]},
                       "replaces": {"type": ["string", "null"], "description": "DMP replacement: the previous "
                                    "version (uniqueId or entryUUID) this document replaces"}}},
                   "visibility": {"type": ["object", "null"], "description": "the DMP visibility asked for"},
                   "deliveries": {"type": "array", "items": DELIVERY_SCHEMA},
                   "cse_due": {"type": ["object", "null"], "description": "On creation (LGC.CSE.04): the certificat "
                               "de santé that this CR d'examen de l'enfant makes due: kind, exam, title, message"},
                   "mss_identity": {"type": "string", "description": "With an MSSanté destination and an identity "
                                    "that is not qualified (INS/va1.53): a French note that the INS goes neither in "
                                    "the document nor in the message"},
                   "mss_suggestion": {"type": "string", "description": "French advice when the Ségur catalogue sends "
                                      "this document by MSSanté and no correspondent is named"},
                   "mss_warning": {"type": "string", "description": "MSSanté destinations while [mss] is not "
                                   "configured: they wait for it"}},
})
_CONFLICT = problem_response("already_sending, already_sent, order_cancelled, not_failed")
# Any request that writes answers this while the disk refuses writes; nothing of it was stored.
_DISK = problem_response("disk_full, disk_read_only, disk_error (disque plein ou en lecture seule)")


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
               request_schema=ORDER_REQUEST, request_examples=ORDER_EXAMPLES,
               description="Answers once the order is on disk. 201 for a new order, 200 with the stored order "
                           "for the same client_ref and body, 409 client_ref_conflict for another body.",
               responses={201: json_response("Ordre enregistré", ORDER_SCHEMA),
                          200: json_response("Ordre déjà enregistré (même client_ref)", ORDER_SCHEMA),
                          409: problem_response("client_ref_conflict, document_already_ordered; replacement: "
                                                "already_visible (field visibility.*), replaced_document_not_sent"),
                          413: problem_response("cda_too_large"),
                          422: problem_response("invalid_input, unknown_field (errors[].field: the "
                                                "misspelled key's path), ins_not_qualified, feeding_opposed, "
                                                "cda_invalid, cda_validation_timeout, replaced_document_unknown, "
                                                "replacement_same_id"),
                          507: _DISK})
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
                          503: problem_response("cancel_unverified"), 507: _DISK})
    table.post("/v1/orders/{id}/send-now", send_now, summary="Envoyer sans attendre la fin du délai", tag=tag,
               responses={200: json_response("Ordre", ORDER_SCHEMA), 409: _CONFLICT, 507: _DISK})
    table.post("/v1/orders/{id}/retry", retry, summary="Relancer un envoi en échec", tag=tag,
               description="Les destinations en échec repartent, sauf un message MSSanté rejeté par le serveur du "
                           "destinataire (mss_bounced : même message, même adresse, même refus) ; 409 mss_bounced "
                           "quand il est le seul échec : corriger l'adresse et créer un nouvel envoi.",
               responses={200: json_response("Ordre", ORDER_SCHEMA),
                          409: problem_response("not_failed, order_cancelled, mss_bounced"), 507: _DISK})
    table.post("/v1/orders/{id}/dismiss", dismiss, summary="Retirer un envoi en échec (il ne partira plus)",
               tag=tag,
               description="The order's failed deliveries become cancelled (traced as order.dismissed); its other "
                           "deliveries are untouched. 409 not_failed when none has failed. As for a cancel, a "
                           "failure that may have reached the DMP is checked there first (409 already_sent, 503 "
                           "cancel_unverified).",
               responses={200: json_response("Ordre", ORDER_SCHEMA), 409: _CONFLICT,
                          404: problem_response("order_not_found"), 503: problem_response("cancel_unverified"),
                          507: _DISK})
    table.post("/v1/orders/retry-failed", retry_failed, summary="Réessayer tout : relancer tous les envois en échec",
               tag=tag, body="none",
               description="Every failed delivery is ready again with a fresh retry budget; one whose earlier "
                           "attempt may have reached its service is asked about first (never sent twice). "
                           "Publishes order.updated for each order.",
               responses={200: json_response("Envois relancés", {
                   "type": "object", "required": ["retried", "orders"],
                   "properties": {"retried": {"type": "integer", "description": "orders concerned"},
                                  "orders": {"type": "array", "items": {"type": "string"}}}})})
    table.get("/v1/documents/{unique_id}", document_status, summary="Ce document a-t-il déjà été envoyé au DMP ?",
              tag=tag, responses={200: json_response("État d'envoi du document", {
                  "type": "object", "properties": {"unique_id": {"type": "string"}, "fed": {"type": "boolean"},
                                                   "dmp": {"type": ["object", "null"]},
                                                   "mss": {"type": "array", "items": {"type": "object"}}}})})
