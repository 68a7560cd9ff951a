"""Pairing and the mTLS peer listener, with real agents on loopback ports: a code works once and only with the
right value, an unpaired or removed workstation is refused, presence shows which CPS each peer holds."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import pytest

from agent.errors import AccessRefused
from agent.routing import practice, tls
from agent.routing.peers import Peers
from agent.routing.service import RoutingService
from agent.store import routing as repo

FAST = {"peer_host": "127.0.0.1", "peer_port": 0, "discovery": False, "presence_interval_seconds": 0.2}


async def start(start_agent: Any, name: str, **extra: Any) -> Any:
    return await start_agent(agent={"workstation_id": name, "data_dir": str(extra.pop("data_dir"))},
                             practice=dict(FAST), cards={"pcsc": False}, **extra)


def routing(agent: Any) -> RoutingService:
    service: RoutingService = agent.services.routing
    return service


def peers(agent: Any) -> Peers:
    """The agent's view of its practice: listener, peers, presence (``agent.routing.peers``)."""
    return routing(agent).peers


async def wait_for(predicate: Any, timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


async def init(agent: Any, name: str) -> None:
    services = agent.services
    now = services.clock.now()
    await services.db.write(lambda c: practice.init(c, services.config.data_dir, name, "Cabinet test", now))
    await wait_for(lambda: peers(agent).port != 0)


async def invite(agent: Any) -> str:
    services = agent.services
    code, _ = await services.db.write(lambda c: practice.invite(c, services.clock.now(), 600))
    return str(code)


async def join(agent: Any, code: str, ca_agent: Any, name: str) -> None:
    services = agent.services
    port = peers(ca_agent).port

    def run() -> None:
        from agent.store.db import open_sync

        conn = open_sync(services.config.data_dir / "relais.db")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                practice.join(conn, services.config.data_dir, code, "127.0.0.1", port, name, services.clock.now())
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    await asyncio.to_thread(run)


@pytest.fixture
async def pair(start_agent: Any, tmp_path: Any) -> tuple[Any, Any]:
    a = await start(start_agent, "Cabinet-A", data_dir=tmp_path / "a")
    b = await start(start_agent, "Salle-B", data_dir=tmp_path / "b")
    await init(a, "Cabinet-A")
    await join(b, await invite(a), a, "Salle-B")
    await wait_for(lambda: "Cabinet-A" in peers(b).peers and "Salle-B" in peers(a).peers)
    return a, b


async def test_paired_agents_see_each_other_in_get_peers(pair: Any, http: aiohttp.ClientSession) -> None:
    _a, b = pair
    async with http.get(f"{b.url}/v1/peers", headers=b.headers()) as response:
        body = await response.json()
    assert response.status == 200
    assert body["paired"] and body["workstation"] == "Salle-B"
    assert [p["name"] for p in body["peers"]] == ["Cabinet-A"]
    assert body["peers"][0]["reachable"] is True
    assert body["peers"][0]["cps"] is None  # no card in Cabinet-A's reader


async def test_a_code_works_once(pair: Any, start_agent: Any, tmp_path: Any) -> None:
    a, _ = pair
    code = await invite(a)
    c = await start(start_agent, "Salle-C", data_dir=tmp_path / "c")
    await join(c, code, a, "Salle-C")
    d = await start(start_agent, "Salle-D", data_dir=tmp_path / "d")
    with pytest.raises(AccessRefused) as info:
        await join(d, code, a, "Salle-D")
    assert info.value.code == "pairing_refused"
    assert await d.services.db.read(lambda c_: c_.execute("SELECT count(*) FROM routing_practice").fetchone()[0]) == 0


async def test_wrong_code_is_refused_and_nothing_is_stored(pair: Any, start_agent: Any, tmp_path: Any) -> None:
    a, _ = pair
    await invite(a)
    from agent.routing.pairing import new_code

    c = await start(start_agent, "Salle-C", data_dir=tmp_path / "c")
    with pytest.raises(AccessRefused):
        await join(c, new_code(), a, "Salle-C")
    assert not (tls.practice_dir(c.services.config.data_dir) / tls.CERT_FILE).exists()
    names = await a.services.db.read(lambda c_: [r[0] for r in c_.execute("SELECT name FROM routing_members")])
    assert "Salle-C" not in names


async def _peer_request(port: int, context: ssl.SSLContext, path: str = "/peer/v1/presence") -> int:
    async with aiohttp.ClientSession() as session, session.post(
            f"https://127.0.0.1:{port}{path}", json={"type": "presence"}, ssl=context) as response:
        return response.status


async def test_listener_refuses_a_client_without_a_practice_certificate(pair: Any) -> None:
    a, _ = pair
    context = tls.join_context()  # TLS without a client certificate
    assert await _peer_request(peers(a).port, context) == 403


async def test_listener_refuses_another_practice(pair: Any, start_agent: Any, tmp_path: Any) -> None:
    a, _ = pair
    other = await start(start_agent, "Ailleurs", data_dir=tmp_path / "other")
    await init(other, "Ailleurs")
    context = tls.client_context(other.services.config.data_dir,
                                 (await other.services.db.read(lambda c: c.execute(
                                     "SELECT ca_pem FROM routing_practice").fetchone()[0])))
    context.verify_mode = ssl.CERT_NONE  # even ignoring who the server is, the server refuses us
    with pytest.raises(aiohttp.ClientError):
        await _peer_request(peers(a).port, context)


async def test_a_removed_workstation_is_refused_from_then_on(pair: Any) -> None:
    a, b = pair
    services = a.services
    await services.db.write(lambda c: practice.remove(c, services.config.data_dir, "Salle-B", services.clock.now()))
    await wait_for(lambda: peers(a).revoked)
    peers(a).peers.pop("Salle-B", None)
    refused = peers(a).refused
    await wait_for(lambda: peers(a).refused >= refused + 2)  # B keeps trying and is refused each time
    assert "Salle-B" not in peers(a).peers
    b_ca = await b.services.db.read(lambda c: c.execute("SELECT ca_pem FROM routing_practice").fetchone()[0])
    context = tls.client_context(b.services.config.data_dir, b_ca)
    assert await _peer_request(peers(a).port, context) == 403


async def test_a_workstation_removed_while_silent_leaves_the_peer_list_at_once(pair: Any) -> None:
    a, b = pair
    await b.agent.stop()  # switched off: no presence of its own will come to be refused
    services = a.services
    await services.db.write(lambda c: practice.remove(c, services.config.data_dir, "Salle-B", services.clock.now()))
    await wait_for(lambda: peers(a).revoked)
    # Gone as soon as the new list is read, not shown (nor chosen as a holder) until some later exchange.
    assert "Salle-B" not in peers(a).peers


async def test_an_address_a_member_suggests_is_tried_once_not_at_every_round(pair: Any) -> None:
    import socket

    a, b = pair
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        ghost = ("127.0.0.1", closed.getsockname()[1])
    mine = (await peers(b).my_presence()).to_json()
    mine["peers"] = [[*ghost, "Fantome"], ["93.184.216.34", 22, "Dehors"]]
    await peers(b).call("127.0.0.1", peers(a).port, "/peer/v1/presence", mine)

    async def remembered() -> set[tuple[str, int]]:
        return {(h, p) for h, p, _, _ in await a.services.db.read(repo.addresses)}

    assert ghost in await remembered() and ("93.184.216.34", 22) not in await remembered()
    for _ in range(400):  # A's next rounds try the hint, fail and forget it
        if ghost not in await remembered():
            break
        await asyncio.sleep(0.05)
    assert ghost not in await remembered()
    assert ("127.0.0.1", peers(b).port) in await remembered()  # the real member's address stays


async def test_a_party_without_the_code_learns_nothing(pair: Any) -> None:
    import http.client
    import json

    from cryptography import x509

    a, _ = pair
    port = peers(a).port
    await invite(a)

    def attempt() -> tuple[bytes, int, bytes]:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=tls.join_context(), timeout=10)
        connection.connect()
        der = connection.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        body = {"name": "Intrus", "csr_pem": "x", "nonce": "0" * 32, "mac": "0" * 64}
        connection.request("POST", practice.JOIN_PATH, body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return bytes(der or b""), response.status, response.read()

    der, status, body = await asyncio.to_thread(attempt)
    assert status == 403
    problem = json.loads(body)  # the local API's problem+json: a code and a French reason, nothing more
    assert (problem["code"], problem["detail"]) == ("pairing_refused", "Code d'invitation refusé.")
    assert set(problem) <= {"type", "title", "status", "code", "detail"} and "Cabinet" not in body.decode()
    cert = x509.load_der_x509_certificate(der)
    shown = f"{cert.subject.rfc4514_string()} {cert.issuer.rfc4514_string()}"
    assert "Cabinet test" not in shown  # the practice's name is in no certificate


async def test_a_removal_reaches_every_peer_through_presence(pair: Any, start_agent: Any, tmp_path: Any) -> None:
    a, b = pair
    c = await start(start_agent, "Salle-C", data_dir=tmp_path / "c")
    await join(c, await invite(a), a, "Salle-C")
    await wait_for(lambda: "Salle-C" in peers(b).peers)  # B learnt C's address by gossip
    services = a.services
    await services.db.write(lambda c_: practice.remove(c_, services.config.data_dir, "Salle-C", services.clock.now()))
    # B was not told directly: it takes the CA-signed list from A at their next exchange.
    await wait_for(lambda: bool(peers(b).revoked))
    await wait_for(lambda: "Salle-C" not in peers(b).peers)
    with pytest.raises(AccessRefused):
        await peers(c).call("127.0.0.1", peers(b).port, "/peer/v1/presence",
                              (await peers(c).my_presence()).to_json())


async def test_a_malformed_static_peer_stops_the_start_naming_the_key(start_agent: Any, tmp_path: Any) -> None:
    from agent.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        await start_agent(agent={"data_dir": str(tmp_path / "x")}, cards={"pcsc": False},
                          practice={**FAST, "static_peers": ["192.168.1.20"]})
    assert info.value.key == "practice.static_peers"


async def test_unauthenticated_join_attempts_do_not_cancel_a_live_invite(pair: Any, start_agent: Any,
                                                                          tmp_path: Any) -> None:
    import http.client
    import json

    a, _ = pair
    port = peers(a).port
    code = await invite(a)

    def attempt() -> int:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=tls.join_context(), timeout=10)
        body = {"name": "Intrus", "csr_pem": "x", "nonce": "0" * 32, "mac": "0" * 64}
        connection.request("POST", practice.JOIN_PATH, body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
        status = connection.getresponse().status
        connection.close()
        return status

    for _ in range(30):  # anyone on the LAN, without the code (80 random bits: not guessable online)
        assert await asyncio.to_thread(attempt) == 403
    c = await start(start_agent, "Salle-C", data_dir=tmp_path / "c")
    await join(c, code, a, "Salle-C")  # the doctor's real invite still works
    assert (tls.practice_dir(c.services.config.data_dir) / tls.CERT_FILE).exists()
