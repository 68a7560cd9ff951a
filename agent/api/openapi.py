"""The OpenAPI 3.1 document, built from the route table so that it cannot drift from the code."""

from __future__ import annotations

import re
from typing import Any

from agent.api.spec import COMPONENTS, Route, problem_response

_PARAM = re.compile(r"\{(\w+)\}")

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem; title and detail are French, for the doctor; code is stable English.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "examples": ["urn:relais:error:token_invalid"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "service": {"type": "string", "description": "the national service that answered (dmp, insi, mss)"},
        "dmp_code": {"type": "string", "description": "PRE_ERR: the DMP's own error code (registry errorCode, SOAP "
                                                      "fault subcode, HL7v3 acknowledgement code), as it gave it"},
        "dmp_text": {"type": "string", "description": "PRE_ERR: the DMP's own text for that code"},
        "rule": {"type": "string", "description": "the CNDA test book's rule that refused the request"},
    },
}

_COMMON_ERRORS = {
    403: "Host, Origin ou Sec-Fetch-Site refusé",
    429: "Trop d'échecs d'authentification",
}


def build_document(routes: list[Route], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": _operation_id(route),
            "summary": route.summary,
            "tags": [route.tag],
            "responses": {},
        }
        if route.description:
            operation["description"] = route.description
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(route.path)
        ]
        params.extend(route.parameters)
        if params:
            operation["parameters"] = params
        if route.request_schema is not None:
            media: dict[str, Any] = {"schema": route.request_schema}
            if route.request_examples:
                media["examples"] = route.request_examples
            operation["requestBody"] = {"required": True, "content": {"application/json": media}}
        for status, response in sorted(route.responses.items()):
            operation["responses"][str(status)] = response
        if not operation["responses"]:
            operation["responses"]["200"] = {"description": "OK"}
        if route.public:
            operation["security"] = []
        else:
            operation["responses"].setdefault("401", problem_response("Jeton manquant, inconnu ou révoqué"))
        if route.body != "none":
            operation["responses"].setdefault("413", problem_response("Corps trop volumineux"))
            operation["responses"].setdefault("422", problem_response(
                "Données invalides (invalid_input ; unknown_field : champ inconnu) ; errors[].field nomme chaque "
                "champ par son chemin"))
        for status, text in _COMMON_ERRORS.items():
            operation["responses"].setdefault(str(status), problem_response(text))
        operation.update(route.extra)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Relais : API locale de l'agent",
            "version": version,
            "description": "API locale (127.0.0.1) de l'agent Relais pour les logiciels de cabinet (LGC).",
        },
        "servers": [{"url": "http://127.0.0.1:7463"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": PROBLEM_SCHEMA, **dict(sorted(COMPONENTS.items()))},
        },
    }


def _operation_id(route: Route) -> str:
    words = re.sub(r"[^a-z0-9/]+", "_", re.sub(r"[{}]", "", route.path.lower())).split("/")
    return route.method.lower() + "_" + "_".join(w.strip("_") for w in words if w.strip("_") and w != "v1")
