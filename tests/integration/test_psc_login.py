"""Pro Santé Connect login against the simulated PSC, over real sockets: authorization code with PKCE through the
"browser" (HTTP following redirects) and the agent's loopback redirect; the id_token checked against the JWKS;
refresh, logout, and the refusals (state, issuer, foreign signature, PKCE, expiry, revocation)."""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.clock import FrozenClock
from agent.errors import AccessRefused, AuthenticationRequired
from agent.events import EventBus
from agent.psc.client import PendingLogin, PscClient, PscSettings
from agent.psc.service import PscPart, RedirectSettings
from relais_sandbox.psc import ACCESS_TTL, CLIENT_ID, REFRESH_TTL, TEST_USERS, PscSimulator
from tests.support.psc import browse, running_psc
from tests.support.traces import recorded
from tray.app import Tray

DEMO = TEST_USERS[0]


@pytest.fixture
async def psc(tmp_path: Path) -> AsyncIterator[PscSimulator]:
    async with running_psc(tmp_path / "psc") as sim:
        yield sim


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
async def part(psc: PscSimulator) -> AsyncIterator[tuple[PscPart, FrozenClock, EventBus]]:
    clock = FrozenClock(_now())
    bus = EventBus(clock)
    psc_part = PscPart(PscClient(PscSettings(issuer=psc.issuer, client_id=CLIENT_ID), clock), bus, clock,
                       RedirectSettings())
    async with psc_part:
        yield psc_part, clock, bus


async def test_login_through_the_browser_gives_the_professional_and_no_token(part, psc):
    psc_part, _, bus = part
    started = await psc_part.begin_login()
    url = urllib.parse.urlsplit(started["authorization_url"])
    query = urllib.parse.parse_qs(url.query)
    assert query["code_challenge_method"] == ["S256"] and query["acr_values"] == ["eidas1"]
    assert query["redirect_uri"] == [psc_part.redirect_uri] and psc_part.redirect_uri.startswith("http://127.0.0.1:")

    status, final, text = await browse(started["authorization_url"])

    assert status == 200 and final.startswith(psc_part.redirect_uri), text
    assert "Connexion réussie" in text
    state = psc_part.state()
    assert state["active"] is True
    assert state["professional"] == {"rpps": DEMO.rpps, "national_id": f"8{DEMO.rpps}", "family_name": "DEMO",
                                     "given_name": "Alice", "profession": "10", "specialty": "SM54"}
    assert "token" not in repr(state).lower().replace("pending", "")
    assert [(e.type, e.data) for e in bus._recent] == [("psc.login", {"rpps": DEMO.rpps})]
    assert await psc_part.access_token(DEMO.rpps)
    assert await psc_part.access_token(TEST_USERS[1].rpps) is None  # never for another professional
    assert psc.logins == 1


async def test_a_redirect_with_an_unknown_or_replayed_state_is_refused(part):
    psc_part, _, _ = part
    started = await psc_part.begin_login()
    async with aiohttp.ClientSession() as browser:
        # The authorization step without following PSC's redirect: keep the code, replay it with a wrong state.
        async with browser.get(started["authorization_url"], allow_redirects=False) as answer:
            back = answer.headers["Location"]
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(back).query)
        forged = f"{psc_part.redirect_uri}?code={params['code'][0]}&state=forged"
        async with browser.get(forged) as page:
            assert page.status == 400
            assert "state" in await page.text()
        assert psc_part.state()["active"] is False and psc_part.last_error == "psc_state_invalid"
        async with browser.get(back) as page:  # the genuine redirect still completes, once
            assert page.status == 200
        async with browser.get(back) as page:
            assert page.status == 400
    assert psc_part.state()["active"] is True


async def test_the_provider_refuses_a_code_without_the_right_pkce_verifier(part):
    psc_part, _, _ = part
    started = await psc_part.begin_login()
    async with aiohttp.ClientSession() as browser, \
            browser.get(started["authorization_url"], allow_redirects=False) as answer:
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.headers["Location"]).query)
    other = PendingLogin.new(psc_part.redirect_uri, 0.0)  # same redirect, another verifier
    with pytest.raises(AuthenticationRequired) as refused:
        await psc_part.client.exchange(other, params["code"][0], params["iss"][0])
    assert refused.value.code == "psc_refused"


async def test_a_denied_login_opens_no_session(part, psc):
    psc_part, _, _ = part
    psc.user = None  # the professional refuses on the e-CPS app
    status, _, text = await browse((await psc_part.begin_login())["authorization_url"])
    assert status == 400 and "refusée" in text
    assert psc_part.state()["active"] is False and psc_part.last_error == "psc_denied"


