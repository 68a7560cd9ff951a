"""Request bodies checked against the JSON schema their route declares (the one the OpenAPI document shows).

One small checker for the subset of JSON Schema the route table uses, so that the contract an integrator reads
is the contract the agent enforces, with no dependency and French messages naming each field by its path
(``patient.nmae``, ``destinations.mss[0].adress``):

- every object whose properties are declared is closed (``additionalProperties: false``, written out in the
  OpenAPI document by ``closed``): a misspelled key is refused instead of silently ignored (``destinatons``
  left a document to the DMP only, ``visibilty`` left it visible to the patient);
- ``type`` (``null`` only where declared: ``"destinations": null`` is refused), ``const``, ``enum``, ``oneOf``
  (the branch whose required keys and constants the body carries), ``items``, ``$ref`` to shared components.

Values' finer rules (INS key, RPPS, lengths, dates...) stay with the use case that owns them, which answers them
with its own French messages; the route table refuses at declaration a keyword this checker does not know, so a
schema can never promise a check that is not made.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from agent.errors import FieldError, InvalidInput

# Keywords checked here, then keywords that are documentation or left to the handlers' own checks.
CHECKED = frozenset({"type", "properties", "additionalProperties", "items", "enum", "const", "oneOf", "$ref"})
DOCUMENTED = frozenset({"description", "title", "default", "examples", "example", "contentEncoding",
                        "contentMediaType", "format", "required", "pattern", "minLength", "maxLength", "minimum",
                        "maximum", "maxItems", "minItems"})

_TYPE_NAMES = {"object": "un objet", "array": "une liste", "string": "une chaîne", "integer": "un entier",
               "number": "un nombre", "boolean": "true ou false", "null": "null"}

Resolver = Callable[[str], dict[str, Any]]


def closed(schema: Any) -> Any:
    """A copy of ``schema`` where every object with declared properties refuses other keys, unless it says
    otherwise (``additionalProperties: true`` or a schema). ``$ref`` targets are closed where they are
    registered."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) if k in ("properties", "items", "oneOf", "anyOf", "allOf") else copy.deepcopy(v)
           for k, v in schema.items()}
    if "properties" in out:
        out["properties"] = {name: closed(sub) for name, sub in schema["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def unsupported_keywords(schema: Any, path: str = "#") -> list[str]:
    """Keywords of ``schema`` that neither this checker nor the handlers account for (a route declaring one is
    refused by the route table)."""
    if not isinstance(schema, dict):
        return []
    found = [f"{path}/{k}" for k in schema if k not in CHECKED | DOCUMENTED]
    for name, sub in (schema.get("properties") or {}).items():
        found += unsupported_keywords(sub, f"{path}/properties/{name}")
    if isinstance(schema.get("items"), dict):
        found += unsupported_keywords(schema["items"], f"{path}/items")
    if isinstance(schema.get("additionalProperties"), dict):
        found += unsupported_keywords(schema["additionalProperties"], f"{path}/additionalProperties")
    for i, sub in enumerate(schema.get("oneOf") or []):
        found += unsupported_keywords(sub, f"{path}/oneOf/{i}")
    return found


def check_body(body: Any, schema: dict[str, Any], resolve: Resolver) -> None:
    """Raise ``InvalidInput`` (422) naming every field of ``body`` that the schema refuses."""
    errors = _check(body, schema, "", resolve)
    if not errors:
        return
    unknown = [e.field for e in errors if e.message.startswith(UNKNOWN)]
    if len(unknown) == len(errors):
        raise InvalidInput(f"Champ(s) inconnu(s) dans la requête : {', '.join(unknown)}. Vérifiez l'orthographe "
                           "des noms de champs (voir /v1/openapi.json).", errors=errors, code="unknown_field")
    raise InvalidInput("La requête ne respecte pas le schéma de l'API : "
                       + "; ".join(f"{e.field or 'corps'} : {e.message}" for e in errors), errors=errors)


UNKNOWN = "Champ inconnu"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    return True


def _check(value: Any, schema: dict[str, Any], path: str, resolve: Resolver) -> list[FieldError]:
    if "$ref" in schema:
        return _check(value, resolve(schema["$ref"]), path, resolve)
    where = path or "corps"
    if "oneOf" in schema:
        return _one_of(value, schema["oneOf"], path, resolve)
    if "const" in schema and value != schema["const"]:
        return [FieldError(where, f"Valeur attendue : {schema['const']!r}.")]
    if "enum" in schema and value not in schema["enum"]:
        shown = ", ".join("null" if v is None else str(v) for v in schema["enum"])
        return [FieldError(where, f"Valeur attendue parmi : {shown}.")]
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_type_ok(value, k) for k in kinds):
            expected = " ou ".join(_TYPE_NAMES.get(k, k) for k in kinds)
            got = "null" if value is None else _TYPE_NAMES.get(_kind_of(value), "autre chose")
            return [FieldError(where, f"{expected[0].upper()}{expected[1:]} attendu, pas {got}.")]
    errors: list[FieldError] = []
    if isinstance(value, dict) and ("properties" in schema or "additionalProperties" in schema):
        props: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors += _check(item, props[key], _join(path, key), resolve)
            elif extra is False:
                known = ", ".join(props) or "aucun"
                errors.append(FieldError(_join(path, key), f"{UNKNOWN} (champs possibles : {known})."))
            elif isinstance(extra, dict):
                errors += _check(item, extra, _join(path, key), resolve)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += _check(item, schema["items"], f"{path}[{index}]", resolve)
    return errors


def _kind_of(value: Any) -> str:
    for kind in ("boolean", "object", "array", "string", "integer", "number"):
        if _type_ok(value, kind):
            return kind
    return "null"


def _one_of(value: Any, branches: list[dict[str, Any]], path: str, resolve: Resolver) -> list[FieldError]:
    """The branch the body means: the ones whose required keys (and constants) it carries, else all; one of
    them passing is enough (the handler then checks the values); otherwise the closest one's errors."""
    resolved = [resolve(b["$ref"]) if "$ref" in b else b for b in branches]

    def meant(branch: dict[str, Any]) -> bool:
        if not isinstance(value, dict):
            return True
        if not all(k in value for k in branch.get("required", ())):
            return False
        props = branch.get("properties") or {}
        return all(value.get(k) == p["const"] for k, p in props.items() if isinstance(p, dict) and "const" in p)

    candidates = [b for b in resolved if meant(b)] or resolved
    results = [_check(value, b, path, resolve) for b in candidates]
    if any(not r for r in results):
        return []
    return min(results, key=len)
