"""Identity routes: ``POST /v1/ins/search`` (carte Vitale or traits) and ``POST /v1/ins/verify``.

Bad traits are refused (422, the field named) before INSi is called. A call needs a logged-in CPS (CPx endpoint),
or the structure certificate when one is configured (``[insi] structure_cert``, mutual-TLS endpoint); each call is
traced (who, when, which patient) through ``services.traces``, and every INS INSi returns as active is recorded
with its OID (``agent/store/ins_provenance.py``). A search by carte Vitale names the beneficiary by the card's
serial number and index: if the card in the reader is not the one the beneficiary was selected on, it is refused
(409, CNDA INSi 1.03). A search by traits follows the référentiel's sequence (``agent/domain/insi_requery.py``)
and reports each attempt. Answers carry a French message for the doctor.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.api.context import SERVICES, Services
from agent.api.guard import CLIENT_KEY, read_json
from agent.api.ins_schemas import ERRORS, INS_SCHEMA, SEARCH_ANSWER_SCHEMA, SEARCH_REQUEST_SCHEMA, TRAITS_SCHEMA
from agent.api.patients import open_patients
from agent.api.spec import RouteTable, json_response
from agent.domain.ins import OID_INS_NIR, IdentityStatus, Ins, check_ins, normalize_matricule
from agent.domain.policy import Actor, TraceEvent
from agent.domain.traits import (
    IdentityTraits,
    StatusEvent,
    likely_not_found_causes,
    next_status,
    normalize_name,
    parse_traits,
    traits_differences,
)
from agent.errors import Conflict, FieldError, InvalidInput, RelaisError, Unavailable
from agent.ins import search as insi_search
from agent.ins.client import Caller, InsiClient
from agent.ins.soap import CR_FOUND, InsiAnswer, VitaleQuery
from agent.logs import get_logger
from agent.store.ins_provenance import InsProvenance, record_insi

log = get_logger("api.ins")


@dataclass(frozen=True, slots=True)
class Who:
    caller: Caller
    actor: Actor


def _insi(services: Services) -> InsiClient:
    if services.insi is None:
        raise Unavailable("Le téléservice INSi n'est pas configuré sur ce poste (section [insi] du fichier de "
                          "configuration).", code="insi_unreachable")
    return services.insi


async def _who(request: web.Request, services: Services, insi: InsiClient) -> Who:
    """The logged-in CPS if there is one, else the structure certificate, else 503 cps_absent."""
    client = request.get(CLIENT_KEY)
    client_name = client.name if client else ""
    workstation = services.config.workstation_id
    refusal: RelaisError | None = None
    if services.cards is not None:
        try:
            signer = services.cards.require_signer("authentication")
            holder = services.cards.cps_holder()
            if holder is None:
                raise Unavailable("La carte CPS n'a pas pu être lue.", code="cps_absent")
            actor = Actor(rpps=holder.rpps or None, workstation=workstation, client=client_name,
                          profession=holder.profession or None, specialty=holder.specialty or None)
            return Who(insi_search.cps_caller(insi.settings, signer, holder.national_id, holder.profession), actor)
        except Unavailable as exc:
            if exc.code == "insi_not_configured":
                raise
            refusal = exc
    if insi.structure_signer is not None:
        structure = insi.settings.structure_id or workstation
        return Who(insi_search.structure_caller(insi.settings, insi.structure_signer, structure),
                   Actor(rpps=None, workstation=workstation, client=client_name))
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


async def _trace(services: Services, who: Who, action: str, outcome: str, ins: str | None,
                 details: dict[str, Any]) -> None:
    try:
        await services.rights.traces.record(TraceEvent(action=action, actor=who.actor, ins=ins, outcome=outcome,
                                                details=details))
    except Exception:  # a trace failure is logged loudly; the INSi answer is still due
        log.exception("trace INSi non enregistrée")


async def _record(services: Services, who: Who, answer: InsiAnswer, operation: str) -> bool:
    """Remember that INSi gave this INS (and its OID); True when it is recorded."""
    if answer.code != CR_FOUND or answer.ins is None:
        return False
    row = InsProvenance(ins=answer.ins.value, oid=answer.ins.oid, obtained_at=services.clock.now().isoformat(),
                        operation=operation, rpps=who.actor.rpps,
                        structure=who.caller.emitter if who.caller.channel == "mtls" else None,
                        workstation=services.config.workstation_id)
    await services.db.write(lambda conn: record_insi(conn, row))
    return True


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
        body["identity_source"] = "insi"
        body["qualified_via_insi"] = True
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
    if answer.result != "found":
        body["identity_source"] = None
        body["qualified_via_insi"] = False
    return body


def _index(body: dict[str, Any]) -> int:
    index = body.get("beneficiary_index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidInput.field("beneficiary_index", "L'indice du bénéficiaire de la carte Vitale est requis "
                                                      "(entier, 0 pour le premier).")
    serial = body.get("card_serial")
    if serial is not None and (not isinstance(serial, str) or not serial.strip()):
        raise InvalidInput.field("card_serial", "Le numéro de série de la carte Vitale (card_serial de "
                                                "GET /v1/cards) est une chaîne non vide.")
    return index


async def search(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    source = body.get("source")
    if source not in ("vitale", "traits"):
        raise InvalidInput.field("source", "La source est « vitale » ou « traits ».")
    typed = _traits_or_422(body.get("traits"), services) if source == "traits" else None
    index = _index(body) if source == "vitale" else 0
    insi = _insi(services)
    # The card is checked before anything is signed: a swapped card never reaches INSi.
    query = _vitale_query(services, index, body.get("card_serial")) if typed is None else None
    who = await _who(request, services, insi)
    attempts: list[dict[str, Any]] = []
    message = ""
    if query is None:
        assert typed is not None
        outcome = await insi_search.search_traits(insi, typed, who.caller)
        answer, attempts, message = outcome.answer, outcome.attempts, outcome.message
    else:
        answer = await insi.search_vitale(query, who.caller)
    recorded = await _record(services, who, answer, "search_traits" if typed is not None else "search_vitale")
    await _trace(services, who, "insi.search", answer.result, answer.ins.value if answer.ins else None,
                 {"source": source, "calls": max(1, len(attempts))})
    response = _answer_body(answer, typed)
    response["qualified_via_insi"] = recorded
    if attempts:
        response["attempts"] = attempts
    if message and answer.result != "found":
        response["message"] = message
    if query is not None:
        response["card_serial"] = query.card_serial or None
        if recorded and answer.ins is not None and query.card_serial:  # the dashboard's DMP view offers them
            open_patients(request.app).remember(query.card_serial, index, answer.ins)
    return web.json_response(response)


def _vitale_query(services: Services, index: int, selected_serial: Any) -> VitaleQuery:
    if services.cards is None:
        raise Unavailable("Aucune carte Vitale n'est lisible sur ce poste.", code="vitale_absent")
    card = services.cards.vitale_card()
    if isinstance(selected_serial, str) and selected_serial.strip() != card.serial:
        raise Conflict("La carte Vitale a changé depuis la sélection du patient : sélectionnez à nouveau le "
                       "bénéficiaire sur la carte présente dans le lecteur.", code="vitale_card_changed")
    for beneficiary in card.beneficiaries:
        if beneficiary.index == index:
            name = normalize_name(beneficiary.birth_name or beneficiary.family_name)
            return VitaleQuery(insured_nir=normalize_matricule(beneficiary.nir), birth_name=name,
                               birth_date=beneficiary.birth_date, birth_rank=int(beneficiary.birth_rank or 1),
                               card_serial=card.serial)
    raise InvalidInput.field("beneficiary_index", f"La carte Vitale n'a pas de bénéficiaire d'indice {index}.")


def _ins_or_errors(raw_ins: Any, services: Services) -> tuple[Ins | None, list[FieldError]]:
    if not isinstance(raw_ins, dict) or not isinstance(raw_ins.get("value"), str):
        return None, [FieldError("ins.value", "Le matricule INS (15 caractères) est requis.")]
    value = normalize_matricule(raw_ins["value"])
    oid = raw_ins.get("oid") or OID_INS_NIR
    problems = check_ins(value, oid if isinstance(oid, str) else "", allow_test_oids=services.config.allow_test_oids)
    errors = [FieldError(f"ins.{field}" if field != "ins" else "ins.value", msg) for field, msg in problems]
    return (None if problems else Ins(value, oid)), errors


async def verify(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    ins, errors = _ins_or_errors(body.get("ins"), services)
    traits, problems = parse_traits(body.get("traits"), _today(services))
    errors += [FieldError(field, message) for field, message in problems]
    if errors or ins is None or traits is None:
        raise InvalidInput(f"Vérification impossible : {errors[0].message}", errors=errors, code="invalid_traits")
    insi = _insi(services)
    who = await _who(request, services, insi)
    outcome = await insi_search.verify(insi, ins, traits, who.caller)
    recorded = outcome.result == "match" and await _record(services, who, outcome.answer, "verify")
    await _trace(services, who, "insi.verify", outcome.result, ins.value, {})
    response = _answer_body(outcome.answer, traits)
    response.update(result=outcome.result, ins_matches=outcome.ins_matches, differences=outcome.differences,
                    qualified_via_insi=recorded, identity_source="insi" if recorded else None)
    if outcome.result == "match":
        response["message"] = "L'INS et les traits d'identité sont confirmés par l'INSi."
    elif outcome.result == "mismatch":
        response["replaced"] = outcome.replaced
        if outcome.replaced:
            response["message"] = "Cet INS a été remplacé : utilisez l'INS actif renvoyé par l'INSi."
        elif outcome.ins_matches:
            response["message"] = ("L'INSi confirme l'INS mais pas les traits ({}) : reprenez les traits de "
                                   "référence renvoyés avant d'utiliser cet INS.".format(", ".join(
                                       outcome.differences)))
        else:
            response["message"] = ("L'INSi renvoie un autre INS pour ces traits : ne pas utiliser cet INS, "
                                   "vérifiez l'identité.")
    else:
        response["result"] = "not_found"
        response["message"] = ("L'INSi ne trouve pas une identité unique pour ces traits : l'INS ne peut pas être "
                               "vérifié (vérifiez les traits, ajoutez le lieu de naissance).")
    return web.json_response(response)


def register(table: RouteTable) -> None:
    table.post(
        "/v1/ins/search", search, summary="Rechercher l'INS d'un patient (carte Vitale ou traits d'identité)",
        tag="identity", request_schema=SEARCH_REQUEST_SCHEMA,
        request_examples={
            "vitale": {"summary": "Depuis la carte Vitale (card_serial de GET /v1/cards)",
                       "value": {"source": "vitale", "beneficiary_index": 0, "card_serial": "900000001"}},
            "traits": {"summary": "Depuis les traits d'identité", "value": {"source": "traits", "traits": {
                "birth_name": "PAT-TROIS", "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28",
                "birth_place": "51215"}}}},
        responses={200: json_response("Résultat de l'INSi", SEARCH_ANSWER_SCHEMA), **ERRORS},
    )
    table.post(
        "/v1/ins/verify", verify, summary="Vérifier un INS connu auprès de l'INSi", tag="identity",
        request_schema={"type": "object", "required": ["ins", "traits"],
                        "properties": {"ins": INS_SCHEMA, "traits": TRAITS_SCHEMA}},
        responses={200: json_response("match, mismatch ou not_found", SEARCH_ANSWER_SCHEMA), **ERRORS},
    )
