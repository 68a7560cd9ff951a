"""The send-order routes on a real agent over its loopback socket: creation, idempotency, refusals, actions."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest

from tests.support.ins import insi_gave_order_patient
from tests.support.queue import make_cda, order_body


async def post(http: aiohttp.ClientSession, agent: Any, path: str, body: dict[str, Any] | None = None
               ) -> tuple[int, dict[str, Any]]:
    if path == "/v1/orders":
        await insi_gave_order_patient(agent, body)
    async with http.post(agent.url + path, json=body if body is not None else {}, headers=agent.headers()) as r:
        return r.status, await r.json()


async def get(http: aiohttp.ClientSession, agent: Any, path: str) -> tuple[int, dict[str, Any]]:
    async with http.get(agent.url + path, headers=agent.headers()) as r:
        return r.status, await r.json()


async def test_create_answers_201_with_the_stored_order(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    status, order = await post(http, agent, "/v1/orders", order_body(client_ref="visit-1-doc-1", delay=None))
    assert status == 201
    assert order["state"] == "scheduled"
    assert order["deliveries"] == [
        {"destination": "dmp", "state": "scheduled", "attempts": 0, "next_attempt_at": order["send_at"],
         "sent_at": None, "entry_uuid": None, "reconciled": False, "last_error": None}]
    delay = (_parse(order["send_at"]) - _parse(order["created_at"])).total_seconds()
    assert delay == 900  # the configured default: 15 minutes
    status, again = await get(http, agent, f"/v1/orders/{order['id']}")
    assert status == 200 and again["id"] == order["id"]


async def test_a_create_parses_its_ready_cda_once(start_agent: Any, http: aiohttp.ClientSession,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24 item 2: the destinations' rules, the header and the CSE notice share one parse (there were three;
    validation, when a kit is configured, parses in its own worker process)."""
    from agent.cda import service as cda_service
    from agent.mss import orders as mss_orders
    from agent.xml import cda_header, safe

    agent = await start_agent()
    parsed: list[int] = []
    real = safe.parse

    def counting(data: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed.append(len(data))
        return real(data, *args, **kwargs)

    for module in (cda_header, mss_orders):
        monkeypatch.setattr(module, "parse", counting)
    monkeypatch.setattr(cda_service.safe, "parse", counting)
    status, order = await post(http, agent, "/v1/orders", order_body(mss=["dr.x@medecin.mssante.fr"]))
    assert status == 201, order
    assert len(parsed) == 1


async def test_same_client_ref_answers_200_same_order_and_409_for_another_body(
        start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    body = order_body(client_ref="lgc-visit-8812-doc-3", delay=600)
    status, first = await post(http, agent, "/v1/orders", body)
    assert status == 201
    status, second = await post(http, agent, "/v1/orders", body)
    assert status == 200 and second["id"] == first["id"]
    other = order_body(client_ref="lgc-visit-8812-doc-3", delay=60)
    status, problem = await post(http, agent, "/v1/orders", other)
    assert status == 409 and problem["code"] == "client_ref_conflict"
    _, listing = await get(http, agent, "/v1/orders")
    assert [o["id"] for o in listing["items"]] == [first["id"]]


@pytest.mark.parametrize("status_value", ["PROV", "RECUP", "VALI"])
async def test_dmp_delivery_needs_a_qualified_ins(start_agent: Any, http: aiohttp.ClientSession,
                                                  status_value: str) -> None:
    agent = await start_agent()
    status, problem = await post(http, agent, "/v1/orders", order_body(status=status_value))
    assert status == 422 and problem["code"] == "ins_not_qualified"
    assert "qualifi" in problem["detail"]
    # MSSanté alone does not feed the DMP, but no INS may reference the document (INS/va1.53): a CDA naming the
    # patient by INS is refused, one naming the patient by the software's local number is accepted.
    status, problem = await post(http, agent, "/v1/orders",
                                 order_body(status=status_value, dmp=False, mss=["dr.x@medecin.mssante.fr"]))
    assert status == 422 and problem["errors"][0]["field"] == "document.cda_base64", problem
    local = make_cda(ins="DOSSIER-42", oid="1.2.250.1.999.1.1")
    status, _ = await post(http, agent, "/v1/orders", order_body(status=status_value, dmp=False, cda=local,
                                                                 mss=["dr.x@medecin.mssante.fr"]))
    assert status == 201


async def test_invalid_orders_are_refused_field_by_field(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    body = order_body()
    body["patient"]["ins"] = body["patient"]["ins"][:-2] + "00"  # wrong key
    body["author"]["rpps"] = "123"
    body["delay_seconds"] = -5
    status, problem = await post(http, agent, "/v1/orders", body)
    assert status == 422
    fields = {e["field"] for e in problem["errors"]}
    assert {"patient.ins", "author.rpps", "delay_seconds"} <= fields
    not_cda = order_body()
    not_cda["document"]["cda_base64"] = base64.b64encode(b"<html/>").decode()
    status, problem = await post(http, agent, "/v1/orders", not_cda)
    assert status == 422 and problem["errors"][0]["field"] == "document.cda_base64"
    other_patient = order_body(cda=make_cda(ins="279035121518989"))
    status, problem = await post(http, agent, "/v1/orders", other_patient)
    assert status == 422 and "ne correspond pas" in problem["detail"]


async def test_cancel_send_now_and_retry_routes(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    _, order = await post(http, agent, "/v1/orders", order_body(delay=900))
    status, cancelled = await post(http, agent, f"/v1/orders/{order['id']}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled"
    status, again = await post(http, agent, f"/v1/orders/{order['id']}/cancel")
    assert status == 200 and again["state"] == "cancelled"
    status, problem = await post(http, agent, f"/v1/orders/{order['id']}/send-now")
    assert status == 409 and problem["code"] == "order_cancelled"
    status, problem = await post(http, agent, f"/v1/orders/{order['id']}/retry")
    assert status == 409
    _, other = await post(http, agent, "/v1/orders", order_body(delay=900, cda=make_cda()))
    status, released = await post(http, agent, f"/v1/orders/{other['id']}/send-now")
    assert status == 200 and released["deliveries"][0]["state"] in ("ready", "sending", "sent", "waiting_card")
    status, problem = await post(http, agent, "/v1/orders/nope/cancel")
    assert status == 404 and problem["code"] == "order_not_found"


async def test_list_filters_and_pages(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    ids = []
    for _ in range(5):
        _, order = await post(http, agent, "/v1/orders", order_body(delay=900, cda=make_cda()))
        ids.append(order["id"])
    await post(http, agent, f"/v1/orders/{ids[0]}/cancel")
    _, page = await get(http, agent, "/v1/orders?limit=2")
    assert [o["id"] for o in page["items"]] == [ids[4], ids[3]]
    _, rest = await get(http, agent, f"/v1/orders?limit=10&cursor={page['next_cursor']}")
    assert [o["id"] for o in rest["items"]] == [ids[2], ids[1], ids[0]] and rest["next_cursor"] is None
    _, cancelled = await get(http, agent, "/v1/orders?state=cancelled")
    assert [o["id"] for o in cancelled["items"]] == [ids[0]]
    _, status = await get(http, agent, "/v1/status")
    assert status["queue"]["scheduled"] == 4 and status["queue"]["cancelled"] == 1


async def test_document_status_says_whether_it_was_fed(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    _, order = await post(http, agent, "/v1/orders", order_body(delay=900))
    unique_id = order["document"]["unique_id"]
    status, doc = await get(http, agent, f"/v1/documents/{unique_id}")
    assert status == 200
    assert doc["fed"] is False and doc["dmp"]["state"] == "scheduled" and doc["dmp"]["order_id"] == order["id"]
    _, unknown = await get(http, agent, "/v1/documents/1.2.3.4")
    assert unknown["fed"] is False and unknown["dmp"] is None


def _parse(text: str) -> Any:
    from agent.clock import parse_rfc3339

    return parse_rfc3339(text)


async def test_feeding_opposition_refuses_a_dmp_delivery(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    body = order_body()
    consent = {"dmp_consultation": "granted", "dmp_feeding": "opposition", "informed": True}
    async with http.put(f"{agent.url}/v1/patients/{body['patient']['ins']}/consent", json=consent,
                        headers=agent.headers()) as response:
        assert response.status == 200, await response.text()
    status, problem = await post(http, agent, "/v1/orders", body)
    assert status == 422 and problem["code"] == "feeding_opposed"
    _, listing = await get(http, agent, "/v1/orders")
    assert listing["items"] == []  # nothing stored, nothing will be sent


async def test_concurrent_retries_of_one_order_store_it_once(start_agent: Any, http: aiohttp.ClientSession) -> None:
    agent = await start_agent()
    body = order_body(client_ref="retry-storm", delay=900)
    answers = await asyncio.gather(*(post(http, agent, "/v1/orders", body) for _ in range(12)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 11 + [201]
    assert len({order["id"] for _, order in answers}) == 1
    _, listing = await get(http, agent, "/v1/orders")
    assert len(listing["items"]) == 1


@pytest.mark.parametrize("destinations", [None, [], "dmp", {"dmp": True, "mss": None}])
async def test_destinations_of_the_wrong_shape_are_a_422_not_a_500(start_agent: Any, http: aiohttp.ClientSession,
                                                                   destinations: Any) -> None:
    agent = await start_agent()
    body = order_body()
    body["destinations"] = destinations
    status, problem = await post(http, agent, "/v1/orders", body)
    assert status == 422, problem
    assert problem["errors"][0]["field"].startswith("destinations"), problem