async def test_tokens_from_another_issuer_or_key_are_refused(part, psc, tmp_path):
    psc_part, clock, _ = part
    async with running_psc(tmp_path / "foreign") as foreign:
        started = await foreign_login(foreign)
        # A genuine id_token of another provider: wrong issuer and unknown key.
        with pytest.raises(AuthenticationRequired):
            await psc_part.client.verify_token(started, audience=CLIENT_ID)
        # Another key claiming to be our PSC: the signature does not verify against our JWKS.
        now = int(clock.now().timestamp())
        forged = foreign.key.sign({"iss": psc.issuer, "sub": "x", "aud": CLIENT_ID, "exp": now + 60, "iat": now})
        with pytest.raises(AuthenticationRequired):
            await psc_part.client.verify_token(forged, audience=CLIENT_ID)
        # Our own key, but for another client.
        mine = psc.key.sign({"iss": psc.issuer, "sub": "x", "aud": "someone-else", "exp": now + 60, "iat": now})
        with pytest.raises(AuthenticationRequired):
            await psc_part.client.verify_token(mine, audience=CLIENT_ID)
        # A redirect claiming another issuer (RFC 9207 mix-up).
        pending = PendingLogin.new(psc_part.redirect_uri, 0.0)
        with pytest.raises(AccessRefused) as mixed:
            await psc_part.client.exchange(pending, "code", foreign.issuer)
        assert mixed.value.code == "psc_issuer_mismatch"


async def foreign_login(foreign: PscSimulator) -> str:
    """An id_token of the foreign provider, for the same client id."""
    clock = FrozenClock(_now())
    client = PscClient(PscSettings(issuer=foreign.issuer, client_id=CLIENT_ID), clock)
    pending = PendingLogin.new("http://127.0.0.1:9/cb", 0.0)
    try:
        async with aiohttp.ClientSession() as browser, \
                browser.get(await client.authorization_url(pending), allow_redirects=False) as answer:
            params = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.headers["Location"]).query)
        tokens, _ = await client.exchange(pending, params["code"][0], params["iss"][0])
        return tokens.id_token
    finally:
        await client.close()


async def test_an_expired_id_token_is_refused(part, psc):
    psc_part, clock, _ = part
    await browse((await psc_part.begin_login())["authorization_url"])
    session = psc_part._session
    assert session is not None
    clock.advance(ACCESS_TTL + 120)
    with pytest.raises(AuthenticationRequired):
        await psc_part.client.verify_token(session.tokens.id_token, audience=CLIENT_ID)


async def test_refresh_keeps_the_session_and_expiry_ends_it(part, psc):
    psc_part, clock, _ = part
    await browse((await psc_part.begin_login())["authorization_url"])
    first = await psc_part.access_token(DEMO.rpps)
    clock.advance(ACCESS_TTL - 10)  # within the refresh margin: a new access token
    second = await psc_part.access_token(DEMO.rpps)
    assert second and second != first and psc_part.state()["active"] is True
    clock.advance(REFRESH_TTL + 60)  # the refresh token is past its life: the session is over
    assert psc_part.identity() is None and psc_part.state()["active"] is False
    assert await psc_part.access_token(DEMO.rpps) is None
    assert psc_part.ready(DEMO.rpps) is False


async def test_a_session_revoked_at_psc_ends_at_the_next_refresh(part, psc):
    psc_part, clock, bus = part
    await browse((await psc_part.begin_login())["authorization_url"])
    for grant in psc.grants.values():
        grant.revoked = True  # the professional logged out of PSC elsewhere
    clock.advance(ACCESS_TTL)
    assert await psc_part.access_token(DEMO.rpps) is None
    assert psc_part.state()["active"] is False
    assert [e.data.get("reason") for e in bus._recent if e.type == "psc.logout"] == ["refused"]


async def test_logout_revokes_at_psc_and_offers_the_end_session_url(part, psc):
    psc_part, _, _ = part
    await browse((await psc_part.begin_login())["authorization_url"])
    token = await psc_part.access_token(DEMO.rpps)
    assert token and psc.active_grant(token) is not None
    answer = await psc_part.logout()
    assert answer["logged_out"] is True and "id_token_hint=" in answer["end_session_url"]
    assert psc.active_grant(token) is None  # revoked at the provider too
    assert psc_part.state()["active"] is False
    async with aiohttp.ClientSession() as http, http.post(
            psc.issuer + "/protocol/openid-connect/token/introspect", data={"token": token}) as resp:
        assert (await resp.json())["active"] is False


async def test_the_agent_api_logs_in_through_psc_and_says_the_context_is_psc(start_agent, psc, http):
    running = await start_agent(psc={"issuer": psc.issuer, "client_id": CLIENT_ID})
    async with http.get(f"{running.url}/v1/professional", headers=running.headers()) as resp:
        before = await resp.json()
    assert before["context"] is None and before["psc_available"] is True

    async with http.post(f"{running.url}/v1/psc/login", headers=running.headers()) as resp:
        assert resp.status == 200
        started = await resp.json()
    status, _, _ = await browse(started["authorization_url"])
    assert status == 200

    async with http.get(f"{running.url}/v1/psc/session", headers=running.headers()) as resp:
        session = await resp.json()
    assert session["active"] is True and session["professional"]["rpps"] == DEMO.rpps
    assert "access_token" not in session and "refresh_token" not in session
    async with http.get(f"{running.url}/v1/professional", headers=running.headers()) as resp:
        context = await resp.json()
    assert context["context"] == "psc" and context["professional"]["rpps"] == DEMO.rpps
    async with http.get(f"{running.url}/v1/cards", headers=running.headers()) as resp:
        assert (await resp.json())["professional_context"] == "psc"
    logins = await recorded(running.services, "psc.login")
    assert [(t.actor_rpps, t.client) for t in logins] == [(DEMO.rpps, "psc")]
    async with http.post(f"{running.url}/v1/psc/logout", headers=running.headers()) as resp:
        assert (await resp.json())["logged_out"] is True
    async with http.get(f"{running.url}/v1/professional", headers=running.headers()) as resp:
        assert (await resp.json())["context"] is None
    assert all(g.revoked for g in psc.grants.values())


