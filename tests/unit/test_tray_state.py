"""The tray's model: which light, which tooltip, which notifications, from status and events."""

from __future__ import annotations

from tray.client import parse_sse
from tray.state import Light, TrayModel

STATUS_OK = {"cards": {"cps": {"present": True, "logged_in": True}}, "queue": {"scheduled": 2, "failed": 0},
             "notices": [{"id": "conf21", "due": False}]}


def test_lights_say_what_needs_the_doctor():
    model = TrayModel()
    assert model.light is Light.OFFLINE and "injoignable" in model.tooltip
    model.apply_status(STATUS_OK)
    assert model.light is Light.OK
    assert "2 envoi(s) en attente" in model.tooltip
    model.apply_status({**STATUS_OK, "cards": {"cps": {"present": True, "logged_in": False}}})
    assert model.light is Light.ATTENTION and "CPS non connectée" in model.tooltip
    model.apply_status({**STATUS_OK, "notices": [{"id": "conf21", "due": True}]})
    assert model.light is Light.ATTENTION
    model.apply_status({**STATUS_OK, "queue": {"waiting_card": 1}})
    assert model.light is Light.ATTENTION
    model.apply_status({**STATUS_OK, "queue": {"failed": 1}, "cards": {}})
    assert model.light is Light.ERROR  # a failure outranks everything else


def test_failure_is_notified_once_per_order_with_its_reason():
    model = TrayModel()
    first = model.on_event("order.updated", {"id": "o1", "state": "failed", "reason": "Refus du DMP"})
    assert first is not None and "Refus du DMP" in first.message
    assert model.on_event("order.updated", {"id": "o1", "state": "failed"}) is None
    assert model.on_event("order.updated", {"id": "o1", "state": "ready"}) is None
    assert model.on_event("order.updated", {"id": "o1", "state": "failed"}) is not None  # failed again


def test_routine_progress_is_silent_and_card_and_notice_events_speak():
    model = TrayModel()
    for state in ("scheduled", "ready", "sending", "sent", "cancelled"):
        assert model.on_event("order.updated", {"id": "o2", "state": state}) is None
    vitale = model.on_event("card.inserted", {"card": "vitale", "reader": "r1"})
    assert vitale is not None and "Vitale" in vitale.title
    assert model.on_event("notice.due", {"id": "conf21"}) is not None
    dica = model.on_event("dmp.access", {"access": {"can_read": True}, "new_documents": 3})
    assert dica is not None and "3 nouveau(x) document(s)" in dica.message
    refused = model.on_event("dmp.access", {"access": {"can_read": False,
                                                       "reasons": [{"message": "Consentement absent"}]}})
    assert refused is not None and "Consentement absent" in refused.message
    waiting = model.on_event("order.updated", {"id": "o3", "state": "waiting_card", "from_peer": "poste-2"})
    assert waiting is not None and "carte CPS" in waiting.message


def test_sse_parser_reads_ids_types_multiline_data_and_skips_comments():
    raw = [b"retry: 2000\n", b": ping\n", b"\n", b"id: 7\n", b"event: card.inserted\n",
           b'data: {"card": "cps",\n', b'data:  "reader": "r0"}\n', b"\n", b"event: x\n", b"data: not json\n", b"\n"]
    events = list(parse_sse(iter(raw)))
    assert [(e.id, e.type) for e in events] == [("7", "card.inserted"), ("7", "x")]
    assert events[0].data == {"card": "cps", "reader": "r0"}
    assert events[1].data == {}


def test_a_failed_send_is_named_by_its_title_and_patient_and_says_what_to_do() -> None:
    from tray.state import failure_notification

    order = {"document": {"title": "Compte rendu de consultation", "type_label": "CR"},
             "patient": {"display_name": "ZYGOMARCHE Éloïse", "ins": "279035121518989"},
             "deliveries": [{"state": "failed", "last_error": {
                 "code": "dmp_registry_error", "message": "XDSRegistryMetadataError", "retry_helps": False,
                 "explanation": "Le DMP a refusé ce document tel qu'il est."}}]}
    note = failure_notification(order)
    assert note.title == "Échec d'envoi d'un document"  # the only part logged: no patient data
    assert "« Compte rendu de consultation » pour ZYGOMARCHE Éloïse n'est pas parti." in note.message
    assert "Le DMP a refusé ce document" in note.message and "retirer l'envoi" in note.message
    assert "réessayer" not in note.message and "279035121518989" not in note.message and "XDS" not in note.message
    order["deliveries"][0]["last_error"] = {"code": "dmp_unreachable", "retry_helps": True,
                                            "explanation": "Le service n'a pas répondu."}
    assert "réessayer ou retirer" in failure_notification(order).message


def test_a_disk_that_refuses_writes_turns_the_light_red_and_is_notified():
    # Issue 23 #12: a full disk was a bare 500 and nothing in the tray.
    model = TrayModel()
    full = {**STATUS_OK, "store": {"writable": False, "problem": {"code": "disk_full",
                                                                  "message": "Le disque de ce poste est plein"}}}
    model.apply_status(full)
    assert model.light is Light.ERROR and "DISQUE PLEIN" in model.tooltip
    model.apply_status({**STATUS_OK, "store": {"writable": True, "problem": None}})
    assert model.light is Light.OK
    note = model.on_event("store.fault", {"writable": False, "code": "disk_full", "message": "Le disque est plein"})
    assert note is not None and "plein" in note.message and model.light is Light.ERROR
    assert model.on_event("store.fault", {"writable": True}) is None and model.light is Light.OK


def test_a_clock_jump_is_notified_and_shown():
    model = TrayModel()
    model.apply_status({**STATUS_OK, "clock": {"last_jump": {"seconds": 3600, "message": "L'horloge a été avancée"}}})
    assert "horloge du poste modifiée" in model.tooltip
    note = model.on_event("clock.jumped", {"seconds": -3600, "message": "L'horloge a été reculée"})
    assert note is not None and "reculée" in note.message


def test_the_doctor_silences_a_kind_of_notification_but_never_a_full_disk():
    model = TrayModel()
    assert model.allows("card.inserted") and model.allows("order.updated")  # before the settings are read: all
    model.preferences = {"notifications.patients": False, "notifications.send_failures": True,
                         "notifications.notices": False}
    assert not model.allows("card.inserted") and not model.allows("dmp.access")
    assert not model.allows("notice.due") and not model.allows("psc.login")
    assert model.allows("order.updated") and model.allows("order.received")
    assert model.allows("store.fault") and model.allows("clock.jumped")
