"""The API's contract is enforced, not only documented: a misspelled key anywhere in an order is refused (422
naming it by its path) instead of being silently ignored, and the OpenAPI document shows the shared schemas, every
document form of an order and examples."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import pytest

from tests.support.ins import insi_gave_order_patient
from tests.support.queue import order_body

# (where the typo goes, the misspelled key): one per object of an order.
TYPOS = [
    ((), "destinatons"),
    ((), "visibilty"),
    (("patient",), "nmae"),
    (("patient", "address"), "citty"),
    (("author",), "rps"),
    (("author", "organisation"), "nmae"),
    (("document",), "titel"),
    (("visibility",), "invisible_to_patien"),
    (("destinations",), "dmpp"),
    (("destinations", "mss", 0), "adress"),
    (("mss_message",), "subjet"),
]


def _full_body() -> dict[str, Any]:
    """An order using every object the contract has (each then gets one misspelled key)."""
    body = order_body(delay=900, mss=["dr.x@medecin.mssante.fr"])
    body["patient"]["address"] = {"lines": ["1 rue des Tilleuls"], "postal_code": "75011", "city": "Paris"}
    body["author"]["organisation"] = {"id": "10B0000000", "name": "Cabinet des Tilleuls"}
    body["visibility"] = {"invisible_to_patient": False}
    body["mss_message"] = {"subject": "Compte rendu"}
    return body


def _path(where: tuple[Any, ...], key: str) -> str:
    text = ""
    for part in (*where, key):
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _with_typo(body: dict[str, Any], where: tuple[Any, ...], key: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    target: Any = out
    for part in where:
        target = target[part]
    target[key] = True
    return out


async def _post(http: aiohttp.ClientSession, agent: Any, body: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(agent.url + "/v1/orders", json=body, headers=agent.headers()) as r:
        assert r.content_type in ("application/json", "application/problem+json")
        return r.status, await r.json()


async def test_a_misspelled_key_in_every_object_of_an_order_is_refused(start_agent: Any,
                                                                       http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    body = _full_body()
    for where, key in TYPOS:
        status, problem = await _post(http, agent, _with_typo(body, where, key))
        path = _path(where, key)
        assert status == 422, (path, problem)
        assert problem["code"] == "unknown_field", problem
        assert [e["field"] for e in problem["errors"]] == [path]
        assert path in problem["detail"] and "inconnu" in problem["detail"]
    # All at once: each one named.
    everything = body
    for where, key in TYPOS:
        everything = _with_typo(everything, where, key)
    status, problem = await _post(http, agent, everything)
    assert status == 422
    assert {e["field"] for e in problem["errors"]} == {_path(w, k) for w, k in TYPOS}
    # Nothing was stored; the same body without typos is accepted (the typos were the only fault).
    async with http.get(agent.url + "/v1/orders", headers=agent.headers()) as r:
        assert (await r.json())["items"] == []
    await insi_gave_order_patient(agent, body)  # the DMP takes only an INS obtained through INSi
    status, order = await _post(http, agent, body)
    assert status == 201, order


@pytest.mark.parametrize(("field", "value"), [("destinations", None), ("visibility", None), ("patient", None),
                                              ("delay_seconds", "600"), ("delay_seconds", True)])
async def test_wrong_types_and_null_are_refused(start_agent: Any, http: aiohttp.ClientSession, field: str,
                                                value: Any) -> None:
    agent = await start_agent()
    body = order_body(delay=900)
    body[field] = value
    status, problem = await _post(http, agent, body)
    assert status == 422 and problem["errors"][0]["field"] == field, problem
    async with http.get(agent.url + "/v1/orders", headers=agent.headers()) as r:
        assert (await r.json())["items"] == []


async def test_two_document_forms_at_once_are_refused(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    body = order_body(delay=900)
    body["document"]["kind"] = "n1"
    status, problem = await _post(http, agent, body)
    assert status == 422 and problem["code"] == "unknown_field"
    assert [e["field"] for e in problem["errors"]] == ["document.kind"]


async def test_openapi_shows_every_document_form_shared_schemas_and_examples(start_agent: Any,
                                                                             http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    async with http.get(agent.url + "/v1/openapi.json") as r:
        document = await r.json()
    schemas = document["components"]["schemas"]
    forms = schemas["NewOrderDocument"]["oneOf"]
    assert [f["$ref"].rsplit("/", 1)[1] for f in forms] == ["DocumentCda", "DocumentPdf", "DocumentContent",
                                                           "DocumentStructured"]
    for name in ("OrderRequest", "NewOrderPatient", "NewOrderAuthor", "Visibility", "Destinations", "MssMessage",
                 "DocumentPdf"):
        assert schemas[name]["additionalProperties"] is False, name
    create = document["paths"]["/v1/orders"]["post"]
    media = create["requestBody"]["content"]["application/json"]
    assert media["schema"] == {"$ref": "#/components/schemas/OrderRequest"}
    assert "pdf_base64" in media["examples"]["pdf"]["value"]["document"]
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/Order")
    for path, method in (("/v1/cps/login", "post"), ("/v1/ins/search", "post"), ("/v1/cda/validate", "post"),
                         ("/v1/patients/{ins}/consent", "put")):
        assert document["paths"][path][method]["requestBody"]["content"]["application/json"]["examples"], path
    # Every request schema of the API is closed where it declares its fields.
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema and "properties" in schema:
                assert schema.get("additionalProperties") is False, (method, path)
