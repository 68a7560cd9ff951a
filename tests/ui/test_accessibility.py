"""axe-core on every tab of the dashboard, in headless Chromium, with content in each view: zero violations.

axe-core (axe.min.js, Deque, MPL-2.0) comes from the ``axe-playwright-python`` wheel (dev extra), which bundles it:
nothing is fetched at test time. The rules run are axe's defaults (WCAG 2.0/2.1 A and AA, and best practices).
"""

from __future__ import annotations

import pytest

from relais_sandbox.identities import PAT_TROIS
from tests.support.ins import traits_search
from tests.support.queue import order_body
from tests.ui.test_dashboard import DEMO_RPPS, api, open_dashboard

TABS = ("File d'envoi", "Cartes", "Accès DMP", "Traces", "Avis", "Paramètres")


def _report(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        targets = [", ".join(map(str, node["target"])) for node in v["nodes"]]
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} -> {targets}")
    return "\n".join(lines)


async def test_every_dashboard_tab_has_no_axe_violation(browser, demo_process, artifacts, tmp_path):
    axe_module = pytest.importorskip("axe_playwright_python.async_playwright",
                                     reason="pip install axe-playwright-python (dev extra)")
    config = tmp_path / "one-attempt.toml"  # a failed send shows at once, with its explanation and its buttons
    config.write_text("[queue]\nmax_attempts = 1\nbackoff_base_seconds = 0.1\nbackoff_cap_seconds = 0.2\n")
    agent = demo_process("ui-axe", "--config", str(config))
    # Content in every view: a programmed order, a failed one, the CPS logged in, the patient's INS from INSi.
    assert api(agent, "POST", "/v1/cps/login", {"pin": "1234"})[0] == 200
    assert api(agent, "POST", "/v1/ins/search", traits_search(PAT_TROIS))[0] == 200
    status, order = api(agent, "POST", "/v1/orders", order_body(delay=600, rpps=DEMO_RPPS, client_ref="ui-axe-1",
                                                                ins=PAT_TROIS.ins, oid=PAT_TROIS.oid))
    assert status == 201, order
    assert api(agent, "POST", "/_sandbox/dmp/faults", {"mode": "malformed"})[0] == 200
    status, failing = api(agent, "POST", "/v1/orders", order_body(delay=0, rpps=DEMO_RPPS, client_ref="ui-axe-2",
                                                                  ins=PAT_TROIS.ins, oid=PAT_TROIS.oid))
    assert status == 201, failing
    page = await open_dashboard(browser, agent, artifacts, "axe")
    axe = axe_module.Axe()
    ready = {
        "File d'envoi": page.locator(f"#orders-failed tr[data-order='{failing['id']}'] button").first,
        "Cartes": page.locator("#cards-summary dl"),
        "Accès DMP": page.locator("#dmp-patients li[data-index='0'] button"),
        "Traces": page.locator("#traces tr").first,
        "Avis": page.locator("article.notice"),
        "Paramètres": page.locator("#config-sections details").first,
    }
    found: dict[str, str] = {}
    for name in TABS:
        await page.get_by_role("tab", name=name).click()
        await ready[name].wait_for()
        if name == "File d'envoi":
            await page.locator(f"#orders-pending tr[data-order='{order['id']}']").wait_for()
        if name == "Accès DMP":  # the patient's DMP opened too: its access and reasons
            await page.locator("#dmp-patients li[data-index='0']").get_by_role("button").first.click()
            await page.locator("#dmp-access dl").wait_for()
            await page.get_by_text("Autre patient : saisir son INS").click()
            await page.locator("#dmp-ins").wait_for()
        if name == "Paramètres":  # a section of the configuration unfolded
            await page.get_by_text("File d'envoi [queue]").click()
            await page.locator("details.config-section[open] dl").wait_for()
        results = await axe.run(page)
        violations = results.response["violations"]
        if violations:
            found[name] = _report(violations)
            await page.screenshot(path=str(artifacts / f"axe-{len(found)}.png"))
    assert not found, "\n".join(f"[{tab}]\n{report}" for tab, report in found.items())
    assert not page.errors, page.errors
