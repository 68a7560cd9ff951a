"""The PSC login's browser step in a real (headless) Chromium, once: the page PSC redirects to is the agent's
loopback listener, which completes the login and tells the doctor in French (the other tests drive it by HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relais_sandbox.psc import CLIENT_ID, TEST_USERS
from tests.support.psc import running_psc


async def test_chromium_completes_a_psc_login_on_the_agents_loopback(start_agent: Any, browser: Any, http: Any,
                                                                     tmp_path: Path, artifacts: Path) -> None:
    async with running_psc(tmp_path / "psc") as psc:
        running = await start_agent(psc={"issuer": psc.issuer, "client_id": CLIENT_ID})
        async with http.post(f"{running.url}/v1/psc/login", headers=running.headers()) as resp:
            started = await resp.json()
        page = await browser.new_page()
        try:
            response = await page.goto(started["authorization_url"])
            assert response is not None and response.status == 200
            assert page.url.startswith(started["redirect_uri"])
            assert "Connexion réussie" in await page.text_content("h1")
            await page.screenshot(path=str(artifacts / "psc-login.png"))
        finally:
            await page.close()
        async with http.get(f"{running.url}/v1/psc/session", headers=running.headers()) as resp:
            session = await resp.json()
        assert session["active"] and session["professional"]["rpps"] == TEST_USERS[0].rpps
