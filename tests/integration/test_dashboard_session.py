"""Dashboard login: a one-time link, an HttpOnly SameSite=Strict cookie, CSRF on state changes."""

from __future__ import annotations

import aiohttp

from agent.api.sessions import COOKIE, CSRF_HEADER


async def _login(agent, http: aiohttp.ClientSession) -> tuple[str, str, str]:
    async with http.post(f"{agent.url}/v1/ui/login-link", headers=agent.headers()) as r:
        assert r.status == 200
        url = (await r.json())["url"]
    base, _, fragment = url.partition("#login=")
    assert base.endswith("/ui/") and fragment  # the code is in the fragment, never in the path or query
    async with http.post(f"{agent.url}/ui/session", json={"code": fragment}) as r:
        assert r.status == 200
        cookie = r.cookies[COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        return fragment, cookie.value, (await r.json())["csrf"]


async def test_link_works_once_and_the_cookie_authenticates_reads(start_agent):
    agent = await start_agent()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        code, session, _ = await _login(agent, http)
        async with http.post(f"{agent.url}/ui/session", json={"code": code}) as r:
            assert r.status == 401 and (await r.json())["code"] == "login_code_invalid"
        async with http.get(f"{agent.url}/v1/status", headers={"Cookie": f"{COOKIE}={session}"}) as r:
            assert r.status == 200
        async with http.get(f"{agent.url}/v1/status", headers={"Cookie": f"{COOKIE}=forged"}) as r:
            assert r.status == 401 and (await r.json())["code"] == "session_expired"


async def test_state_changes_need_the_csrf_header_and_our_origin(start_agent):
    agent = await start_agent()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        _, session, csrf = await _login(agent, http)
        cookie = {"Cookie": f"{COOKIE}={session}"}
        own = f"http://127.0.0.1:{agent.agent.port}"
        async with http.post(f"{agent.url}/v1/ui/login-link", headers={**cookie, "Origin": own}) as r:
            assert r.status == 403 and (await r.json())["code"] == "csrf_refused"
        async with http.post(f"{agent.url}/v1/ui/login-link",
                             headers={**cookie, "Origin": "http://evil.example", CSRF_HEADER: csrf}) as r:
            assert r.status == 403 and (await r.json())["code"] == "origin_refused"
        async with http.post(f"{agent.url}/v1/ui/login-link",
                             headers={**cookie, "Origin": own, CSRF_HEADER: csrf}) as r:
            assert r.status == 200
            assert "Access-Control-Allow-Origin" not in r.headers  # same origin needs no CORS
        async with http.delete(f"{agent.url}/ui/session", headers={**cookie, CSRF_HEADER: csrf}) as r:
            assert r.status == 200
        async with http.get(f"{agent.url}/v1/status", headers=cookie) as r:
            assert r.status == 401


async def test_page_is_served_with_a_strict_csp_and_no_outside_resources(start_agent, http):
    agent = await start_agent()
    async with http.get(f"{agent.url}/ui/") as r:
        assert r.status == 200
        csp = r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        page = await r.text()
    assert "http://" not in page.replace("https://sante.gouv.fr", "")  # only a link out, nothing loaded
    async with http.get(f"{agent.url}/ui/../relais.db") as r:
        assert r.status == 404
    async with http.get(f"{agent.url}/ui/app.js") as r:
        assert r.status == 200 and "innerHTML" not in await r.text()
