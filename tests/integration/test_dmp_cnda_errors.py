"""PRE_ERR and EX_3.1-2035 (issue 15 item 6), against the DMP simulator's fault mode "refuse": every DMP refusal
reaches the LGC with the DMP's own code and text beside the French message (problem+json, the order's last error);
codes that mean "later" are transient for the queue; DMPAccessDeniedByExcededThreshold never blocks feeding."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.cli.wiring import DemoOptions
from agent.dmp.gateway import DmpDelivery
from agent.domain.delivery import Lookup
from agent.errors import PermanentRemoteError, TransientRemoteError
from relais_sandbox.host import FaultMode
from relais_sandbox.identities import PAT_TROIS
from tests.support.dmp import running_sandbox
from tests.support.documents import written_by
from tests.support.ins import obtain_ins
from tests.support.queue import kit_cda, order_body

THRESHOLD = "DMPAccessDeniedByExcededThreshold"


@pytest.fixture
async def agent(start_agent: Any, reference_dir: Path) -> Any:
    return await start_agent(demo=DemoOptions(cards="both", tray=False), dmp={"reference_dir": str(reference_dir)})


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, agent.url + path, json=body, headers=agent.headers()) as response:
        return response.status, await response.json()


async def ready(http: aiohttp.ClientSession, agent: Any) -> str:
    """PIN, CONF.21 notice, consent, INS through INSi: the demo doctor may consult and feed PAT_TROIS's DMP."""
    assert (await call(http, agent, "POST", "/v1/cps/login", {"pin": "1234"}))[0] == 200
    for notice in (await call(http, agent, "GET", "/v1/notices"))[1]["items"]:
        assert (await call(http, agent, "POST", f"/v1/notices/{notice['id']}/ack"))[0] == 200
    status, body = await call(http, agent, "PUT", f"/v1/patients/{PAT_TROIS.ins}/consent?oid={PAT_TROIS.oid}",
                              {"dmp_consultation": "granted", "dmp_feeding": "non_opposition", "informed": True})
    assert status == 200, body
    await obtain_ins(http, agent, PAT_TROIS)
    holder = agent.services.cards.cps_holder()
    return str(holder.rpps)


def kit_order(reference_dir: Path, rpps: str) -> dict[str, Any]:
    cda = written_by(kit_cda(reference_dir, PAT_TROIS)[0], f"8{rpps}")
    return order_body(cda=cda, ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=rpps, delay=0)


async def refuse(http: aiohttp.ClientSession, agent: Any, code: str, text: str, transaction: str) -> None:
    status, body = await call(http, agent, "POST", "/_sandbox/dmp/faults",
                              {"mode": "refuse", "code": code, "text": text, "transaction": transaction})
    assert status == 200, body


async def delivery_until(http: aiohttp.ClientSession, agent: Any, order_id: str, states: set[str]) -> dict[str, Any]:
    delivery: dict[str, Any] = {}
    for _ in range(300):
        _, order = await call(http, agent, "GET", f"/v1/orders/{order_id}")
        delivery = order["deliveries"][0]
        if delivery["state"] in states:
            return delivery
        await asyncio.sleep(0.1)
    raise AssertionError(f"delivery still {delivery.get('state')}")


async def test_pre_err_a_consultation_refused_shows_the_dmp_code_and_text(agent: Any,
                                                                          http: aiohttp.ClientSession) -> None:
    await ready(http, agent)
    await refuse(http, agent, "XDSRegistryError", "Requête refusée par le DMP (essai PRE_ERR)", "TD3.1")
    status, problem = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents")
    assert status == 502, problem
    assert problem["dmp_code"] == "XDSRegistryError" and problem["dmp_text"].endswith("(essai PRE_ERR)")
    assert problem["detail"].startswith("Le DMP a refusé") and problem["service"] == "dmp"
    # The test d'existence refused with the DMP's own HL7v3 acknowledgement code.
    await refuse(http, agent, "DMPPatientBlocked", "Accès refusé par le DMP (essai)", "TD0.2")
    status, problem = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents")
    assert status == 502 and problem["dmp_code"] == "DMPPatientBlocked", problem
    assert problem["dmp_text"] == "Accès refusé par le DMP (essai)"


