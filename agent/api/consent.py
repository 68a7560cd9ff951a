"""Routes of consent, rights and traces: consent, DICA, the CONF.21 notice, the trace log.

``request_actor`` is how every route knows who acts: the CPS holder (RPPS, profession, specialty) from the cards
service, this workstation, the API client's name, and the access mode asked for (``?mode=``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.api.context import SERVICES, Services
from agent.api.guard import CLIENT_KEY, read_json
from agent.api.params import path_ins
from agent.api.spec import RouteTable, json_response, problem_response
from agent.audit import chain
from agent.audit.service import RightsPart
from agent.cards.service import CardService
from agent.clock import parse_rfc3339, rfc3339
from agent.domain import notices as conf21
from agent.domain.consent import Consultation, Feeding, parse_change, parse_mode
from agent.domain.dmp_params import secret_connection_offer
from agent.domain.ins import IdentityStatus, key_is_valid
from agent.domain.policy import Actor
from agent.errors import FieldError, InvalidInput
from agent.store.traces import TraceFilter

# -- who acts -----------------------------------------------------------------------------------------------


async def request_actor(request: web.Request, mode: str | None = None) -> Actor:
    client = request.get(CLIENT_KEY)
    reason = request.query.get("reason", "").strip()[:MAX_REASON]
    return agent_actor(request.app[SERVICES], client=client.name if client else "", mode=parse_mode(mode).value,
                       reason=reason)


MAX_REASON = 500


def agent_actor(services: Services, *, client: str = "relais", mode: str = "normal", reason: str = "") -> Actor:
    """The professional at this workstation (the CPS holder, if any) acting through ``client``."""
    holder = services.cards.cps_holder()
    identity = services.psc.identity() if holder is None and services.psc is not None else None
    if identity is not None:  # no CPS in a reader: the professional connected through Pro Santé Connect
        return Actor(rpps=identity.rpps, workstation=services.config.workstation_id, client=client,
                     profession=identity.profession or None, specialty=identity.specialty or None, mode=mode,
                     family_name=identity.family_name, given_name=identity.given_name, via_psc=True,
                     authenticated=True, reason=reason)  # a live PSC session: an authenticated professional
    if holder is None:
        return Actor(rpps=None, workstation=services.config.workstation_id, client=client, mode=mode, reason=reason)
    return Actor(rpps=holder.rpps or None, workstation=services.config.workstation_id, client=client,
                 profession=holder.profession or None, specialty=holder.specialty or None, mode=mode,
                 family_name=holder.family_name, given_name=holder.given_name,
                 authenticated=bool(holder.logged_in), reason=reason)


def _part(request: web.Request) -> RightsPart:
    return request.app[SERVICES].rights


# -- consent ------------------------------------------------------------------------------------------------


async def get_consent(request: web.Request) -> web.Response:
    ins, _ = path_ins(request)
    part = _part(request)
    history = await part.consents.history(ins)
    return web.json_response(_consent_body(ins, history))


async def put_consent(request: web.Request) -> web.Response:
    ins, oid = path_ins(request)
    part = _part(request)
    if "oid" not in request.query:
        oid = await part.consultation.insi_oid(ins) or oid
    change = parse_change(await read_json(request))
    actor = await request_actor(request)
    _, authorization = await part.consultation.record_consent(ins, oid, change, actor)
    body = _consent_body(ins, await part.consents.history(ins))
    if authorization is not None:  # a withdrawn consent removed this professional's DMP authorisation (TD0.3)
        body["dmp_authorization"] = authorization
    return web.json_response(body)


def _consent_body(ins: str, history: list[Any]) -> dict[str, Any]:
    if history:
        current = history[0].as_dict()
    else:
        current = {"ins": ins, "episode": None, "informed": False, "dmp_consultation": Consultation.UNKNOWN.value,
                   "dmp_feeding": Feeding.NON_OPPOSITION.value, "recorded_by": None, "recorded_at": None}
    return {**current, "history": [record.as_dict() for record in history]}


# -- DICA ---------------------------------------------------------------------------------------------------


async def dmp_access(request: web.Request) -> web.Response:
    ins, oid = path_ins(request)
    part = _part(request)
    if "oid" not in request.query:  # the OID INSi gave with this INS, so that the LGC need not repeat it
        oid = await part.consultation.insi_oid(ins) or oid
    status = request.query.get("identity_status")
    if status is not None and status not in IdentityStatus.__members__:
        raise InvalidInput.field("identity_status", "Statut d'identité attendu : PROV, RECUP, VALI ou QUAL.")
    actor = await request_actor(request, request.query.get("mode"))
    access = await part.dica.evaluate(ins, oid, status, actor, count_new=request.query.get("new") == "true")
    body = access.as_dict()
    birth = request.query.get("birth_date")
    if birth is not None:  # minority and the connexion secrète (EX_GEN-1550, EX_0.1-1100, EX_0.1-1115)
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", birth):
            raise InvalidInput.field("birth_date", "Date de naissance attendue au format AAAA-MM-JJ.")
        services = request.app[SERVICES]
        body["secret_connection"] = secret_connection_offer(
            birth, services.clock.now().date(), part.consultation.parameters(),
            services.config.dmp.secret_connection_minimum_age).as_dict()
    return web.json_response(body)


# -- CONF.21 notice -----------------------------------------------------------------------------------------


async def list_notices(request: web.Request) -> web.Response:
    part = _part(request)
    actor = await request_actor(request)
    return web.json_response({"items": [await _notice(part, actor)]})


async def ack_notice(request: web.Request) -> web.Response:
    part = _part(request)
    actor = await request_actor(request)
    state = await part.notices.acknowledge(request.match_info["id"], actor, authenticated=actor.authenticated)
    return web.json_response(state.as_dict(rfc3339))


async def _notice(part: RightsPart, actor: Actor) -> dict[str, Any]:
    if actor.rpps:
        return (await part.notices.state(actor.rpps)).as_dict(rfc3339)
    # Without a CPS there is nobody to acknowledge it: the text is still shown.
    return {**conf21.state("", None, parse_rfc3339("1970-01-01T00:00:00Z")).as_dict(rfc3339), "rpps": None}


def notices_status(part: RightsPart, cards: CardService) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``/v1/status``'s notices (CONF.21 for the CPS holder) and which habilitation matrix applies."""

    async def provider() -> dict[str, Any]:
        matrix = part.rights.matrix
        body: dict[str, Any] = {
            "notices": [],
            # Which habilitation matrix applies, and how complete it is: the practice can see and replace it.
            "habilitation": {"origin": matrix.origin, "version": matrix.version, "source": matrix.source,
                             "status": matrix.status, "professions": sorted(matrix.columns)},
        }
        holder = cards.cps_holder()
        rpps = holder.rpps if holder else None
        if rpps:
            # Checked at every status poll (the tray's, the dashboard's): a notice that falls due while the agent
            # runs (180 days after the last acknowledgement) is announced (notice.due, rate-limited) without
            # waiting for a card insertion or a DMP read.
            await part.notices.due_for(rpps)
            state = await part.notices.state(rpps)
            body["notices"] = [{"id": conf21.NOTICE_ID, "due": state.due, "rpps": rpps,
                                "next_due_at": rfc3339(state.next_due_at) if state.next_due_at else None}]
        return body

    return provider


