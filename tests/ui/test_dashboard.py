"""The dashboard in headless Chromium, as the doctor uses it; every effect is checked through the API."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

from relais_sandbox.identities import PAT_TROIS
from tests.conftest import reference_root
from tests.support.documents import PDF
from tests.support.ins import traits_search
from tests.support.queue import order_body

DEMO_RPPS = "01234567897"  # the demo CPS holder (relais_sandbox identities)


def n1_order(client_ref: str, delay: int = 0) -> dict[str, Any]:
    """A consultation report as a PDF, for a demo patient with a qualified INS: the agent wraps it as CDA N1."""
    return {
        "client_ref": client_ref,
        "patient": {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "identity_status": "QUAL",
                    "birth_name": "PAT-TROIS", "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28",
                    "birth_place": "51215"},
        "author": {"rpps": DEMO_RPPS, "family": "MULLER", "given": "Charles", "civility": "M", "title": "DR",
                   "organisation": {"id": "1750803447", "name": "Cabinet médical du Dr MULLER"}},
        "document": {"pdf_base64": base64.b64encode(PDF).decode(), "type_code": "11488-4",
                     "title": "Compte rendu de consultation", "service_start": "2026-01-05T10:00:00+01:00"},
        "destinations": {"dmp": True},
        "delay_seconds": delay,
    }


def api(agent, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{agent.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {agent.token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # a first CI-SIS check is slow on a busy host
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def open_dashboard(browser, agent, artifacts, name: str):
    status, link = api(agent, "POST", "/v1/ui/login-link")
    assert status == 200
    page = await browser.new_page(viewport={"width": 1280, "height": 800}, locale="fr-FR")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(link["url"])
    # A locator wait: the page's CSP (no 'unsafe-eval') forbids Playwright's string-evaluated waits.
    await page.locator("#agent-state", has_text="connecté").wait_for()
    assert "#login=" not in page.url  # the one-time code leaves the address bar
    page.errors = errors
    return page


async def test_acknowledge_the_conf21_notice(browser, demo_process, artifacts):
    agent = demo_process("ui-notice")
    page = await open_dashboard(browser, agent, artifacts, "notice")
    await page.get_by_role("tab", name="Avis").click()
    notice = page.locator("article.notice")
    await notice.wait_for()
    text = await notice.text_content()
    assert "Toute consultation de ma part d'un DMP/MES pour lequel le patient" in text
    button = notice.get_by_role("button")
    assert "J'ai compris" in await button.text_content()
    await page.screenshot(path=str(artifacts / "dashboard-notice.png"))
    # Only the holder whose PIN is entered acknowledges, in their name.
    await button.click()
    await page.get_by_text("Saisissez le code PIN de votre carte CPS").wait_for()
    assert api(agent, "GET", "/v1/notices")[1]["items"][0]["due"] is True
    page.errors.clear()  # the refused acknowledgement's 503, expected
    assert api(agent, "POST", "/v1/cps/login", {"pin": "1234"})[0] == 200
    await notice.get_by_role("button").click()
    await page.get_by_text("Avis lu et enregistré.").wait_for()
    status, notices = api(agent, "GET", "/v1/notices")
    assert status == 200
    conf21 = next(n for n in notices["items"] if n["id"] == "conf21")
    assert conf21["acknowledged_at"] and conf21["due"] is False
    assert not page.errors


async def test_cancel_an_order_during_its_delay(browser, demo_process, artifacts):
    agent = demo_process("ui-cancel")
    # The DMP takes only an INS obtained through INSi (EX_GEN-1530): the PIN, a search, then the PIN closed.
    assert api(agent, "POST", "/v1/cps/login", {"pin": "1234"})[0] == 200
    assert api(agent, "POST", "/v1/ins/search", traits_search(PAT_TROIS))[0] == 200
    assert api(agent, "POST", "/v1/cps/logout", {})[0] == 200
    status, order = api(agent, "POST", "/v1/orders", order_body(delay=600, rpps=DEMO_RPPS, client_ref="ui-cancel-1",
                                                                ins=PAT_TROIS.ins, oid=PAT_TROIS.oid))
    assert status == 201, order
    page = await open_dashboard(browser, agent, artifacts, "cancel")
    row = page.locator(f"#orders-pending tr[data-order='{order['id']}']")
    await row.wait_for()
    assert "Programmé" in await row.text_content()
    assert "dans" in await row.locator("td[data-send-at]").text_content()  # the countdown runs
    await page.screenshot(path=str(artifacts / "dashboard-queue-pending.png"))
    # The doctor reads the title and the patient's name, not the INS.
    text = await row.text_content()
    assert "Compte rendu" in text and "TEST ALICE, né(e) le 15/03/1979" in text
    assert order["patient"]["ins"] not in text
    # Keyboard only: focus the button and press Enter, as a doctor without a mouse would. The cancel waits out
    # its undo window, then reaches the agent.
    await row.get_by_role("button", name="Annuler").focus()
    await page.keyboard.press("Enter")
    await row.get_by_role("button", name="Rétablir").wait_for()
    await page.locator(f"#orders-done tr[data-order='{order['id']}']").wait_for()
    status, after = api(agent, "GET", f"/v1/orders/{order['id']}")
    assert status == 200 and after["state"] == "cancelled"
    await page.screenshot(path=str(artifacts / "dashboard-queue-cancelled.png"))
    # Pause and resume sending from the same view.
    await page.get_by_role("button", name="Suspendre les envois").click()
    await page.get_by_text("Envois suspendus").wait_for()
    assert api(agent, "GET", "/v1/status")[1]["queue"]["paused"] is True
    await page.get_by_role("button", name="Reprendre les envois").click()
    await page.get_by_role("button", name="Suspendre les envois").wait_for()
    assert api(agent, "GET", "/v1/status")[1]["queue"]["paused"] is False
    assert not page.errors


async def test_retry_a_failed_order_then_retry_all(browser, demo_process, artifacts, tmp_path):
    import asyncio

    # One attempt allowed (the default retries transient trouble for as long as it lasts): the orders fail fast.
    config = tmp_path / "one-attempt.toml"
    config.write_text("[queue]\nmax_attempts = 1\nbackoff_base_seconds = 0.1\nbackoff_cap_seconds = 0.2\n")
    # The kit, as scripts/demo.sh gives it: the N1 is coded from its value sets and validated.
    agent = demo_process("ui-retry", "--config", str(config), env={"RELAIS_REFERENCE": str(reference_root())})
    assert api(agent, "POST", "/v1/cps/login", {"pin": "1234"})[0] == 200
    assert api(agent, "POST", "/v1/ins/search", traits_search(PAT_TROIS))[0] == 200  # EX_GEN-1530
    # The simulated DMP answers garbage: the delivery fails with a French reason the doctor can read.
    assert api(agent, "POST", "/_sandbox/dmp/faults", {"mode": "malformed"})[0] == 200
    before = len(api(agent, "GET", "/_sandbox/dmp/submissions")[1]["items"])  # the demo DMP's seeded documents
    orders = []
    for ref in ("ui-retry-1", "ui-retry-2"):
        status, order = api(agent, "POST", "/v1/orders", n1_order(client_ref=ref))
        assert status == 201, order
        orders.append(order)

    async def wait_state(order_id: str, wanted: str) -> None:
        state = ""
        for _ in range(200):
            state = api(agent, "GET", f"/v1/orders/{order_id}")[1]["state"]
            if state == wanted:
                break
            await asyncio.sleep(0.1)
        assert state == wanted

    for order in orders:
        await wait_state(order["id"], "failed")
    page = await open_dashboard(browser, agent, artifacts, "retry")
    first, second = (page.locator(f"#orders-failed tr[data-order='{o['id']}']") for o in orders)
    await first.wait_for()
    reason = await first.locator("td").nth(3).text_content()
    assert reason and "DMP" in reason  # the French reason, as the queue recorded it
    assert await page.locator("#badge-queue").text_content() == "2"
    await page.screenshot(path=str(artifacts / "dashboard-queue-failed.png"))
    assert api(agent, "POST", "/_sandbox/dmp/faults", {"mode": "ok"})[0] == 200
    await first.get_by_role("button", name="Réessayer", exact=True).click()
    await wait_state(orders[0]["id"], "sent")
    await page.locator(f"#orders-done tr[data-order='{orders[0]['id']}']").wait_for()
    await second.wait_for()
    await page.get_by_role("button", name="Réessayer tout").click()  # "retry all failed"
    await wait_state(orders[1]["id"], "sent")
    await page.locator(f"#orders-done tr[data-order='{orders[1]['id']}']").wait_for()
    submissions = api(agent, "GET", "/_sandbox/dmp/submissions")[1]["items"]
    assert len(submissions) == before + 2  # the garbage answer came before storing: each stored once in all
    await page.screenshot(path=str(artifacts / "dashboard-queue-sent.png"))
    assert not page.errors


async def test_cancel_then_undo_keeps_the_order(browser, demo_process, artifacts):
    agent = demo_process("ui-undo")
    assert api(agent, "POST", "/v1/cps/login", {"pin": "1234"})[0] == 200
    assert api(agent, "POST", "/v1/ins/search", traits_search(PAT_TROIS))[0] == 200  # the DMP takes INSi's INS only
    status, order = api(agent, "POST", "/v1/orders", order_body(delay=600, rpps=DEMO_RPPS, client_ref="ui-undo-1",
                                                                ins=PAT_TROIS.ins, oid=PAT_TROIS.oid))
    assert status == 201, order
    page = await open_dashboard(browser, agent, artifacts, "undo")
    row = page.locator(f"#orders-pending tr[data-order='{order['id']}']")
    await row.get_by_role("button", name="Annuler").click()
    undo = row.get_by_role("button", name="Rétablir")
    await undo.wait_for()
    assert "Annulation demandée" in await row.text_content()
    await page.screenshot(path=str(artifacts / "dashboard-queue-undo.png"))
    await undo.click()
    await page.get_by_text("Annulation abandonnée").wait_for()
    await row.get_by_role("button", name="Annuler").wait_for()
    # Nothing is left to fire: the page holds no pending cancel, and the agent still has the order programmed.
    assert await page.evaluate("window.relaisPendingCancels.size") == 0
    status, after = api(agent, "GET", f"/v1/orders/{order['id']}")
    assert status == 200 and after["state"] == "scheduled"
    assert not page.errors


async def test_dismiss_a_failed_send(browser, demo_process, artifacts, tmp_path):
    import asyncio

    # One attempt allowed (the default retries transient trouble for as long as it lasts): the order fails fast.
    config = tmp_path / "one-attempt.toml"
    config.write_text("[queue]\nmax_attempts = 1\nbackoff_base_seconds = 0.1\nbackoff_cap_seconds = 0.2\n")
    agent = demo_process("ui-dismiss", "--config", str(config), env={"RELAIS_REFERENCE": str(reference_root())})
    assert api(agent, "POST", "/v1/cps/login", {"pin": "1234"})[0] == 200
    assert api(agent, "POST", "/v1/ins/search", traits_search(PAT_TROIS))[0] == 200  # the DMP takes INSi's INS only
    assert api(agent, "POST", "/_sandbox/dmp/faults", {"mode": "malformed"})[0] == 200
    status, order = api(agent, "POST", "/v1/orders", n1_order(client_ref="ui-dismiss-1"))
    assert status == 201, order
    for _ in range(200):
        state = api(agent, "GET", f"/v1/orders/{order['id']}")[1]["state"]
        if state == "failed":
            break
        await asyncio.sleep(0.1)
    assert state == "failed"
    page = await open_dashboard(browser, agent, artifacts, "dismiss")
    row = page.locator(f"#orders-failed tr[data-order='{order['id']}']")
    await row.wait_for()
    text = await row.text_content()
    assert "Compte rendu de consultation" in text and "PAT-TROIS DOMINIQUE" in text
    explanation = api(agent, "GET", f"/v1/orders/{order['id']}")[1]["deliveries"][0]["last_error"]["explanation"]
    assert explanation in text  # the doctor-level explanation, the technical detail below it
    assert await page.locator("#badge-queue").text_content() == "1"
    await page.screenshot(path=str(artifacts / "dashboard-queue-dismiss.png"))
    # The failed attempt may have reached the DMP: withdrawing asks it first, so it must answer again.
    assert api(agent, "POST", "/_sandbox/dmp/faults", {"mode": "ok"})[0] == 200
    await row.get_by_role("button", name="Retirer").click()
    await page.locator(f"#orders-done tr[data-order='{order['id']}']").wait_for()
    status, after = api(agent, "GET", f"/v1/orders/{order['id']}")
    assert status == 200 and after["state"] == "cancelled"
    assert await page.locator("#badge-queue").text_content() == ""
    traces = api(agent, "GET", "/v1/traces?action=order.dismissed")[1]["items"]
    assert any(t["details"].get("order_id") == order["id"] for t in traces), traces
    # The traces view names the professional (the author, whose CPS signed the send).
    await page.get_by_role("tab", name="Traces").click()
    await page.locator("#traces tr", has_text="order.dismissed").first.wait_for()
    assert f"RPPS {DEMO_RPPS}" in await page.locator("#traces tr", has_text="order.dismissed").first.text_content()
    assert not page.errors


async def test_the_conf21_badge_comes_back_after_181_days(browser, start_agent, http, artifacts):
    from datetime import timedelta

    from agent.cli.wiring import DemoOptions
    from agent.clock import FrozenClock

    clock = FrozenClock()
    agent = await start_agent(demo=DemoOptions(tray=False, cards="cps"), clock=clock)
    headers = agent.headers()
    async with http.post(f"{agent.url}/v1/cps/login", json={"pin": "1234"}, headers=headers) as r:
        assert r.status == 200
    async with http.post(f"{agent.url}/v1/notices/conf21/ack", headers=headers) as r:
        assert r.status == 200 and (await r.json())["due"] is False
    async def dashboard():
        async with http.post(f"{agent.url}/v1/ui/login-link", headers=headers) as r:
            link = await r.json()
        page = await browser.new_page(locale="fr-FR")
        await page.goto(link["url"])
        await page.locator("#agent-state", has_text="connecté").wait_for()
        return page

    page = await dashboard()
    await page.locator("article.notice").wait_for(state="attached")
    assert await page.locator("#badge-notices").text_content() == ""
    await page.close()
    clock.advance(timedelta(days=181).total_seconds())
    page = await dashboard()  # (a dashboard session does not last 181 days)
    await page.locator("#badge-notices", has_text="1").wait_for()
    await page.get_by_role("tab", name="Avis").click()
    assert "J'ai compris" in await page.locator("article.notice").get_by_role("button").text_content()
    await page.screenshot(path=str(artifacts / "dashboard-notice-due-again.png"))
    await page.close()


async def test_a_wrong_pin_says_so_not_session_expired(browser, demo_process, artifacts):
    agent = demo_process("ui-wrong-pin")
    page = await open_dashboard(browser, agent, artifacts, "wrong-pin")
    await page.get_by_role("tab", name="Cartes").click()
    await page.get_by_label("Code PIN de la carte CPS").fill("9999")
    await page.get_by_role("button", name="Se connecter", exact=True).click()
    message = page.locator("#message")
    await message.wait_for()
    assert "PIN" in await message.text_content()
    assert "Session expirée" not in await page.locator("#agent-state").text_content()
    status, cards = api(agent, "GET", "/v1/cards")
    assert status == 200 and cards["cps"]["logged_in"] is False