async def test_pre_err_a_refused_feed_keeps_the_dmp_code_and_text_on_the_order(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    rpps = await ready(http, agent)
    await refuse(http, agent, "XDSRepositoryMetadataError", "Métadonnée refusée (essai PRE_ERR)", "TD2.1")
    status, order = await call(http, agent, "POST", "/v1/orders", kit_order(reference_dir, rpps))
    assert status == 201, order
    delivery = await delivery_until(http, agent, order["id"], {"failed"})
    error = delivery["last_error"]
    assert error["dmp_code"] == "XDSRepositoryMetadataError"
    assert error["dmp_text"] == "Métadonnée refusée (essai PRE_ERR)"
    assert error["explanation"] and error["retry_helps"] is False and "refusé" in error["message"]


async def test_pre_err_a_busy_dmp_is_transient_for_the_queue(agent: Any, http: aiohttp.ClientSession,
                                                             reference_dir: Path) -> None:
    rpps = await ready(http, agent)
    await refuse(http, agent, "XDSRegistryBusy", "Registre occupé (essai)", "TD2.1")
    status, order = await call(http, agent, "POST", "/v1/orders", kit_order(reference_dir, rpps))
    assert status == 201, order
    delivery = await delivery_until(http, agent, order["id"], {"retrying", "failed"})
    assert delivery["state"] == "retrying" and delivery["next_attempt_at"], delivery
    assert delivery["last_error"]["dmp_code"] == "XDSRegistryBusy"


async def test_ex_3_1_2035_a_consultation_refused_for_the_threshold_does_not_stop_feeding(
        agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    rpps = await ready(http, agent)
    await refuse(http, agent, THRESHOLD, "Seuil d'accès dépassé (essai)", "TD3.1")
    status, problem = await call(http, agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents")
    assert status == 503 and problem["dmp_code"] == THRESHOLD, problem  # later, not a refusal of the request
    status, order = await call(http, agent, "POST", "/v1/orders", kit_order(reference_dir, rpps))
    assert status == 201, order
    assert (await delivery_until(http, agent, order["id"], {"sent", "failed"}))["state"] == "sent"


async def test_ex_3_1_2035_the_look_up_before_a_resend_refused_for_the_threshold_lets_the_feed_go_on(
        tmp_path: Path, reference_dir: Path) -> None:
    async with running_sandbox(tmp_path, reference_dir) as sandbox:
        _, uid = sandbox.cda()
        lookup = Lookup(PAT_TROIS.ins, PAT_TROIS.oid, uid, "2.25.1", "order-1", "dmp")
        gateway = DmpDelivery(sandbox.client)
        sandbox.sim.faults.mode = FaultMode.REFUSE
        sandbox.sim.faults.refusal_transaction = "TD3.1"
        sandbox.sim.faults.refusal_code, sandbox.sim.faults.refusal_text = THRESHOLD, "Seuil dépassé"
        assert await gateway.find(lookup) is None  # counted as not found: the send goes on
        with pytest.raises(TransientRemoteError) as caught:  # a consultation sees it, as transient
            await sandbox.client.entry_uuids(PAT_TROIS.ins, PAT_TROIS.oid, [uid])
        assert caught.value.extra["dmp_code"] == THRESHOLD
        sandbox.sim.faults.refusal_code = "XDSRegistryError"  # any other refusal still stops the look-up
        with pytest.raises(PermanentRemoteError):
            await gateway.find(lookup)
        transactions = [c["transaction"] for c in sandbox.sim.service.calls]  # type: ignore[union-attr]
        assert transactions == ["TD3.1", "TD3.1", "TD3.1"]