# -- traces -------------------------------------------------------------------------------------------------


def _trace_filter(request: web.Request) -> tuple[TraceFilter, int, str]:
    query = request.query
    errors: list[FieldError] = []
    bounds: dict[str, str | None] = {}
    for name in ("from", "to"):
        text = query.get(name)
        bounds[name] = None
        if text:
            try:
                bounds[name] = rfc3339(parse_rfc3339(text))
            except ValueError:
                errors.append(FieldError(name, "Date RFC 3339 avec fuseau attendue (ex. 2026-01-05T09:00:00Z)."))
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        errors.append(FieldError("format", "Format attendu : json ou csv."))
    limit_text, cursor = query.get("limit", "50"), query.get("cursor", "0")
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= 500:
        errors.append(FieldError("limit", "Un entier de 1 à 500 est attendu."))
    if not (cursor.isascii() and cursor.isdigit()):
        errors.append(FieldError("cursor", "Curseur invalide."))
    ins = query.get("ins")
    if ins is not None and not key_is_valid(ins.upper()):
        errors.append(FieldError("ins", "INS invalide."))
    if errors:
        raise InvalidInput("Filtre de traces invalide.", errors=errors)
    where = TraceFilter(since=bounds["from"], until=bounds["to"], ins=ins.upper() if ins else None,
                        actor=query.get("actor") or None, action=query.get("action") or None,
                        after_seq=int(cursor))
    return where, int(limit_text), fmt