async def test_without_psc_configured_its_routes_answer_503(start_agent, http):
    running = await start_agent()
    async with http.post(f"{running.url}/v1/psc/login", headers=running.headers()) as resp:
        assert resp.status == 503 and (await resp.json())["code"] == "psc_disabled"


async def test_web_access_gives_the_contextual_url_of_the_patients_dmp_and_traces_it(start_agent, psc, http):
    """CNDA 0.9-040 / 0.9-070: the Web-PS opened on the patient's DMP, the INS passed as parameter."""
    template = "https://wps-cps.dev1.dmp.gouv.fr/contexte?ins={ins}&oid={oid}"
    running = await start_agent(psc={"issuer": psc.issuer, "client_id": CLIENT_ID},
                                dmp={"web_access_patient_url": template,
                                     "web_access_dashboard_url": "https://wps-cps.dev1.dmp.gouv.fr/"})
    await browse((await (await http.post(f"{running.url}/v1/psc/login", headers=running.headers())).json())[
        "authorization_url"])
    ins = "279035121518989"
    async with http.get(f"{running.url}/v1/dmp/{ins}/web-access?oid=1.2.250.1.213.1.4.8",
                        headers=running.headers()) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert body["url"] == f"https://wps-cps.dev1.dmp.gouv.fr/contexte?ins={ins}&oid=1.2.250.1.213.1.4.8"
    assert body["window_name"] and body["target"] == "patient" and body["professional_context"] == "psc"
    traced = await recorded(running.services, "dmp.web_access")
    assert [(t.actor_rpps, t.ins) for t in traced] == [(DEMO.rpps, ins)]
    async with http.get(f"{running.url}/v1/dmp/web-access", headers=running.headers()) as resp:
        assert (await resp.json())["url"] == "https://wps-cps.dev1.dmp.gouv.fr/"


async def test_web_access_without_configuration_answers_503(start_agent, http):
    running = await start_agent()
    async with http.get(f"{running.url}/v1/dmp/279035121518989/web-access?oid=1.2.250.1.213.1.4.8",
                        headers=running.headers()) as resp:
        assert resp.status == 503 and (await resp.json())["code"] == "dmp_web_access_disabled"


async def test_the_tray_menu_opens_psc_in_the_system_browser(start_agent, psc):
    running = await start_agent(psc={"issuer": psc.issuer, "client_id": CLIENT_ID})
    tray = Tray(lambda: (running.url, running.token))
    opened: list[str] = []
    await asyncio.to_thread(tray.psc_login, opener=opened.append)  # the tray's client is synchronous
    assert len(opened) == 1 and opened[0].startswith(psc.issuer + "/protocol/openid-connect/auth?")
    status, _, _ = await browse(opened[0])
    assert status == 200 and running.services.psc.identity().rpps == DEMO.rpps


async def _until(predicate, what: str) -> None:
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(what)


async def test_e_cps_push_without_a_browser_opens_the_session_once_approved(start_agent, psc, http):
    running = await start_agent(psc={"issuer": psc.issuer, "client_id": CLIENT_ID})
    async with http.post(f"{running.url}/v1/psc/push", json={"rpps": DEMO.rpps}, headers=running.headers()) as resp:
        assert resp.status == 202
        started = await resp.json()
    assert psc.pushes == [{"national_id": DEMO.national_id, "binding_message": started["binding_message"]}]
    part = running.services.psc
    await _until(lambda: part.identity() is not None, "the push was not approved")
    assert part.identity().rpps == DEMO.rpps
    assert [t.actor_rpps for t in await recorded(running.services, "psc.login")] == [DEMO.rpps]


async def test_e_cps_push_refused_on_the_phone_opens_nothing(start_agent, psc, http):
    running = await start_agent(psc={"issuer": psc.issuer, "client_id": CLIENT_ID})
    psc.user = None
    async with http.post(f"{running.url}/v1/psc/push", json={"rpps": DEMO.rpps}, headers=running.headers()) as resp:
        assert resp.status == 202
    part = running.services.psc
    await _until(lambda: part.last_error == "psc_denied", "the refusal was not seen")
    assert part.identity() is None
    async with http.post(f"{running.url}/v1/psc/push", json={"rpps": "10000000000"},
                         headers=running.headers()) as resp:  # unknown to PSC
        assert resp.status == 401 and (await resp.json())["code"] == "psc_refused"
