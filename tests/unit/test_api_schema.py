"""The request checker: what the OpenAPI document declares is what the agent enforces."""

from __future__ import annotations

from typing import Any

import pytest

from agent.api.schema import check_body, closed, unsupported_keywords
from agent.api.spec import COMPONENTS, RouteTable, resolve
from agent.errors import InvalidInput

SCHEMA = closed({
    "type": "object", "required": ["patient"],
    "properties": {
        "patient": {"type": "object", "properties": {"ins": {"type": "string"}}},
        "open": {"type": "object", "description": "no declared fields: stays open"},
        "items": {"type": "array", "items": {"type": "object", "properties": {"address": {"type": "string"}}}},
        "delay": {"type": "integer"},
        "kind": {"enum": ["a", "b"]},
        "form": {"oneOf": [
            {"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}},
            {"type": "object", "required": ["y"], "properties": {"y": {"type": "string"}, "z": {"type": "string"}}},
        ]},
    },
})


def fields(body: Any) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        check_body(body, SCHEMA, resolve)
    return [e.field for e in caught.value.errors]


def test_closed_objects_name_every_unknown_key_by_its_path() -> None:
    assert SCHEMA["additionalProperties"] is False
    assert "additionalProperties" not in SCHEMA["properties"]["open"]
    assert fields({"patient": {"ins": "1", "nmae": "x"}, "destinatons": {}, "items": [{"address": "a"},
                                                                                      {"adress": "b"}]}) == [
        "patient.nmae", "destinatons", "items[1].adress"]
    with pytest.raises(InvalidInput) as caught:
        check_body({"patient": {"nmae": 1}}, SCHEMA, resolve)
    assert caught.value.code == "unknown_field" and "patient.nmae" in caught.value.message
    check_body({"patient": {"ins": "1"}, "open": {"anything": 1}}, SCHEMA, resolve)  # no error


def test_types_refuse_null_and_booleans_as_integers() -> None:
    assert fields({"patient": None}) == ["patient"]
    assert fields({"delay": True}) == ["delay"]
    assert fields({"delay": "5"}) == ["delay"]
    assert fields({"kind": "c"}) == ["kind"]
    check_body({"delay": 5, "kind": "a"}, SCHEMA, resolve)


def test_one_of_takes_the_branch_the_body_means() -> None:
    check_body({"form": {"y": "1", "z": "2"}}, SCHEMA, resolve)
    assert fields({"form": {"y": "1", "zz": "2"}}) == ["form.zz"]
    assert fields({"form": {"x": "1", "y": "2"}}) in (["form.y"], ["form.x"])


def test_a_keyword_that_is_not_checked_cannot_be_declared() -> None:
    assert unsupported_keywords({"type": "object", "properties": {"a": {"anyOf": []}}}) == ["#/properties/a/anyOf"]

    async def handler(request: Any) -> Any:
        return None

    table = RouteTable()
    with pytest.raises(ValueError, match="not checked"):
        table.post("/x", handler, summary="x", tag="x", request_schema={"type": "object", "patternProperties": {}})


def test_every_request_schema_of_the_api_is_closed_and_resolvable() -> None:
    from agent.api import cards, cda, consent, dmp, ins, mss, orders, ui  # noqa: F401 - registers components

    table = RouteTable()
    for module in (cards, cda, consent, dmp, ins, orders, ui):
        module.register(table)
    declared = [r for r in table.routes if r.request_schema is not None]
    assert any(r.path == "/v1/orders" for r in declared)
    for route in declared:
        assert not unsupported_keywords(route.request_schema), route.path
        schema = route.request_schema
        schema = resolve(schema["$ref"]) if "$ref" in schema else schema
        if "properties" in schema:
            assert schema["additionalProperties"] is False, route.path
    order = COMPONENTS["OrderRequest"]
    assert {"patient", "author", "document", "visibility", "destinations", "mss_message"} <= set(order["properties"])
