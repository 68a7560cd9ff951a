"""Identity routes: ``POST /v1/ins/search`` (carte Vitale or traits) and ``POST /v1/ins/verify``.

Bad traits are refused (422, the field named) before INSi is called. A call needs a logged-in CPS, or the
structure certificate when one is configured (``[insi] structure_cert``); each call is traced (who, when, which
patient) through ``services.traces``. Answers carry a French message for the doctor; a "not found" lists the
likely causes the pre-checks see in the traits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.api.context import SERVICES, Services
from agent.api.guard import CLIENT_KEY, read_json
from agent.api.spec import RouteTable, json_response, problem_response
from agent.domain.ins import IdentityStatus, Ins, check_ins, normalize_matricule
from agent.domain.policy import Actor, TraceEvent
from agent.domain.signing import Signer
from agent.domain.traits import (
    IdentityTraits,
    StatusEvent,
    likely_not_found_causes,
    next_status,
    normalize_name,
    parse_traits,
    traits_differences,
)
from agent.errors import FieldError, InvalidInput, RelaisError, Unavailable
from agent.ins.client import InsiClient
from agent.ins.soap import InsiAnswer, VitaleQuery
from agent.logs import get_logger

log = get_logger("api.ins")


@dataclass(frozen=True, slots=True)
class Caller:
    signer: Signer
    emitter: str  # RPPS of the logged-in CPS, or the structure identifier
    actor: Actor


def _insi(services: Services) -> InsiClient:
    if services.insi is None:
        raise Unavailable("Le téléservice INSi n'est pas configuré sur ce poste (section [insi] du fichier de "
                          "configuration).", code="insi_unreachable")
    return services.insi


async def _caller(request: web.Request, services: Services, insi: InsiClient) -> Caller:
    """The logged-in CPS if there is one, else the structure certificate, else 503 cps_absent."""
    client = request.get(CLIENT_KEY)
    client_name = client.name if client else ""
    cards = services.cards
    refusal: RelaisError | None = None
    if cards is not None:
        try:
            signer = cards.require_signer()
            holder = cards.cps_holder()
            rpps = holder.rpps if holder is not None else ""
            actor = Actor(rpps=rpps or None, workstation=services.config.workstation_id, client=client_name,
                          profession=holder.profession or None if holder else None,
                          specialty=holder.specialty or None if holder else None)
            return Caller(signer, rpps, actor)
        except Unavailable as exc:
            refusal = exc
    if insi.structure_signer is not None:
        structure = insi.settings.structure_id or services.config.workstation_id
        return Caller(insi.structure_signer, structure,
                      Actor(rpps=None, workstation=services.config.workstation_id, client=client_name))
    if refusal is not None:
        raise refusal
    raise Unavailable("Aucune carte CPS n'est connectée : insérez votre CPS et saisissez le code porteur.",
                      code="cps_absent")


def _today(services: Services) -> dt.date:
    return services.clock.now().date()


def _traits_or_422(raw: Any, services: Services, prefix: str = "traits") -> IdentityTraits:
    traits, problems = parse_traits(raw, _today(services), prefix=prefix)
    if traits is None:
        errors = [FieldError(field, message) for field, message in problems]
        raise InvalidInput(f"Traits d'identité à corriger avant l'appel à l'INSi : {errors[0].message}",
                           errors=errors, code="invalid_traits")
    return traits


async def _trace(services: Services, caller: Caller, action: str, outcome: str, ins: str | None,
                 details: dict[str, Any]) -> None:
    try:
        await services.rights.traces.record(TraceEvent(action=action, actor=caller.actor, ins=ins, outcome=outcome,
                                                details=details))
    except Exception:  # a trace failure is logged loudly; the INSi answer is still due
        log.exception("trace INSi non enregistrée")


def _answer_body(answer: InsiAnswer, typed: IdentityTraits | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "result": answer.result,
        "insi_code": answer.code,
        "ins": answer.ins.as_dict() if answer.ins else None,
        "traits": answer.traits.as_dict() if answer.traits else None,
        "history": [h.as_dict() for h in answer.history],
    }
    if answer.result == "found":
        body["message"] = ("Identité trouvée par l'INSi : reprenez les traits de référence renvoyés. Statut "
                           "« identité récupérée » (RECUP) ; il devient « qualifiée » (QUAL) après contrôle d'une "
                           "pièce d'identité.")
        body["identity_status"] = next_status(IdentityStatus.PROV, StatusEvent.INS_RETRIEVED).value
        if typed is not None and answer.traits is not None:
            body["differences"] = traits_differences(typed, answer.traits)
    elif answer.result == "several":
        body["message"] = ("Plusieurs identités correspondent à ces traits : précisez le lieu de naissance "
                           "(code INSEE de la commune de naissance) et relancez la recherche.")
    else:
        body["message"] = "Aucune identité trouvée par l'INSi pour ces traits."
        body["likely_causes"] = likely_not_found_causes(typed) if typed is not None else [
            "Les informations de la carte Vitale ne suffisent pas : recherchez avec les traits de la pièce "
            "d'identité (nom de naissance, premier prénom, sexe, date de naissance)."]
    return body


async def search(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    source = body.get("source")
    if source not in ("vitale", "traits"):
        raise InvalidInput.field("source", "La source est « vitale » ou « traits ».")
    typed: IdentityTraits | None = None
    if source == "traits":
        typed = _traits_or_422(body.get("traits"), services)
    else:
        index = body.get("beneficiary_index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidInput.field("beneficiary_index", "L'indice du bénéficiaire de la carte Vitale est requis "
                                                          "(entier, 0 pour le premier).")
    insi = _insi(services)
    caller = await _caller(request, services, insi)
    if typed is not None:
        answer = await insi.search_traits(typed, caller.signer, caller.emitter)
    else:
        query = _vitale_query(services, int(body["beneficiary_index"]))
        answer = await insi.search_vitale(query, caller.signer, caller.emitter)
    await _trace(services, caller, "insi.search", answer.result, answer.ins.value if answer.ins else None,
                 {"source": source})
    return web.json_response(_answer_body(answer, typed))


def _vitale_query(services: Services, index: int) -> VitaleQuery:
    if services.cards is None:
        raise Unavailable("Aucune carte Vitale n'est lisible sur ce poste.", code="vitale_absent")
    for beneficiary in services.cards.vitale_beneficiaries():
        if beneficiary.index == index:
            name = normalize_name(beneficiary.birth_name or beneficiary.family_name)
            return VitaleQuery(insured_nir=normalize_matricule(beneficiary.nir), birth_name=name,
                               birth_date=beneficiary.birth_date, birth_rank=int(beneficiary.birth_rank or 1))
    raise InvalidInput.field("beneficiary_index", f"La carte Vitale n'a pas de bénéficiaire d'indice {index}.")


async def verify(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    raw_ins = body.get("ins")
    errors: list[FieldError] = []
    ins: Ins | None = None
    if not isinstance(raw_ins, dict) or not isinstance(raw_ins.get("value"), str):
        errors.append(FieldError("ins.value", "Le matricule INS (15 caractères) est requis."))
    else:
        value = normalize_matricule(raw_ins["value"])
        oid = raw_ins.get("oid") or "1.2.250.1.213.1.4.8"
        problems = check_ins(value, oid if isinstance(oid, str) else "", allow_test_oids=_test_oids(services))
        errors += [FieldError(f"ins.{field}" if field != "ins" else "ins.value", msg) for field, msg in problems]
        if not problems:
            ins = Ins(value, oid)
    traits, problems = parse_traits(body.get("traits"), _today(services))
    errors += [FieldError(field, message) for field, message in problems]
    if errors or ins is None or traits is None:
        raise InvalidInput(f"Vérification impossible : {errors[0].message}", errors=errors, code="invalid_traits")
    insi = _insi(services)
    caller = await _caller(request, services, insi)
    outcome, answer = await insi.verify(ins, traits, caller.signer, caller.emitter)
    await _trace(services, caller, "insi.verify", outcome, ins.value, {})
    response = _answer_body(answer, traits)
    response["result"] = outcome
    if outcome == "match":
        response["message"] = "L'INS est confirmé par l'INSi pour ces traits."
    elif outcome == "mismatch":
        replaced = any(h.ins.value == ins.value for h in answer.history)
        response["replaced"] = replaced
        response["message"] = (
            "Cet INS a été remplacé : utilisez l'INS actif renvoyé par l'INSi." if replaced else
            "L'INSi renvoie un autre INS pour ces traits : ne pas utiliser cet INS, vérifiez l'identité.")
    elif outcome == "several":
        response["result"] = "not_found"
        response["message"] = ("Plusieurs identités correspondent à ces traits : précisez le lieu de naissance "
                               "pour vérifier cet INS.")
    return web.json_response(response)


def _test_oids(services: Services) -> bool:
    return services.config.allow_test_oids


TRAITS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["birth_name", "given_names", "sex", "birth_date"],
    "properties": {
        "birth_name": {"type": "string", "description": "Nom de naissance (pas le nom d'usage)"},
        "given_names": {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
                        "description": "Prénoms de naissance, dans l'ordre"},
        "sex": {"enum": ["M", "F", "m", "f"]},
        "birth_date": {"type": "string", "format": "date"},
        "birth_place": {"type": "string", "description": "Code INSEE de la commune de naissance (99xxx : pays)"},
    },
}
INS_SCHEMA = {"type": "object", "properties": {"value": {"type": "string"}, "oid": {"type": "string"},
                                               "kind": {"enum": ["NIR", "NIA"]}}}
ANSWER_SCHEMA = {
    "type": "object",
    "required": ["result", "message"],
    "properties": {
        "result": {"enum": ["found", "not_found", "several", "match", "mismatch"]},
        "ins": {"oneOf": [INS_SCHEMA, {"type": "null"}]},
        "traits": {"type": ["object", "null"]},
        "history": {"type": "array", "items": {"type": "object"}},
        "message": {"type": "string"},
        "likely_causes": {"type": "array", "items": {"type": "string"}},
        "differences": {"type": "array", "items": {"type": "string"}},
        "identity_status": {"enum": [s.value for s in IdentityStatus]},
        "insi_code": {"type": "string"},
        "replaced": {"type": "boolean"},
    },
}
ERRORS = {
    422: problem_response("Traits ou INS invalides (errors[].field nomme le champ) : INSi non appelé"),
    502: problem_response("L'INSi a refusé la demande (insi_refused, insi_oid_refused)"),
    503: problem_response("INSi injoignable (insi_unreachable), CPS absente (cps_absent, cps_not_logged_in) "
                          "ou carte Vitale absente (vitale_absent)"),
}


def register(table: RouteTable) -> None:
    table.post(
        "/v1/ins/search", search, summary="Rechercher l'INS d'un patient (carte Vitale ou traits d'identité)",
        tag="identity",
        request_schema={"oneOf": [
            {"type": "object", "required": ["source", "beneficiary_index"],
             "properties": {"source": {"const": "vitale"}, "beneficiary_index": {"type": "integer", "minimum": 0}}},
            {"type": "object", "required": ["source", "traits"],
             "properties": {"source": {"const": "traits"}, "traits": TRAITS_SCHEMA}},
        ]},
        responses={200: json_response("Résultat de l'INSi", ANSWER_SCHEMA), **ERRORS},
    )
    table.post(
        "/v1/ins/verify", verify, summary="Vérifier un INS connu auprès de l'INSi", tag="identity",
        request_schema={"type": "object", "required": ["ins", "traits"],
                        "properties": {"ins": INS_SCHEMA, "traits": TRAITS_SCHEMA}},
        responses={200: json_response("match, mismatch ou not_found", ANSWER_SCHEMA), **ERRORS},
    )
