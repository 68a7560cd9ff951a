"""What the dashboard's DMP view and settings tab call, on a real demo agent: the open patients (carte Vitale,
LGC) with the INS INSi gave, and the doctor's settings (delay, notifications), persisted and guarded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from agent.api.sessions import COOKIE, CSRF_HEADER
from agent.cli.wiring import DemoOptions
from agent.clock import parse_rfc3339
from relais_sandbox.cards import DEMO_PIN
from relais_sandbox.identities import PAT_TROIS, PAT_TROIS_CAMILLE
from tests.support.ins import obtain_ins
from tests.support.queue import order_body
from tests.support.traces import recorded

DEMO_RPPS = "01234567897"


async def call(http: aiohttp.ClientSession, agent: Any, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.request(method, agent.url + path, json=body,
                            headers=headers if headers is not None else agent.headers()) as response:
        return response.status, await response.json(content_type=None)


async def open_patients(http: aiohttp.ClientSession, agent: Any, count: int) -> dict[str, Any]:
    for _ in range(100):  # the virtual carte Vitale is inserted in the background: bounded wait
        status, body = await call(http, agent, "GET", "/v1/patients/current")
        assert status == 200, body
        if len(body["items"]) >= count:
            return dict(body)
        await asyncio.sleep(0.05)
    pytest.fail("la carte Vitale virtuelle n'apparaît pas dans /v1/patients/current")


async def test_the_vitale_patients_come_with_the_ins_insi_gave_and_only_that(http, start_agent):
    agent = await start_agent(demo=DemoOptions(cards="both", tray=False))
    body = await open_patients(http, agent, 3)
    assert body["vitale"]["present"] is True
    by_index = {p["beneficiary_index"]: p for p in body["items"]}
    insured, child = by_index[0], by_index[1]
    assert insured["display_name"] == "PAT-TROIS DOMINIQUE MARIE-LOUISE" and insured["birth_date"] == "1979-03-28"
    # Nothing from INSi yet: the card's NIR is no INS (EX_GEN-1530), the view must offer INSi first.
    assert all(p["ins"] is None for p in body["items"]), body
    assert (await call(http, agent, "POST", "/v1/cps/login", {"pin": DEMO_PIN}))[0] == 200
    status, found = await call(http, agent, "POST", "/v1/ins/search",
                               {"source": "vitale", "beneficiary_index": child["beneficiary_index"],
                                "card_serial": child["card_serial"]})
    assert status == 200 and found["result"] == "found", found
    body = await open_patients(http, agent, 3)
    by_index = {p["beneficiary_index"]: p for p in body["items"]}
    # The child's own INS (the card carries the parent's NIR), with INSi's OID; the others still without.
    assert by_index[1]["ins"] == {"value": PAT_TROIS_CAMILLE.ins, "oid": PAT_TROIS_CAMILLE.oid, "kind": "NIR"}
    assert by_index[0]["ins"] is None and by_index[2]["ins"] is None
    # The insured person's INS obtained by traits (the LGC's search) is the card's NIR: offered too.
    await obtain_ins(http, agent, PAT_TROIS)
    body = await open_patients(http, agent, 3)
    assert {p["beneficiary_index"]: p for p in body["items"]}[0]["ins"]["value"] == PAT_TROIS.ins

    # The LGC opens a patient: listed, with the INS only once INSi gave it.
    status, body = await call(http, agent, "PUT", "/v1/patients/current", {
        "ins": {"value": PAT_TROIS.ins, "oid": PAT_TROIS.oid}, "display_name": "PAT-TROIS DOMINIQUE",
        "birth_date": "1979-03-28"})
    assert status == 200, body
    lgc = next(p for p in body["items"] if p["source"] == "lgc")
    assert lgc["ins"]["value"] == PAT_TROIS.ins and lgc["display_name"] == "PAT-TROIS DOMINIQUE"
    status, body = await call(http, agent, "PUT", "/v1/patients/current", {
        "ins": {"value": PAT_TROIS.ins, "oid": PAT_TROIS.oid}, "display_nmae": "typo"})
    assert status == 422 and body["code"] == "unknown_field", body
    status, body = await call(http, agent, "DELETE", "/v1/patients/current")
    assert status == 200 and all(p["source"] == "vitale" for p in body["items"])


async def test_the_doctor_changes_the_delay_and_notifications(http, start_agent):
    agent = await start_agent(demo=DemoOptions(cards="cps", tray=False), queue={"delay_seconds": 900})
    status, settings = await call(http, agent, "GET", "/v1/settings")
    assert status == 200, settings
    assert settings["values"] == {"queue.delay_seconds": 900, "notifications.send_failures": True,
                                  "notifications.patients": True, "notifications.notices": True}
    assert not any(item["changed"] for item in settings["items"])
    assert all(item["label"] for item in settings["items"])  # French labels for the doctor
    # Refused: a misspelled key, a delay out of bounds, a string for a boolean.
    for wrong in ({"queue.delay_second": 60}, {"queue.delay_seconds": -1}, {"notifications.notices": "non"}):
        status, problem = await call(http, agent, "PUT", "/v1/settings", wrong)
        assert status == 422, (wrong, problem)
    status, settings = await call(http, agent, "PUT", "/v1/settings",
                                  {"queue.delay_seconds": 120, "notifications.notices": False})
    assert status == 200, settings
    assert settings["values"]["queue.delay_seconds"] == 120 and settings["values"]["notifications.notices"] is False
    delay = next(i for i in settings["items"] if i["key"] == "queue.delay_seconds")
    assert delay["changed"] is True and delay["default"] == 900
    trace = (await recorded(agent.services, "settings.changed"))[-1]
    assert json.loads(trace.details) == {"keys": ["notifications.notices", "queue.delay_seconds"]}
    # An order that does not set its delay now waits the doctor's two minutes.
    await obtain_ins_or_record(agent)
    status, order = await call(http, agent, "POST", "/v1/orders", order_body(delay=None, rpps=DEMO_RPPS))
    assert status == 201, order
    waited = parse_rfc3339(order["send_at"]) - parse_rfc3339(order["created_at"])
    assert waited.total_seconds() == pytest.approx(120, abs=1)
    # Back to the configuration's values.
    status, settings = await call(http, agent, "PUT", "/v1/settings",
                                  {"queue.delay_seconds": None, "notifications.notices": None})
    assert status == 200 and settings["values"]["queue.delay_seconds"] == 900
    assert not any(item["changed"] for item in settings["items"])


async def obtain_ins_or_record(agent: Any) -> None:
    from tests.support.ins import insi_gave_order_patient

    await insi_gave_order_patient(agent, order_body(rpps=DEMO_RPPS))


async def test_a_dashboard_session_writes_settings_only_with_its_csrf_header_and_origin(start_agent):
    agent = await start_agent()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(f"{agent.url}/v1/ui/login-link", headers=agent.headers()) as r:
            code = (await r.json())["url"].partition("#login=")[2]
        async with http.post(f"{agent.url}/ui/session", json={"code": code}) as r:
            session, csrf = r.cookies[COOKIE].value, (await r.json())["csrf"]
        cookie = {"Cookie": f"{COOKIE}={session}"}
        own = f"http://127.0.0.1:{agent.agent.port}"
        change = {"notifications.send_failures": False}
        status, problem = await call(http, agent, "PUT", "/v1/settings", change, {**cookie, "Origin": own})
        assert status == 403 and problem["code"] == "csrf_refused"
        status, problem = await call(http, agent, "PUT", "/v1/settings", change,
                                     {**cookie, "Origin": "http://evil.example", CSRF_HEADER: csrf})
        assert status == 403 and problem["code"] == "origin_refused"
        status, _ = await call(http, agent, "GET", "/v1/settings", headers=cookie)
        assert _["values"]["notifications.send_failures"] is True  # nothing was saved by the refused calls
        status, settings = await call(http, agent, "PUT", "/v1/settings", change,
                                      {**cookie, "Origin": own, CSRF_HEADER: csrf})
        assert status == 200 and settings["values"]["notifications.send_failures"] is False


async def test_the_tray_drops_the_notifications_the_doctor_turned_off(http, start_agent):
    tray_app = pytest.importorskip("tray.app", reason="pip install -e .[desktop]")
    from tray.client import SseEvent
    from tray.state import Notification

    class RecordingTray(tray_app.Tray):  # the desktop's notification service is the one thing replaced
        shown: list[Notification]

        def notify(self, note: Notification) -> None:
            self.shown.append(note)

    agent = await start_agent()
    tray = RecordingTray(lambda: (agent.url, agent.token))
    tray.shown = []
    vitale = SseEvent("1", "card.inserted", {"card": "vitale"})
    await asyncio.to_thread(tray.on_event, vitale)
    assert [n.title for n in tray.shown] == ["Carte Vitale insérée"]
    status, _ = await call(http, agent, "PUT", "/v1/settings", {"notifications.patients": False})
    assert status == 200
    await asyncio.to_thread(tray.on_event, SseEvent("2", "settings.changed", {"keys": ["notifications.patients"]}))
    await asyncio.to_thread(tray.on_event, vitale)
    await asyncio.to_thread(tray.on_event, SseEvent("3", "notice.due", {}))  # another kind, still on
    assert [n.title for n in tray.shown] == ["Carte Vitale insérée", "Avis à lire (DMP)"]
    # A full disk is always announced, whatever the settings.
    await asyncio.to_thread(tray.on_event, SseEvent("4", "store.fault", {"writable": False, "message": "plein"}))
    assert tray.shown[-1].title == "Disque plein : Relais ne peut plus enregistrer"
