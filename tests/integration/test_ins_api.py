"""The identity routes against the INSi simulator over mutual TLS, through a real agent on a loopback port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.cli.wiring import DemoOptions
from relais_sandbox.identities import D_ARCY, FONTAINE, LEFEVRE, MARTIN_BORDEAUX, ORSONI, PAT_TROIS
from relais_sandbox.pki import SandboxPki
from tests.support.traces import recorded


@pytest.fixture
def sandbox_state(tmp_path: Path) -> Path:
    return tmp_path / "sandbox-state"


@pytest.fixture
def structure_credentials(sandbox_state: Path) -> dict[str, str]:
    # The structure's INSI-AUTO certificate comes from the test CA the simulator trusts (IGC-Santé's stand-in).
    creds = SandboxPki(sandbox_state).issue("structure", common_name="Cabinet de test", client=True)
    return {"structure_id": "10B0152872", "structure_cert": str(creds.cert_path), "structure_key": str(creds.key_path)}


@pytest.fixture
async def agent(start_agent: Any, structure_credentials: dict[str, str], sandbox_state: Path) -> Any:
    running = await start_agent(demo=DemoOptions(cards="none", tray=False), insi=structure_credentials,
                                sandbox={"state_dir": str(sandbox_state)})
    return running


async def post(http: aiohttp.ClientSession, agent: Any, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(agent.url + path, json=body, headers=agent.headers()) as response:
        return response.status, await response.json(content_type=None)


async def insi_calls(http: aiohttp.ClientSession, agent: Any) -> list[dict[str, Any]]:
    async with http.get(agent.url + "/_sandbox/insi/calls", headers=agent.headers()) as response:
        assert response.status == 200
        return list((await response.json())["items"])


def traits(**values: Any) -> dict[str, Any]:
    return {"source": "traits", "traits": values}


async def test_lower_case_accented_traits_find_the_person(http: aiohttp.ClientSession, agent: Any) -> None:
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="  lefèvre ", given_names=["hélène"], sex="f", birth_date="1955-01-30"))
    assert status == 200, body
    assert body["result"] == "found"
    assert body["ins"] == {"value": LEFEVRE.ins, "oid": "1.2.250.1.213.1.4.10", "kind": "NIR"}
    assert body["traits"]["birth_name"] == "LEFEVRE"
    assert body["traits"]["given_names"] == ["HELENE", "MARIE", "THERESE"]
    assert body["identity_status"] == "RECUP"
    event = (await recorded(agent.services, "insi.search"))[-1]
    assert (event.action, event.ins, event.outcome) == ("insi.search", LEFEVRE.ins, "found")
    assert event.workstation


async def test_ans_test_identity_and_corsica_and_apostrophe(http: aiohttp.ClientSession, agent: Any) -> None:
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="Pat-Trois", given_names="Dominique Marie-Louise", sex="F", birth_date="1979-03-28"))
    assert status == 200 and body["result"] == "found", body
    assert body["ins"]["value"] == "279035121518989"
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="Orsoni", given_names=["Jean–Baptiste"], sex="M", birth_date="1962-08-15", birth_place="2a004"))
    assert status == 200 and body["result"] == "found", body
    assert body["ins"]["value"] == ORSONI.ins and "2A" in body["ins"]["value"]
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="d’Arcy", given_names=["Jean-Philippe"], sex="M", birth_date="1990-11-02"))
    assert status == 200 and body["result"] == "found", body
    assert body["ins"]["value"] == D_ARCY.ins and body["traits"]["birth_name"] == "D'ARCY"


async def test_homonyms_need_the_birth_place(http: aiohttp.ClientSession, agent: Any) -> None:
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="Martin", given_names=["Claire"], sex="F", birth_date="1985-06-12"))
    assert status == 200 and body["result"] == "several", body
    assert body["ins"] is None and "lieu de naissance" in body["message"]
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="Martin", given_names=["Claire"], sex="F", birth_date="1985-06-12", birth_place="33063"))
    assert body["result"] == "found" and body["ins"]["value"] == MARTIN_BORDEAUX.ins


async def test_not_found_says_the_likely_cause(http: aiohttp.ClientSession, agent: Any) -> None:
    # The used (married) name instead of the birth name, and the given names in the wrong order.
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="Moreau", given_names=["Marie", "Hélène"], sex="F", birth_date="1955-01-30"))
    assert status == 200 and body["result"] == "not_found", body
    causes = " ".join(body["likely_causes"])
    assert "nom de naissance" in causes and "premier prénom" in causes


async def test_bad_traits_are_refused_before_any_insi_call(http: aiohttp.ClientSession, agent: Any) -> None:
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="", given_names=["Hélène"], birth_date="1955-02-30"))
    assert status == 422, body
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"traits.birth_name", "traits.sex", "traits.birth_date"}
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="Lef3vre", given_names=["Hélène"], sex="F", birth_date="2999-01-01"))
    assert status == 422
    assert {error["field"] for error in body["errors"]} == {"traits.birth_name", "traits.birth_date"}
    status, body = await post(http, agent, "/v1/ins/search", {"source": "fax"})
    assert status == 422 and body["errors"][0]["field"] == "source"
    assert await insi_calls(http, agent) == []


@pytest.mark.parametrize("mode", ["down", "error500", "malformed"])
async def test_insi_down_gives_503(http: aiohttp.ClientSession, agent: Any, mode: str) -> None:
    async with http.post(agent.url + "/_sandbox/insi/faults", json={"mode": mode}, headers=agent.headers()) as r:
        assert r.status == 200
    status, body = await post(http, agent, "/v1/ins/search", traits(
        birth_name="Lefevre", given_names=["Helene"], sex="F", birth_date="1955-01-30"))
    assert status == 503, body
    assert body["code"] in ({"insi_unreachable"} if mode != "malformed" else {"insi_bad_answer"})
    assert body["detail"].startswith(("Le téléservice INSi", "Réponse"))


async def test_verify_match_replaced_and_mismatch(http: aiohttp.ClientSession, agent: Any) -> None:
    fontaine = {"birth_name": "Fontaine", "given_names": ["Thomas", "Luca"], "sex": "M", "birth_date": "1975-04-18"}
    status, body = await post(http, agent, "/v1/ins/verify", {
        "ins": {"value": FONTAINE.ins, "oid": "1.2.250.1.213.1.4.10"}, "traits": fontaine})
    assert status == 200 and body["result"] == "match", body
    former = FONTAINE.history[0]
    status, body = await post(http, agent, "/v1/ins/verify", {
        "ins": {"value": former.value, "oid": former.oid}, "traits": fontaine})
    assert body["result"] == "mismatch" and body["replaced"] is True, body
    assert body["ins"]["value"] == FONTAINE.ins
    assert body["history"][0]["kind"] == "NIA"
    status, body = await post(http, agent, "/v1/ins/verify", {
        "ins": {"value": PAT_TROIS.ins, "oid": "1.2.250.1.213.1.4.10"}, "traits": fontaine})
    assert body["result"] == "mismatch" and body["replaced"] is False
    events = await recorded(agent.services, "insi.verify")
    assert [e.outcome for e in events] == ["match", "mismatch", "mismatch"]


async def test_verify_refuses_a_wrong_key_before_calling(http: aiohttp.ClientSession, agent: Any) -> None:
    status, body = await post(http, agent, "/v1/ins/verify", {
        "ins": {"value": "279035121518988", "oid": "1.2.250.1.213.1.4.10"},
        "traits": {"birth_name": "Pat-Trois", "given_names": ["Dominique"], "sex": "F", "birth_date": "1979-03-28"}})
    assert status == 422 and body["errors"][0]["field"] == "ins.value"
    assert await insi_calls(http, agent) == []


async def test_insi_2_01_without_cps_no_call_and_a_clear_message(http: aiohttp.ClientSession,
                                                                  start_agent: Any) -> None:
    running = await start_agent(demo=DemoOptions(cards="none", tray=False))
    status, body = await post(http, running, "/v1/ins/search", traits(
        birth_name="Lefevre", given_names=["Helene"], sex="F", birth_date="1955-01-30"))
    assert status == 503, body
    assert body["code"] in ("cps_absent", "cps_not_logged_in") and "CPS" in body["detail"]
    assert await insi_calls(http, running) == []


async def test_a_cnam_fault_reaches_the_lgc_with_its_insi_code(http: aiohttp.ClientSession, agent: Any) -> None:
    async with http.post(agent.url + "/_sandbox/insi/inject", json={"answer": "siram_40", "times": 2},
                         headers=agent.headers()) as r:
        assert r.status == 200
    search = traits(birth_name="Lefevre", given_names=["Helene"], sex="F", birth_date="1955-01-30")
    status, body = await post(http, agent, "/v1/ins/search", search)
    assert status == 503 and body["code"] == "insi_temporarily_unavailable", body
    assert body["remote"]["code"] == "insi_102" and body["remote"]["subcode"] == "siram_40"
    assert "momentanément indisponible" in body["detail"]
    status, body = await post(http, agent, "/v1/ins/search", search)  # the injection is spent
    assert status == 200 and body["result"] == "found" and body["qualified_via_insi"] is True
    assert body["identity_source"] == "insi"


async def test_insi_not_configured_503(http: aiohttp.ClientSession, start_agent: Any) -> None:
    running = await start_agent()
    status, body = await post(http, running, "/v1/ins/search", traits(
        birth_name="Lefevre", given_names=["Helene"], sex="F", birth_date="1955-01-30"))
    assert status == 503 and body["code"] == "insi_unreachable"


async def test_connectivity_changes_are_published(http: aiohttp.ClientSession, agent: Any) -> None:
    subscription = agent.services.bus.subscribe()
    search = traits(birth_name="Lefevre", given_names=["Helene"], sex="F", birth_date="1955-01-30")
    assert (await post(http, agent, "/v1/ins/search", search))[0] == 200
    async with http.post(agent.url + "/_sandbox/insi/faults", json={"mode": "down"}, headers=agent.headers()) as r:
        assert r.status == 200
    assert (await post(http, agent, "/v1/ins/search", search))[0] == 503
    assert (await post(http, agent, "/v1/ins/search", search))[0] == 503  # still down: no second event
    seen = []
    while (event := await subscription.get(timeout=0.01)) is not None:
        if event.type == "connectivity.changed" and event.payload()["service"] == "insi":
            seen.append(event.payload())  # the other services (MSSanté's poller...) report on their own time
    subscription.close()
    assert [(e["service"], e["reachable"]) for e in seen] == [("insi", True), ("insi", False)]
