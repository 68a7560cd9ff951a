"""The dashboard's DMP view opened from a carte Vitale insertion, and its settings tab, in headless Chromium; every
effect is checked through the API."""

from __future__ import annotations

import asyncio

from relais_sandbox.identities import PAT_TROIS
from tests.conftest import reference_root
from tests.ui.test_dashboard import api, open_dashboard

INSURED = "PAT-TROIS DOMINIQUE MARIE-LOUISE"


async def test_the_dmp_view_opens_from_the_inserted_carte_vitale(browser, demo_process, artifacts):
    agent = demo_process("ui-dmp", "--cards", "cps", env={"RELAIS_REFERENCE": str(reference_root())})
    assert api(agent, "POST", "/v1/cps/login", {"pin": "1234"})[0] == 200
    assert api(agent, "POST", "/v1/notices/conf21/ack")[0] == 200  # CONF.21, by the holder, PIN entered
    page = await open_dashboard(browser, agent, artifacts, "dmp")
    await page.get_by_role("tab", name="Accès DMP").click()
    await page.get_by_text("Aucun patient ouvert").wait_for()
    # The doctor types no INS and chooses no OID: the form asks for neither until "Autre patient" is opened.
    assert not await page.get_by_label("INS du patient (15 caractères, obtenu par l'INSi)").is_visible()
    assert await page.locator("#dmp-oid").count() == 0

    # The patient's carte Vitale goes into the reader: the view offers its beneficiaries at once.
    assert api(agent, "POST", "/_sandbox/cards/vitale", {"inserted": True})[0] == 200
    insured = page.locator("#dmp-patients li[data-index='0']")
    await insured.wait_for()
    text = await insured.text_content()
    assert INSURED in text and "né(e) le 28/03/1979" in text and PAT_TROIS.ins not in text
    # No INS from INSi yet (the card's NIR is none): INSi first, with the card's beneficiary.
    await insured.get_by_role("button", name=f"Obtenir l'INS de {INSURED} (INSi)").click()
    open_button = insured.get_by_role("button", name=f"Ouvrir le DMP de {INSURED}")
    await open_button.wait_for()
    traces = api(agent, "GET", "/v1/traces?action=insi.search")[1]["items"]
    assert any(t["ins"] == PAT_TROIS.ins for t in traces), traces
    await page.screenshot(path=str(artifacts / "dashboard-dmp-patients.png"))

    await open_button.click()
    access = page.locator("#dmp-access")
    await access.get_by_text(f"DMP de {INSURED}").wait_for()
    # Each unmet condition comes with what the doctor can do about it, in their words.
    await access.locator("li[data-code='ins_not_qualified']").get_by_role("button").click()
    await access.locator("li[data-code='ins_not_qualified']").wait_for(state="detached")
    consent = access.locator("li[data-code='consent_missing']")
    await consent.get_by_role("button", name="Le patient, informé, consent à la consultation de son DMP").click()
    rows = page.locator("#dmp-documents-rows tr[data-entry]")
    await rows.first.wait_for()
    status, consent_now = api(agent, "GET", f"/v1/patients/{PAT_TROIS.ins}/consent?oid={PAT_TROIS.oid}")
    assert status == 200 and consent_now["dmp_consultation"] == "granted" and consent_now["informed"] is True
    status, documents = api(agent, "GET", f"/v1/dmp/{PAT_TROIS.ins}/documents")
    assert status == 200 and documents["items"], documents
    assert await rows.count() == len(documents["items"])
    first = documents["items"][0]
    row = page.locator(f"#dmp-documents-rows tr[data-entry='{first['entry_uuid']}']")
    assert first["title"] in await row.text_content()
    await page.screenshot(path=str(artifacts / "dashboard-dmp-documents.png"))

    # Opening a document retrieves it (TD3.2) in the doctor's name, traced.
    before = len(api(agent, "GET", "/v1/traces?action=dmp.retrieve")[1]["items"])
    await row.get_by_role("button").click()
    opened = None
    for _ in range(100):
        opened = await page.evaluate("window.relaisLastDocument || null")
        if opened:
            break
        await asyncio.sleep(0.1)
    assert opened and opened["entry"] == first["entry_uuid"], opened
    retrieved = api(agent, "GET", "/v1/traces?action=dmp.retrieve")[1]["items"]
    assert len(retrieved) > before and retrieved[-1]["ins"] == PAT_TROIS.ins

    # The LGC opens the patient's file: the view offers that patient too, the INS INSi gave ready to use.
    status, _ = api(agent, "PUT", "/v1/patients/current", {
        "ins": {"value": PAT_TROIS.ins, "oid": PAT_TROIS.oid}, "display_name": "PAT-TROIS DOMINIQUE",
        "birth_date": "1979-03-28"})
    assert status == 200
    lgc = page.locator("#dmp-patients li[data-source='lgc']")
    await lgc.get_by_role("button", name="Ouvrir le DMP de PAT-TROIS DOMINIQUE").wait_for()
    assert "ouvert dans votre logiciel" in await lgc.text_content()
    assert not page.errors, page.errors


async def test_the_doctor_edits_the_settings(browser, demo_process, artifacts):
    agent = demo_process("ui-settings", "--cards", "cps")
    default = api(agent, "GET", "/v1/settings")[1]["values"]["queue.delay_seconds"]
    page = await open_dashboard(browser, agent, artifacts, "settings")
    await page.get_by_role("tab", name="Paramètres").click()
    delay = page.get_by_label("Délai d'annulation avant l'envoi d'un document (minutes)")
    await page.locator("#set-delay-hint", has_text="Valeur du fichier de configuration").wait_for()
    assert await delay.input_value() == str(round(default / 60))
    notices = page.get_by_label("Avis à lire et sessions Pro Santé Connect")
    assert await notices.is_checked()
    # The configuration stays readable, in sections.
    await page.get_by_text("File d'envoi [queue]").click()
    await page.locator("details.config-section[open] dt", has_text="max_attempts").wait_for()

    await delay.fill("10")
    await notices.uncheck()
    await page.get_by_role("button", name="Enregistrer").click()
    await page.get_by_text("Réglages enregistrés.").wait_for()
    values = api(agent, "GET", "/v1/settings")[1]["values"]
    assert values["queue.delay_seconds"] == 600 and values["notifications.notices"] is False
    assert values["notifications.send_failures"] is True
    await page.screenshot(path=str(artifacts / "dashboard-settings.png"))
    # Persisted: a new page shows the doctor's choice.
    page2 = await open_dashboard(browser, agent, artifacts, "settings-2")
    await page2.get_by_role("tab", name="Paramètres").click()
    await page2.locator("#set-delay-hint", has_text="Votre choix").wait_for()
    assert await page2.get_by_label("Délai d'annulation avant l'envoi d'un document (minutes)").input_value() == "10"
    assert not await page2.get_by_label("Avis à lire et sessions Pro Santé Connect").is_checked()
    await page2.get_by_role("button", name="Revenir aux valeurs du fichier de configuration").click()
    await page2.get_by_text("Valeurs du fichier de configuration rétablies.").wait_for()
    values = api(agent, "GET", "/v1/settings")[1]["values"]
    assert values["queue.delay_seconds"] == default and values["notifications.notices"] is True
    assert not page2.errors, page2.errors
