"""The PSC login in a real (headless) Chromium, once, as the doctor does it from the dashboard: "Se connecter avec
e-CPS" opens PSC's page (the simulated PSC approves its test e-CPS user), which sends the browser back to the
agent's loopback listener; the dashboard then shows who is connected. The other tests drive it by HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relais_sandbox.psc import CLIENT_ID, TEST_USERS
from tests.support.psc import running_psc


async def test_se_connecter_avec_e_cps_from_the_dashboard(start_agent: Any, browser: Any, http: Any, tmp_path: Path,
                                                         artifacts: Path) -> None:
    async with running_psc(tmp_path / "psc") as psc:
        running = await start_agent(psc={"issuer": psc.issuer, "client_id": CLIENT_ID})
        # The dashboard's one-time login link (asked without blocking: this agent runs in the test's loop).
        async with http.post(f"{running.url}/v1/ui/login-link", headers=running.headers()) as resp:
            link = await resp.json()
        page = await browser.new_page(viewport={"width": 1280, "height": 800}, locale="fr-FR")
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        await page.goto(link["url"])
        await page.locator("#agent-state", has_text="connecté").wait_for()
        await page.click("#tab-cards")
        async with page.expect_popup() as opened:
            await page.click("#psc-login")
        popup = await opened.value
        await popup.locator("h1", has_text="Connexion réussie").wait_for()
        assert popup.url.startswith("http://127.0.0.1:") and "/psc/callback?" in popup.url
        await popup.screenshot(path=str(artifacts / "psc-login.png"))
        await page.locator("#psc-state", has_text="Connecté(e) avec e-CPS : Alice DEMO").wait_for()
        await page.screenshot(path=str(artifacts / "psc-dashboard.png"))
        async with http.get(f"{running.url}/v1/psc/session", headers=running.headers()) as resp:
            session = await resp.json()
        assert session["active"] and session["professional"]["rpps"] == TEST_USERS[0].rpps
        assert not errors, errors
