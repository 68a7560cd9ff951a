"""From the virtual carte Vitale to INSi, through the demo agent: cards, CPS login, search, trace."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from agent.cli.wiring import DemoOptions
from relais_sandbox.cards import DEMO_DOCTOR, DEMO_PIN
from relais_sandbox.identities import PAT_TROIS, PAT_TROIS_CAMILLE
from tests.support.traces import recorded


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str,
               body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with http.request(method, agent.url + path, json=body, headers=agent.headers()) as response:
        return response.status, await response.json(content_type=None)


async def beneficiaries(http: aiohttp.ClientSession, agent: Any) -> list[dict[str, Any]]:
    for _ in range(100):  # the virtual cards are inserted in the background: bounded wait
        status, cards = await call(http, agent, "GET", "/v1/cards")
        assert status == 200
        found = (cards.get("vitale") or {}).get("beneficiaries") or []
        if found:
            return list(found)
        await asyncio.sleep(0.05)
    pytest.fail("la carte Vitale virtuelle n'apparaît pas dans /v1/cards")


@pytest.fixture
async def demo(start_agent: Any) -> Any:
    running = await start_agent(demo=DemoOptions(cards="both", tray=False))
    return running


async def test_vitale_to_insi(http: aiohttp.ClientSession, demo: Any) -> None:
    listed = await beneficiaries(http, demo)
    child = next(b for b in listed if b["birth_date"] == PAT_TROIS_CAMILLE.birth_date)

    status, body = await call(http, demo, "POST", "/v1/ins/search", {"source": "vitale",
                                                                     "beneficiary_index": child["index"]})
    assert status == 503 and body["code"] == "cps_not_logged_in", body

    status, body = await call(http, demo, "POST", "/v1/cps/login", {"pin": DEMO_PIN})
    assert status == 200, body
    status, body = await call(http, demo, "POST", "/v1/ins/search", {"source": "vitale",
                                                                     "beneficiary_index": child["index"]})
    assert status == 200, body
    assert body["result"] == "found"
    # The card carries the parent's NIR; INSi gives the child's own INS.
    assert child["nir"] == PAT_TROIS.ins and body["ins"]["value"] == PAT_TROIS_CAMILLE.ins
    assert body["traits"]["given_names"] == ["CAMILLE", "ROSE"]
    event = (await recorded(demo.services, "insi.search"))[-1]
    assert (event.action, event.ins, event.actor_rpps) == ("insi.search", PAT_TROIS_CAMILLE.ins, DEMO_DOCTOR["rpps"])

    unknown = next(b for b in listed if b["given_names"][:1] == ["JULES"])
    status, body = await call(http, demo, "POST", "/v1/ins/search", {"source": "vitale",
                                                                     "beneficiary_index": unknown["index"]})
    assert status == 200 and body["result"] == "not_found" and body["likely_causes"], body

    status, body = await call(http, demo, "POST", "/v1/ins/search", {"source": "vitale", "beneficiary_index": 9})
    assert status == 422 and body["errors"][0]["field"] == "beneficiary_index"


async def test_no_vitale_in_the_reader(http: aiohttp.ClientSession, demo: Any) -> None:
    await beneficiaries(http, demo)
    status, _ = await call(http, demo, "POST", "/v1/cps/login", {"pin": DEMO_PIN})
    assert status == 200
    status, body = await call(http, demo, "POST", "/_sandbox/cards/vitale", {"inserted": False})
    assert status == 200, body
    for _ in range(100):
        status, body = await call(http, demo, "POST", "/v1/ins/search", {"source": "vitale", "beneficiary_index": 0})
        if status == 503:
            break
        await asyncio.sleep(0.05)
    assert status == 503 and body["code"] == "vitale_absent", body


async def insert(http: aiohttp.ClientSession, agent: Any, card: str) -> str:
    """Insert a named virtual card; returns its serial once GET /v1/cards shows it."""
    status, body = await call(http, agent, "POST", "/_sandbox/cards/vitale", {"inserted": True, "card": card})
    assert status == 200, body
    for _ in range(100):
        status, cards = await call(http, agent, "GET", "/v1/cards")
        serial = (cards.get("vitale") or {}).get("card_serial")
        if status == 200 and serial and serial != agent.last_serial:
            agent.last_serial = serial
            return str(serial)
        await asyncio.sleep(0.05)
    pytest.fail(f"la carte {card} n'apparaît pas dans /v1/cards")


async def test_insi_1_01_search_by_carte_vitale_card_insi_01(http: aiohttp.ClientSession, demo: Any,
                                                              reference_dir: Any) -> None:
    await beneficiaries(http, demo)
    demo.last_serial = None
    serial = await insert(http, demo, "cnda-insi-01")
    assert serial == "468929507"  # the card's number in the CNDA's test 1.01
    assert (await call(http, demo, "POST", "/v1/cps/login", {"pin": DEMO_PIN}))[0] == 200
    status, body = await call(http, demo, "POST", "/v1/ins/search",
                              {"source": "vitale", "beneficiary_index": 0, "card_serial": serial})
    assert status == 200 and body["result"] == "found", body
    assert body["ins"]["value"] == "277076322082910" and body["traits"]["birth_name"] == "NESSI"
    assert body["card_serial"] == serial


async def test_insi_1_03_card_swapped_after_the_selection_is_refused(http: aiohttp.ClientSession, demo: Any,
                                                                      reference_dir: Any) -> None:
    await beneficiaries(http, demo)
    demo.last_serial = None
    assert (await call(http, demo, "POST", "/v1/cps/login", {"pin": DEMO_PIN}))[0] == 200
    selected_on = await insert(http, demo, "cnda-insi-01")  # Ruth is selected on card INSi 01...
    await insert(http, demo, "cnda-insi-04")  # ...then card INSi 04 takes its place in the reader
    status, body = await call(http, demo, "POST", "/v1/ins/search",
                              {"source": "vitale", "beneficiary_index": 0, "card_serial": selected_on})
    assert status == 409 and body["code"] == "vitale_card_changed", body
    assert "sélectionnez à nouveau" in body["detail"]
    status, calls = await call(http, demo, "GET", "/_sandbox/insi/calls")
    assert all(c.get("action") != "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
               for c in calls["items"])
