"""Every rule of the API guard, over a real loopback socket against the real app."""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp
import pytest

pytestmark = pytest.mark.asyncio


async def test_health_is_public_and_status_needs_a_token(start_agent, http):
    agent = await start_agent()
    async with http.get(f"{agent.url}/v1/health") as r:
        assert r.status == 200
        assert (await r.json())["status"] == "ok"
    async with http.get(f"{agent.url}/v1/status") as r:
        assert r.status == 401
        assert r.content_type == "application/problem+json"
        body = await r.json()
        assert body["code"] == "token_missing"
        assert body["type"] == "urn:relais:error:token_missing"
        assert "Authentification" in body["title"]
    async with http.get(f"{agent.url}/v1/status", headers=agent.headers()) as r:
        assert r.status == 200
        assert (await r.json())["workstation_id"]


async def test_wrong_and_revoked_tokens_are_401(start_agent, http):
    from agent.store.tokens import create_token, revoke_token

    agent = await start_agent()
    db = agent.services.db
    other = await db.write(lambda c: create_token(c, "lgc-cabinet", "2026-01-01T00:00:00Z"))
    async with http.get(f"{agent.url}/v1/status", headers={"Authorization": f"Bearer {other}"}) as r:
        assert r.status == 200
    # Same id, wrong secret; and a token of the right shape that does not exist.
    tampered = other[:-4] + ("AAAA" if not other.endswith("AAAA") else "BBBB")
    for bad in (tampered, "rl_0123456789abcdef_" + "x" * 43, "garbage"):
        async with http.get(f"{agent.url}/v1/status", headers={"Authorization": f"Bearer {bad}"}) as r:
            assert r.status == 401
            assert (await r.json())["code"] == "token_invalid"
    await db.write(lambda c: revoke_token(c, "lgc-cabinet", "2026-01-01T00:00:01Z"))
    async with http.get(f"{agent.url}/v1/status", headers={"Authorization": f"Bearer {other}"}) as r:
        assert r.status == 401


async def test_a_remembered_token_is_refused_at_once_when_another_process_revokes_it(start_agent, http):
    """Issue 24 item 2: tokens are checked from memory (no SQLite read per request while nothing was committed),
    yet a revocation by `relais token revoke`, another process writing the database, holds for the next call."""
    from agent.api.app import TOKEN_CHECK
    from agent.store.tokens import create_token

    agent = await start_agent()
    check = agent.agent.runner.app[TOKEN_CHECK]
    other = await agent.services.db.write(lambda c: create_token(c, "lgc-poste", "2026-01-01T00:00:00Z"))
    for _ in range(3):
        async with http.get(f"{agent.url}/v1/status", headers={"Authorization": f"Bearer {other}"}) as r:
            assert r.status == 200
    assert check.hits >= 1  # answered from memory
    data_dir = agent.services.config.data_dir
    revoke = await asyncio.create_subprocess_exec(sys.executable, "-m", "agent.cli", "token", "revoke", "lgc-poste",
                                                  "--data-dir", str(data_dir), stdout=asyncio.subprocess.DEVNULL)
    assert await revoke.wait() == 0
    async with http.get(f"{agent.url}/v1/status", headers={"Authorization": f"Bearer {other}"}) as r:
        assert r.status == 401 and (await r.json())["code"] == "token_invalid"
    async with http.get(f"{agent.url}/v1/status", headers=agent.headers()) as r:
        assert r.status == 200  # the others' tokens still pass