async def list_traces(request: web.Request) -> web.StreamResponse:
    part = _part(request)
    where, limit, fmt = _trace_filter(request)
    if fmt == "json":
        page = await part.traces.page(where, limit)
        return web.json_response({"items": [chain.as_json(row) for row in page.items],
                                  "next_cursor": page.next_cursor})
    # CSV is the extraction (CONF.15): every matching row, streamed page by page.
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="relais-traces.csv"',
    })
    await response.prepare(request)
    await response.write(chain.csv_header().encode())
    cursor = where
    while True:
        page = await part.traces.page(cursor, 500)
        if page.items:
            await response.write("".join(chain.csv_row(row) for row in page.items).encode())
        if page.next_cursor is None:
            break
        cursor = TraceFilter(where.since, where.until, where.ins, where.actor, where.action, int(page.next_cursor))
    await response.write_eof()
    return response


async def verify_traces(request: web.Request) -> web.Response:
    result = await _part(request).traces.verify()
    return web.json_response(result.as_dict())


# -- declarations -------------------------------------------------------------------------------------------

_RECORD_PROPERTIES: dict[str, Any] = {
    "ins": {"type": "string"},
    "episode": {"type": ["string", "null"]},
    "informed": {"type": "boolean"},
    "dmp_consultation": {"enum": ["granted", "refused", "unknown"]},
    "dmp_feeding": {"enum": ["non_opposition", "opposition"]},
    "recorded_by": {"type": ["object", "null"]},
    "recorded_at": {"type": ["string", "null"], "format": "date-time"},
}
_RECORD = {"type": "object", "properties": _RECORD_PROPERTIES}
CONSENT_SCHEMA = {"type": "object",
                  "properties": {**_RECORD_PROPERTIES, "history": {"type": "array", "items": _RECORD},
                                 "dmp_authorization": {
                                     "type": "object", "description": "quand le consentement est retiré : "
                                     "l'autorisation d'accès de ce professionnel retirée du DMP (TD0.3)",
                                     "properties": {"removed": {"type": "boolean"}, "code": {"type": "string"},
                                                    "message": {"type": "string"}}}}}
CONSENT_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
    "dmp_consultation": {"enum": ["granted", "refused"]},
    "dmp_feeding": {"enum": ["non_opposition", "opposition"]},
    "informed": {"type": "boolean"},
    "episode": {"type": "string", "maxLength": 128, "description": "épisode de soins (facultatif)"},
    },
}
REASON = {"type": "object", "required": ["code", "message", "help"],
          "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "help": {"type": "string"},
                         "action": {"type": "object"}}}
ACCESS_SCHEMA = {
    "type": "object",
    "required": ["can_read", "can_write", "dmp_exists", "ins_qualified", "consent", "habilitation",
                 "notice_acknowledged", "reasons"],
    "properties": {
        "can_read": {"type": "boolean"}, "can_write": {"type": "boolean"},
        "dmp_exists": {"type": ["boolean", "null"]}, "ins_qualified": {"type": ["boolean", "null"]},
        "consent": {"type": "object"}, "mode": {"type": "string"},
        "habilitation": {"type": ["boolean", "null"]}, "notice_acknowledged": {"type": ["boolean", "null"]},
        "reasons": {"type": "array", "items": REASON},
        "new_documents": {"type": ["integer", "null"]},
        "last_consultation": {"type": ["string", "null"], "format": "date-time"},
        "secret_connection": {
            "type": "object", "description": "with birth_date: is the patient a minor by the DMP's parameters "
            "(age-majorite, fonctions-gestion-mineurs: EX_GEN-1550), is the connexion secrète to be proposed "
            "(EX_0.1-1100), or not systematically under the professional's minimum age ([dmp] "
            "secret_connection_minimum_age, EX_0.1-1115: still allowed on request)",
            "properties": {"minor": {"type": ["boolean", "null"]}, "offered": {"type": "boolean"},
                           "allowed": {"type": "boolean"}, "age": {"type": ["integer", "null"]},
                           "majority_age": {"type": "integer"}, "minimum_age": {"type": "integer"},
                           "reason": {"type": "string"}}},
    },
}
NOTICE_SCHEMA = {
    "type": "object",
    "required": ["id", "text", "button", "due"],
    "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "text": {"type": "string"},
                   "button": {"type": "string"}, "due": {"type": "boolean"}, "rpps": {"type": ["string", "null"]},
                   "acknowledged_at": {"type": ["string", "null"]}, "next_due_at": {"type": ["string", "null"]},
                   "help": {"type": "string"}, "period_days": {"type": "integer"}},
}
TRACE_SCHEMA = {
    "type": "object",
    "properties": {"seq": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                   "action": {"type": "string"}, "actor": {"type": "object"}, "ins": {"type": ["string", "null"]},
                   "object": {"type": ["string", "null"]}, "outcome": {"type": "string"},
                   "details": {"type": "object"}, "prev_hash": {"type": "string"}, "hash": {"type": "string"}},
}


