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
