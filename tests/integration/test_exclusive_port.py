"""A port the agent listens on cannot be taken by a second listener; the agent moves on or says why, in French."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from agent.errors import Unavailable
from agent.netbind import bind_exclusive, bind_first_free


def test_a_second_exclusive_bind_on_a_live_port_fails_clearly():
    first = bind_exclusive("127.0.0.1", 0)
    port = first[0].getsockname()[1]
    try:
        with pytest.raises(Unavailable) as caught:
            bind_first_free("127.0.0.1", port, search=0)
        assert caught.value.code == "port_in_use"
        assert f"Le port {port} est déjà utilisé" in caught.value.message
    finally:
        for sock in first:
            sock.close()


def test_another_program_asking_to_reuse_the_address_cannot_take_the_port():
    ours = bind_exclusive("127.0.0.1", 0)
    port = ours[0].getsockname()[1]
    intruder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError):
            intruder.bind(("127.0.0.1", port))
            intruder.listen(1)
    finally:
        intruder.close()
        for sock in ours:
            sock.close()


def test_the_port_is_free_again_once_the_listener_closes():
    first = bind_exclusive("127.0.0.1", 0)
    port = first[0].getsockname()[1]
    for sock in first:
        sock.close()
    again = bind_exclusive("127.0.0.1", port)
    assert again[0].getsockname()[1] == port
    for sock in again:
        sock.close()


async def test_a_second_agent_takes_the_next_free_port_and_both_answer(start_agent, http: aiohttp.ClientSession,
                                                                      tmp_path):
    first = await start_agent()
    second = await start_agent(agent={"data_dir": str(tmp_path / "session2")},
                               api={"port": first.agent.port, "port_search": 8})
    assert second.agent.port != first.agent.port
    for running in (first, second):
        async with http.get(f"{running.url}/v1/status", headers=running.headers()) as response:
            assert response.status == 200
    # Each session's token opens its own agent only.
    async with http.get(f"{first.url}/v1/status", headers=second.headers()) as response:
        assert response.status == 401


async def test_without_search_a_taken_port_stops_the_start_with_a_french_message(start_agent, tmp_path):
    first = await start_agent()
    with pytest.raises(Unavailable) as caught:
        await start_agent(agent={"data_dir": str(tmp_path / "other")},
                          api={"port": first.agent.port, "port_search": 0})
    assert caught.value.code == "port_in_use" and "déjà utilisé" in caught.value.message