def _q(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


OID_PARAM = _q("oid", "OID de l'INS ; par défaut celui que l'INSi a renvoyé avec cet INS, sinon l'INS-NIR")
MODE_PARAM = _q("mode", "mode d'accès", enum=["normal", "bris_de_glace", "centre_15"])
REASON_PARAM = _q("reason", "motif d'un accès en bris de glace ou centre 15 (obligatoire alors ; tracé)")


def register(table: RouteTable) -> None:
    tag = "consentement"
    table.get("/v1/patients/{ins}/consent", get_consent, tag=tag,
              summary="Consentement du patient (consultation du DMP, opposition à l'alimentation) et historique",
              parameters=(OID_PARAM,),
              responses={200: json_response("Consentement actuel et historique", CONSENT_SCHEMA),
                         422: problem_response("INS invalide")})
    table.put("/v1/patients/{ins}/consent", put_consent, tag=tag,
              summary="Enregistrer l'information, le consentement ou l'opposition du patient (tracé)",
              parameters=(OID_PARAM,), request_schema=CONSENT_REQUEST,
              request_examples={"granted": {"summary": "Patient informé, consultation du DMP acceptée",
                                            "value": {"dmp_consultation": "granted", "dmp_feeding": "non_opposition",
                                                      "informed": True, "episode": "visite-8812"}}},
              responses={200: json_response("Consentement enregistré", CONSENT_SCHEMA)})
    table.get("/v1/dmp/{ins}/access", dmp_access, tag="dmp",
              summary="DICA sans clic : le DMP de ce patient peut-il être consulté, et sinon pourquoi",
              parameters=(OID_PARAM, MODE_PARAM,
                          _q("identity_status", "statut de l'identité INS", enum=["PROV", "RECUP", "VALI", "QUAL"]),
                          _q("new", "compter les nouveaux documents depuis la dernière consultation",
                             enum=["true", "false"]),
                          _q("birth_date", "date de naissance du patient (AAAA-MM-JJ) : dire s'il est mineur et "
                                           "si la connexion secrète est à proposer")),
              responses={200: json_response("Conditions DICA", ACCESS_SCHEMA),
                         422: problem_response("INS ou paramètre invalide")})
    table.get("/v1/notices", list_notices, tag=tag,
              summary="Information CONF.21 à afficher tous les 180 jours au porteur de la CPS",
              responses={200: json_response("Informations", {"type": "object", "properties": {
                  "items": {"type": "array", "items": NOTICE_SCHEMA}}})})
    table.post("/v1/notices/{id}/ack", ack_notice, tag=tag,
               summary="« J'ai compris » : le porteur de la CPS valide l'information",
               responses={200: json_response("Information validée", NOTICE_SCHEMA),
                          404: problem_response("Information inconnue"),
                          503: problem_response("Aucune CPS insérée (cps_absent), ou son code PIN n'est pas "
                                                "saisi (cps_not_logged_in) : seul le porteur authentifié valide")})
    table.get("/v1/traces", list_traces, tag="traces",
              summary="Traces des accès et des envois (JSON paginé, ou CSV complet)",
              parameters=(_q("from", "début (inclus), RFC 3339", format="date-time"),
                          _q("to", "fin (exclue), RFC 3339", format="date-time"),
                          _q("ins", "INS du patient"), _q("actor", "RPPS du professionnel"),
                          _q("action", "action (dmp.search, order.sent...)"),
                          _q("format", "json ou csv", enum=["json", "csv"]),
                          _q("limit", "taille de page (JSON)", type="integer", minimum=1, maximum=500),
                          _q("cursor", "curseur de la page suivante")),
              responses={200: {"description": "Traces", "content": {
                  "application/json": {"schema": {"type": "object", "properties": {
                      "items": {"type": "array", "items": TRACE_SCHEMA},
                      "next_cursor": {"type": ["string", "null"]}}}},
                  "text/csv": {"schema": {"type": "string"}}}},
                  422: problem_response("Filtre invalide")})
    table.get("/v1/traces/verify", verify_traces, tag="traces",
              summary="Vérifier la chaîne d'empreintes des traces (première ligne rompue)",
              responses={200: json_response("Résultat de la vérification", {"type": "object", "properties": {
                  "ok": {"type": "boolean"}, "count": {"type": "integer"}, "head": {"type": "object"},
                  "broken_seq": {"type": ["integer", "null"]}, "problem": {"type": ["string", "null"]}}})})