async def test_repeated_failures_give_429_to_the_guesser_never_to_a_good_token(start_agent, http):
    agent = await start_agent(api={"auth_failure_limit": 3, "auth_failure_window_seconds": 600})
    for _ in range(3):
        async with http.get(f"{agent.url}/v1/status", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
    async with http.get(f"{agent.url}/v1/status", headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 429
        assert int(r.headers["Retry-After"]) > 0
        assert (await r.json())["code"] == "too_many_auth_failures"
    # Issue 23 #4: any local process (or a page on another loopback port) kept the LGC refused for 97 % of its
    # calls. The lockout is the guesser's: the LGC's valid token keeps working while the guesses get 429.
    for _ in range(5):
        async with http.get(f"{agent.url}/v1/status", headers=agent.headers()) as r:
            assert r.status == 200
        async with http.get(f"{agent.url}/v1/status", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 429
    # Public routes stay available.
    async with http.get(f"{agent.url}/v1/health") as r:
        assert r.status == 200


async def test_lockout_ends_after_the_window(start_agent, http):
    from agent.clock import FrozenClock

    clock = FrozenClock()
    agent = await start_agent(clock=clock, api={"auth_failure_limit": 2, "auth_failure_window_seconds": 60})
    for _ in range(2):
        async with http.get(f"{agent.url}/v1/status", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
    async with http.get(f"{agent.url}/v1/status", headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 429
    clock.advance(61)
    async with http.get(f"{agent.url}/v1/status", headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "192.168.1.10:{port}", ""])
async def test_rebinding_or_foreign_host_is_403(start_agent, http, host):
    agent = await start_agent()
    port = agent.agent.port
    headers = agent.headers(Host=host.format(port=port))
    if "evil" in host:
        headers["Origin"] = f"http://{host.format(port=port)}"
    async with http.get(f"{agent.url}/v1/status", headers=headers) as r:
        assert r.status == 403
        assert (await r.json())["code"] == "host_refused"
        assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "127.0.0.2:{port}"])
async def test_loopback_hosts_are_accepted(start_agent, http, host):
    agent = await start_agent()
    async with http.get(f"{agent.url}/v1/status", headers=agent.headers(Host=host.format(port=agent.agent.port))) as r:
        assert r.status == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:9999"])
async def test_foreign_or_null_origin_is_403_without_cors(start_agent, http, origin):
    agent = await start_agent()
    async with http.get(f"{agent.url}/v1/status", headers=agent.headers(Origin=origin)) as r:
        assert r.status == 403
        assert (await r.json())["code"] == "origin_refused"
        assert "Access-Control-Allow-Origin" not in r.headers
    # A preflight from a foreign origin gets no CORS grant either.
    async with http.options(f"{agent.url}/v1/status", headers={"Origin": origin,
                                                              "Access-Control-Request-Method": "GET"}) as r:
        assert r.status == 403
        assert "Access-Control-Allow-Origin" not in r.headers


async def test_allowed_origin_gets_exactly_its_cors_header(start_agent, http):
    agent = await start_agent(api={"allowed_origins": ["http://localhost:8080"]})
    async with http.get(f"{agent.url}/v1/status", headers=agent.headers(Origin="http://localhost:8080")) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    async with http.options(f"{agent.url}/v1/status", headers={"Origin": "http://localhost:8080"}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"


async def test_cross_site_fetch_metadata_is_403(start_agent, http):
    agent = await start_agent()
    async with http.get(f"{agent.url}/v1/status", headers=agent.headers(**{"Sec-Fetch-Site": "cross-site"})) as r:
        assert r.status == 403
        assert (await r.json())["code"] == "cross_site_refused"
    async with http.get(f"{agent.url}/v1/status", headers=agent.headers(**{"Sec-Fetch-Site": "same-origin"})) as r:
        assert r.status == 200


async def _raw_request(port: int, head: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    rest = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return int(status_line.split()[1]), rest


async def test_oversized_body_on_a_real_route_is_413_unread(start_agent):
    from agent.cli.wiring import DemoOptions

    agent = await start_agent(demo=DemoOptions(tray=False))
    port = agent.agent.port
    head = (f"POST /_sandbox/dmp/faults HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {agent.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\nConnection: close\r\n\r\n")
    status, body = await _raw_request(port, head)
    assert status == 413
    assert b"payload_too_large" in body


async def test_chunked_body_over_the_limit_is_413(start_agent, http):
    from agent.cli.wiring import DemoOptions

    agent = await start_agent(demo=DemoOptions(tray=False), api={"max_body_bytes": 1024})

    async def chunks():
        for _ in range(10):
            yield b'{"mode": "' + b"x" * 500 + b'"}'

    async with http.post(f"{agent.url}/_sandbox/dmp/faults", data=chunks(),
                         headers=agent.headers(**{"Content-Type": "application/json"})) as r:
        assert r.status == 413


async def test_malformed_json_and_wrong_content_type_name_the_problem(start_agent, http):
    from agent.cli.wiring import DemoOptions

    agent = await start_agent(demo=DemoOptions(tray=False))
    url = f"{agent.url}/_sandbox/dmp/faults"
    async with http.post(url, data=b'{"mode": ', headers=agent.headers(**{"Content-Type": "application/json"})) as r:
        assert r.status == 422
        body = await r.json()
        assert body["code"] == "malformed_json"
        assert body["errors"][0]["field"] == "body"
    async with http.post(url, data=b"mode=ok", headers=agent.headers(**{"Content-Type": "text/plain"})) as r:
        assert r.status == 422
        body = await r.json()
        assert body["code"] == "unsupported_media_type"
        assert body["errors"][0]["field"] == "Content-Type"
    async with http.post(url, data=b"[1, 2]", headers=agent.headers(**{"Content-Type": "application/json"})) as r:
        assert r.status == 422


async def test_get_never_takes_a_body_and_unknown_routes_are_problems(start_agent, http):
    agent = await start_agent()
    async with http.get(f"{agent.url}/v1/status", data=b"{}", headers=agent.headers()) as r:
        assert r.status == 422
    async with http.get(f"{agent.url}/v1/nope", headers=agent.headers()) as r:
        assert r.status == 404
        assert r.content_type == "application/problem+json"
    async with http.delete(f"{agent.url}/v1/status", headers=agent.headers()) as r:
        assert r.status == 405
        assert (await r.json())["code"] == "method_not_allowed"


async def test_responses_carry_security_headers(start_agent, http):
    agent = await start_agent()
    async with http.get(f"{agent.url}/v1/status", headers=agent.headers()) as r:
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Cache-Control"] == "no-store"
        assert "Access-Control-Allow-Origin" not in r.headers


async def test_events_stream_delivers_published_events_and_replays(start_agent):
    agent = await start_agent(api={"sse_heartbeat_seconds": 0.2})
    bus = agent.services.bus
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"{agent.url}/v1/events", headers=agent.headers()) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            await r.content.readline()  # retry
            bus.publish("order.updated", order_id="o1", state="scheduled")
            seen: dict[str, str] = {}
            pings = 0
            while "data" not in seen:
                line = (await r.content.readline()).decode().rstrip("\n")
                if line.startswith(": ping"):
                    pings += 1
                elif ":" in line and not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    seen[key] = value
            assert seen["event"] == "order.updated"
            payload = json.loads(seen["data"])
            assert payload["order_id"] == "o1" and payload["state"] == "scheduled"
            assert payload["id"] == int(seen["id"]) and payload["at"].endswith("Z")
            first_id = int(seen["id"])
            # Heartbeats keep coming while nothing happens.
            while pings < 1:
                line = (await r.content.readline()).decode()
                pings += line.startswith(": ping")
        bus.publish("card.inserted", reader="r0", card="cps")
        async with session.get(f"{agent.url}/v1/events",
                               headers=agent.headers(**{"Last-Event-ID": str(first_id)})) as r:
            text = ""
            while "card.inserted" not in text:
                text += (await r.content.readline()).decode()
            assert "order.updated" not in text


async def test_event_streams_are_limited_and_a_closed_one_frees_its_place(start_agent, http):
    agent = await start_agent(api={"max_event_streams": 2, "sse_heartbeat_seconds": 0.2})
    streams = agent.services.streams
    opened = [await http.get(f"{agent.url}/v1/events", headers=agent.headers()) for _ in range(2)]
    assert [r.status for r in opened] == [200, 200]
    async with http.get(f"{agent.url}/v1/events", headers=agent.headers()) as refused:
        assert refused.status == 503
        problem = await refused.json()
        assert problem["code"] == "too_many_streams" and "flux" in problem["detail"]
    opened[0].close()
    for _ in range(200):  # the server notices the closed stream at its next write (or heartbeat)
        if len(streams) < 2:
            break
        await asyncio.sleep(0.05)
    assert len(streams) < 2
    async with http.get(f"{agent.url}/v1/events", headers=agent.headers()) as again:
        assert again.status == 200
    opened[1].close()
