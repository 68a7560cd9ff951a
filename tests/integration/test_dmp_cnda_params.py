"""The DMP's parameters file (issue 15 item 5, issue 16 item 8), against the DMP simulator over its socket: downloaded
through its HTTPS redirect (EX_GEN-1540), kept on disk for a start without network, refreshed on schedule, and used
by the rules (EX_2.1-1050 cumulation, EX_GEN-1550 majority, EX_0.1-1115 the professional's minimum age)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.cli.wiring import DemoOptions
from agent.clock import FrozenClock
from agent.dmp.params import DmpParamsPart, ParamsSettings
from agent.domain.dmp_params import DmpParameters, ParameterNames
from agent.errors import PermanentRemoteError, ServiceUnreachable
from relais_sandbox.identities import PAT_TROIS
from tests.support.dmp import running_sandbox
from tests.support.ins import obtain_ins
from tests.support.queue import order_body

FALLBACK = DmpParameters(majority_age=18, minors_management=True, allow_masked_and_invisible=False)


def part_for(url: str, ca_file: str, cache: Path, clock: FrozenClock) -> DmpParamsPart:
    return DmpParamsPart(ParamsSettings(url=url, cache_dir=cache, names=ParameterNames(), fallback=FALLBACK,
                                        ca_file=ca_file, refresh_hours=24, retry_minutes=30, timeout_seconds=5),
                         clock)


async def until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"jamais vu : {what}")


async def test_ex_gen_1540_downloaded_through_its_redirect_and_kept_for_a_start_without_network(
        tmp_path: Path, reference_dir: Path) -> None:
    clock = FrozenClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC))
    async with running_sandbox(tmp_path, reference_dir) as sandbox:
        sandbox.sim.parameters.update({"age-majorite": "16", "cumul-invisible_patient-masque_ps": "true",
                                       "production": "false"})
        url, ca = str(sandbox.endpoint["params_url"]), str(sandbox.endpoint["ca_file"])
        part = part_for(url, ca, tmp_path / "cache", clock)
        part.load()
        assert part.current().source == "configuration"  # nothing on disk yet
        params = await part.refresh()
    assert sandbox.sim.parameter_downloads == 1
    assert (params.majority_age, params.allow_masked_and_invisible, params.production) == (16, True, False)
    assert params.source == "dmp" and params.fetched_at == clock.now()
    status = part.status()
    assert status["final_url"].endswith("/documents/param-lps") and status["url"] == url  # the 302 was followed
    assert status["age_hours"] == 0 and status["stale"] is False and status["last_error"] is None

    # The simulator is gone: a restart reads the copy on disk, and a failed download keeps it in force.
    clock.advance(30 * 3600)
    again = part_for(url, ca, tmp_path / "cache", clock)
    again.load()
    assert again.current().source == "cache" and again.current().majority_age == 16
    assert again.due_in() == 0  # 30 h old: due
    with pytest.raises(ServiceUnreachable):
        await again.refresh()
    assert again.current().majority_age == 16 and again.current().allow_masked_and_invisible is True
    status = again.status()
    assert status["source"] == "cache" and status["age_hours"] == 30 and status["last_error"]
    assert again.due_in() == 30 * 60  # a failed download is tried again after params_retry_minutes
    clock.advance(6 * 24 * 3600)
    assert again.status()["stale"] is True  # more than a week: EX_GEN-1540 is not met, and it says so


async def test_ex_gen_1540_refreshed_on_schedule_and_a_wrong_file_never_changes_a_rule(
        tmp_path: Path, reference_dir: Path) -> None:
    clock = FrozenClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC))
    async with running_sandbox(tmp_path, reference_dir) as sandbox:
        part = part_for(str(sandbox.endpoint["params_url"]), str(sandbox.endpoint["ca_file"]), tmp_path / "c", clock)
        await part.start()  # never downloaded: due at once
        try:
            await until(lambda: part.downloads == 1, "premier téléchargement")
            assert part.due_in() == 24 * 3600
            sandbox.sim.parameters["age-majorite"] = "17"
            clock.advance(24 * 3600)
            part.wake()
            await until(lambda: part.downloads == 2, "téléchargement du lendemain")
            assert part.current().majority_age == 17 and sandbox.sim.parameter_downloads == 2

            sandbox.sim.parameters["age-majorite"] = "majeur"  # a file the agent cannot read
            with pytest.raises(PermanentRemoteError) as caught:
                await part.refresh()
            assert caught.value.code == "dmp_params_invalid"
            assert part.current().majority_age == 17 and "age-majorite" in str(part.status()["last_error"])
        finally:
            await part.stop()


# --- on a demo agent: the rules read the file the simulator serves ---------------------------------------------


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, agent.url + path, json=body, headers=agent.headers()) as response:
        return response.status, await response.json()


async def parameters_read(http: aiohttp.ClientSession, agent: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}

    async def read() -> bool:
        nonlocal state
        state = (await call(http, agent, "GET", "/v1/status"))[1]["dmp_parameters"]
        return state["source"] == "dmp"

    for _ in range(500):
        if await read():
            return state
        await asyncio.sleep(0.02)
    raise AssertionError(f"paramètres jamais lus : {state}")


@pytest.fixture
async def agent(start_agent: Any, reference_dir: Path) -> Any:
    return await start_agent(demo=DemoOptions(cards="both", tray=False),
                             dmp={"reference_dir": str(reference_dir), "secret_connection_minimum_age": 13})


async def test_ex_2_1_1050_the_masking_cumulation_follows_the_dmp_parameter(agent: Any,
                                                                             http: aiohttp.ClientSession) -> None:
    state = await parameters_read(http, agent)
    assert state["values"]["allow_masked_and_invisible"] is False and state["final_url"].endswith("param-lps")
    assert (await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"}))[0] == 200
    await obtain_ins(http, agent, PAT_TROIS)
    holder = agent.services.cards.cps_holder()
    body = order_body(ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=str(holder.rpps), delay=3600)
    body["visibility"] = {"masked_to_ps": True, "invisible_to_patient": True}
    status, problem = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 422 and problem["code"] == "masked_and_invisible", problem

    status, _ = await call(http, agent, "POST", "/_sandbox/dmp/parameters", {"allow_masked_and_invisible": True})
    assert status == 200
    status, state = await call(http, agent, "POST", "/v1/dmp/parameters/refresh")
    assert status == 200 and state["values"]["allow_masked_and_invisible"] is True, state
    status, created = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, created


async def test_tnr_01_cas_11_the_connexion_secrete_offered_by_age_and_minimum_age(agent: Any,
                                                                                 http: aiohttp.ClientSession) -> None:
    """[CDT] TNR-01 step 5, patient cas 11 born 23/09/2014, with the professional's minimum age at 13 (EX_0.1-1115);
    minority from the DMP parameter age-majorite (EX_GEN-1550)."""
    await parameters_read(http, agent)
    today = agent.services.clock.now().date()
    age = today.year - 2014 - ((today.month, today.day) < (9, 23))
    path = f"/v1/dmp/{PAT_TROIS.ins}/access?oid={PAT_TROIS.oid}&birth_date=2014-09-23"
    status, access = await call(http, agent, "GET", path)
    assert status == 200, access
    offer = access["secret_connection"]
    assert offer["minor"] is (age < 18) and offer["minimum_age"] == 13 and offer["majority_age"] == 18
    assert offer["offered"] is (13 <= age < 18) and offer["allowed"] is (age < 18)
    # The DMP lowers the majority below the patient's age: no longer a minor.
    await call(http, agent, "POST", "/_sandbox/dmp/parameters", {"majority_age": min(age, 30) if age >= 1 else 1})
    await call(http, agent, "POST", "/v1/dmp/parameters/refresh")
    status, access = await call(http, agent, "GET", path)
    assert access["secret_connection"]["minor"] is False and access["secret_connection"]["offered"] is False
    status, problem = await call(http, agent, "GET", path.replace("2014-09-23", "23/09/2014"))
    assert status == 422 and problem["errors"][0]["field"] == "birth_date"
