"""The patients open at this workstation, so that the dashboard's DMP view starts from a person, not from digits.

``GET /v1/patients/current`` lists the carte Vitale's beneficiaries (name, birth date) and the patient the LGC
opened (``PUT /v1/patients/current``), each with the INS INSi gave for them when there is one: the DMP is reached
only with an INS obtained through INSi (CNDA EX_GEN-1530), never with the NIR read from the card. For the insured
person (quality "00") that is the card's NIR once INSi returned it as their INS on this workstation; for anyone on
the card, it is what a search by carte Vitale (``POST /v1/ins/search``, ``source: vitale``) answered for that card
and beneficiary, remembered here. A beneficiary without one is listed with ``ins: null``: the dashboard offers the
INSi search first.

What is remembered is held in memory only (never written, never logged, never in an event), bounded, and keyed by
the card's serial number, so another card never inherits an INS; ``patient.opened`` / ``patient.closed`` carry no
patient data.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.guard import read_json
from agent.api.ins_schemas import INS_SCHEMA
from agent.api.spec import RouteTable, json_response, problem_response
from agent.domain.ins import OID_INS_NIR, Ins, check_ins, key_is_valid, normalize_matricule
from agent.errors import FieldError, InvalidInput, RelaisError

INSURED = "00"
MAX_REMEMBERED = 64


@dataclass(frozen=True, slots=True)
class LgcPatient:
    ins: Ins
    display_name: str
    birth_date: str


class OpenPatients:
    """INS found by INSi for a (card serial, beneficiary index), and the patient the LGC opened; memory only."""

    def __init__(self) -> None:
        self._by_card: OrderedDict[tuple[str, int], Ins] = OrderedDict()
        self.lgc: LgcPatient | None = None

    def remember(self, card_serial: str, index: int, ins: Ins) -> None:
        key = (card_serial, index)
        self._by_card[key] = ins
        self._by_card.move_to_end(key)
        while len(self._by_card) > MAX_REMEMBERED:
            self._by_card.popitem(last=False)

    def found(self, card_serial: str, index: int) -> Ins | None:
        return self._by_card.get((card_serial, index))


OPEN_PATIENTS: web.AppKey[OpenPatients] = web.AppKey("relais_open_patients", OpenPatients)


def open_patients(app: web.Application) -> OpenPatients:
    return app[OPEN_PATIENTS]


def _display_name(family: str, given: list[str]) -> str:
    return " ".join(part for part in (family, " ".join(given)) if part)


async def current(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    patients = open_patients(request.app)
    consultation = services.consultation
    items: list[dict[str, Any]] = []
    vitale: dict[str, Any] = {"present": False}
    try:
        card = services.cards.vitale_card()
    except RelaisError as absent:
        vitale["reason"] = absent.message
    else:
        vitale = {"present": True, "card_serial": card.serial or None}
        for b in card.beneficiaries:
            ins = patients.found(card.serial, b.index) if card.serial else None
            nir = normalize_matricule(b.nir or "")
            if ins is None and b.quality == INSURED and key_is_valid(nir):
                oid = await consultation.insi_oid(nir)
                ins = Ins(nir, oid) if oid else None
            items.append({"source": "vitale", "beneficiary_index": b.index, "card_serial": card.serial or None,
                          "display_name": _display_name(b.family_name or b.birth_name, list(b.given_names)),
                          "birth_date": b.birth_date, "quality": b.quality,
                          "ins": ins.as_dict() if ins else None})
    if patients.lgc is not None:
        lgc = patients.lgc
        oid = await consultation.insi_oid(lgc.ins.value)
        items.append({"source": "lgc", "display_name": lgc.display_name, "birth_date": lgc.birth_date,
                      "ins": Ins(lgc.ins.value, oid).as_dict() if oid else None,
                      "declared_ins": lgc.ins.as_dict()})
    return web.json_response({"vitale": vitale, "items": items})


async def open_patient(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    raw = body.get("ins") or {}
    value = normalize_matricule(str(raw.get("value", "")))
    oid = str(raw.get("oid") or OID_INS_NIR)
    problems = check_ins(value, oid, allow_test_oids=services.config.allow_test_oids)
    if problems:
        raise InvalidInput("INS invalide.", errors=[FieldError(f"ins.{f}" if f != "ins" else "ins.value", m)
                                                    for f, m in problems])
    name = str(body.get("display_name", "")).strip()
    if not name:
        raise InvalidInput.field("display_name", "Le nom du patient (tel qu'affiché au médecin) est requis.")
    open_patients(request.app).lgc = LgcPatient(Ins(value, oid), name[:200], str(body.get("birth_date", "")))
    services.bus.publish("patient.opened", source="lgc")
    return await current(request)


async def close_patient(request: web.Request) -> web.Response:
    open_patients(request.app).lgc = None
    request.app[SERVICES].bus.publish("patient.closed", source="lgc")
    return await current(request)


PATIENT_SCHEMA: dict[str, Any] = {"type": "object", "required": ["source", "display_name", "ins"], "properties": {
    "source": {"enum": ["vitale", "lgc"], "description": "carte Vitale insérée, ou patient ouvert par le LGC"},
    "beneficiary_index": {"type": "integer"}, "card_serial": {"type": ["string", "null"]},
    "display_name": {"type": "string"}, "birth_date": {"type": "string"}, "quality": {"type": "string"},
    "ins": {"oneOf": [INS_SCHEMA, {"type": "null"}],
            "description": "l'INS obtenu par l'INSi (null : à obtenir par POST /v1/ins/search d'abord)"},
    "declared_ins": INS_SCHEMA}}
CURRENT_SCHEMA: dict[str, Any] = {"type": "object", "required": ["vitale", "items"], "properties": {
    "vitale": {"type": "object", "properties": {"present": {"type": "boolean"},
                                                "card_serial": {"type": ["string", "null"]},
                                                "reason": {"type": "string"}}},
    "items": {"type": "array", "items": PATIENT_SCHEMA}}}


def register(table: RouteTable) -> None:
    tag = "identity"
    table.get("/v1/patients/current", current, tag=tag,
              summary="Patients ouverts sur ce poste (carte Vitale, LGC) et leur INS obtenu par l'INSi",
              responses={200: json_response("Patients ouverts", CURRENT_SCHEMA)})
    table.put("/v1/patients/current", open_patient, tag=tag,
              summary="Le LGC ouvre un patient : le tableau de bord le propose dans l'accès DMP",
              description="Held in memory only. The DMP is reached only if INSi gave this INS (ins is null "
                          "otherwise).",
              request_schema={"type": "object", "required": ["ins", "display_name"], "properties": {
                  "ins": INS_SCHEMA, "display_name": {"type": "string", "maxLength": 200},
                  "birth_date": {"type": "string", "description": "AAAA-MM-JJ"}}},
              request_examples={"patient": {"summary": "Le patient du dossier ouvert", "value": {
                  "ins": {"value": "279035121518989", "oid": "1.2.250.1.213.1.4.10"},
                  "display_name": "PAT-TROIS DOMINIQUE", "birth_date": "1979-03-28"}}},
              responses={200: json_response("Patients ouverts", CURRENT_SCHEMA),
                         422: problem_response("INS ou nom invalide")})
    table.delete("/v1/patients/current", close_patient, tag=tag,
                 summary="Le LGC ferme le dossier du patient",
                 responses={200: json_response("Patients ouverts", CURRENT_SCHEMA)})
