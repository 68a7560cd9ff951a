"""Zeroconf discovery on the loopback interface: agents of the same practice find each other's peer port;
another practice's agent is not even a hint. (Trust never comes from here: see the mTLS tests.)"""

from __future__ import annotations

import asyncio

import pytest

from agent.routing.discovery import ZeroconfDiscovery


async def test_agents_of_one_practice_find_each_other_and_skip_other_practices() -> None:
    agents = [
        ZeroconfDiscovery(practice_id="practice-a", workstation="Accueil", port=17464, addresses=["127.0.0.1"],
                          interfaces=["127.0.0.1"]),
        ZeroconfDiscovery(practice_id="practice-a", workstation="Cabinet", port=17465, addresses=["127.0.0.1"],
                          interfaces=["127.0.0.1"]),
        ZeroconfDiscovery(practice_id="practice-b", workstation="Voisin", port=17466, addresses=["127.0.0.1"],
                          interfaces=["127.0.0.1"]),
    ]
    try:
        for agent in agents:
            await agent.start()
    except OSError as exc:  # pragma: no cover - no multicast on this host's loopback
        pytest.skip(f"multicast indisponible : {exc}")
    try:
        for _ in range(100):
            if agents[0].hints() and agents[1].hints():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # time for a wrong answer to show up too
        assert agents[0].hints() == [("127.0.0.1", 17465)]
        assert agents[1].hints() == [("127.0.0.1", 17464)]
        assert agents[2].hints() == []
    finally:
        for agent in agents:
            await agent.stop()


async def test_paired_agents_find_each_other_by_zeroconf_alone(start_agent: object, tmp_path: object) -> None:
    from typing import Any

    from tests.integration.test_routing_pairing import FAST, init, invite, join, peers, wait_for

    start: Any = start_agent
    settings = {**FAST, "discovery": True}
    a = await start(agent={"workstation_id": "Cabinet", "data_dir": str(tmp_path / "a")},  # type: ignore[operator]
                    practice=dict(settings), cards={"pcsc": False})
    b = await start(agent={"workstation_id": "Accueil", "data_dir": str(tmp_path / "b")},  # type: ignore[operator]
                    practice=dict(settings), cards={"pcsc": False})
    await init(a, "Cabinet")
    await join(b, await invite(a), a, "Accueil")
    await wait_for(lambda: "Cabinet" in peers(b).peers)
    if peers(a)._discovery is None or peers(b)._discovery is None:
        pytest.skip("zeroconf indisponible sur cette machine")
    # Forget every address learnt by joining and gossip: only what zeroconf announces remains.
    for agent in (a, b):
        await agent.services.db.write(lambda c: c.execute("DELETE FROM routing_addresses"))
        peers(agent).peers.clear()
    await wait_for(lambda: "Cabinet" in peers(b).peers and "Accueil" in peers(a).peers, timeout=30)
    assert peers(b).peers["Cabinet"].port == peers(a).port
