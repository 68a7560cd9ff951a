"""JSON schemas of the identity routes (``agent/api/ins.py``): requests, answers, problems (OpenAPI document)."""

from __future__ import annotations

from typing import Any

from agent.api.spec import problem_response
from agent.domain.ins import IdentityStatus

TRAITS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["birth_name", "given_names", "sex", "birth_date"],
    "properties": {
        "birth_name": {"type": "string", "description": "Nom de naissance (pas le nom d'usage)"},
        "given_names": {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
                        "description": "Prénoms de naissance, dans l'ordre de la pièce d'identité"},
        "sex": {"type": "string", "pattern": "^[MFmf]$", "description": "M ou F"},
        "birth_date": {"type": "string", "format": "date"},
        "birth_place": {"type": "string", "description": "Code INSEE de la commune de naissance (99xxx : pays)"},
    },
}
INS_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"value": {"type": "string"}, "oid": {"type": "string"},
                                                               "kind": {"enum": ["NIR", "NIA"]}}}
SEARCH_REQUEST_SCHEMA: dict[str, Any] = {"oneOf": [
    {"type": "object", "required": ["source", "beneficiary_index"],
     "properties": {"source": {"const": "vitale"}, "beneficiary_index": {"type": "integer", "minimum": 0},
                    "card_serial": {"type": "string", "description": "card_serial de GET /v1/cards au moment de la "
                                    "sélection : la recherche est refusée (409 vitale_card_changed) si la carte a "
                                    "changé depuis (CNDA INSi 1.03)"}}},
    {"type": "object", "required": ["source", "traits"],
     "properties": {"source": {"const": "traits"}, "traits": TRAITS_SCHEMA}},
]}
SEARCH_ANSWER_SCHEMA: dict[str, Any] = {
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
        "ins_matches": {"type": "boolean", "description": "verify: INSi returns this INS as the active one"},
        "identity_source": {"enum": ["insi", None], "description": "insi: INS returned by the INSi téléservice"},
        "qualified_via_insi": {"type": "boolean",
                               "description": "the INS and its OID were recorded as obtained through INSi"},
        "card_serial": {"type": ["string", "null"]},
        "attempts": {"type": "array", "description": "search by traits: each INSi request of the sequence",
                     "items": {"type": "object", "properties": {
                         "given_names": {"type": "array", "items": {"type": "string"}},
                         "birth_place": {"type": ["string", "null"]}, "reason": {"type": "string"},
                         "result": {"type": "string"}, "insi_code": {"type": "string"}}}},
    },
}
REMOTE_NOTE = " ; remote : {code (insi_NNN), subcode (siram_NN), severity, message} tels que la CNAM les envoie"
ERRORS = {
    409: problem_response("La carte Vitale a changé depuis la sélection (vitale_card_changed)"),
    422: problem_response("Traits ou INS invalides (errors[].field nomme le champ) : INSi non appelé"),
    502: problem_response("L'INSi a refusé la demande (insi_refused, insi_oid_refused)" + REMOTE_NOTE),
    503: problem_response("INSi injoignable (insi_unreachable), momentanément indisponible "
                          "(insi_temporarily_unavailable" + REMOTE_NOTE + "), non configuré (insi_not_configured), "
                          "CPS absente (cps_absent, cps_not_logged_in) ou carte Vitale absente (vitale_absent)"),
}
