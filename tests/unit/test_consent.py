"""Consent rules: what a PUT may say, how a change builds the next record, and the rights that follow."""

from __future__ import annotations

import pytest

from agent.domain.consent import (
    AccessMode,
    ConsentRecord,
    Consultation,
    Feeding,
    apply_change,
    may_consult,
    may_feed,
    parse_change,
    parse_mode,
)
from agent.errors import InvalidInput

INS = "279035121518989"


def record(change: dict[str, object], current: ConsentRecord | None = None) -> ConsentRecord:
    return apply_change(current, parse_change(change), ins=INS, recorded_by="10003456789", workstation="poste-1",
                        client="lgc", recorded_at="2026-01-05T09:00:00Z")


def test_defaults_are_no_consultation_and_feeding_non_opposition():
    assert may_consult(None, AccessMode.NORMAL) is False
    assert may_feed(None) is True
    first = record({"informed": True})
    assert first.dmp_consultation is Consultation.UNKNOWN
    assert first.dmp_feeding is Feeding.NON_OPPOSITION


def test_consent_refused_then_granted_changes_the_right_to_consult():
    refused = record({"dmp_consultation": "refused", "informed": True})
    assert may_consult(refused, AccessMode.NORMAL) is False
    granted = record({"dmp_consultation": "granted"}, refused)
    assert may_consult(granted, AccessMode.NORMAL) is True
    # A field left out keeps its value: the later record still says informed.
    assert granted.informed is True


def test_granting_consent_implies_the_patient_was_informed():
    assert record({"dmp_consultation": "granted"}).informed is True
    with pytest.raises(InvalidInput) as caught:
        parse_change({"dmp_consultation": "granted", "informed": False})
    assert [e.field for e in caught.value.errors] == ["informed"]


def test_opposition_stops_feeding_but_keeps_consultation():
    granted = record({"dmp_consultation": "granted"})
    opposed = record({"dmp_feeding": "opposition"}, granted)
    assert may_feed(opposed) is False
    assert may_consult(opposed, AccessMode.NORMAL) is True


@pytest.mark.parametrize("mode", [AccessMode.BRIS_DE_GLACE, AccessMode.CENTRE_15])
def test_emergency_modes_consult_without_consent(mode: AccessMode):
    refused = record({"dmp_consultation": "refused"})
    assert may_consult(None, mode) is True
    assert may_consult(refused, mode) is True


@pytest.mark.parametrize("body, field", [
    ({"dmp_consultation": "yes"}, "dmp_consultation"),
    ({"dmp_feeding": "maybe"}, "dmp_feeding"),
    ({"informed": "true"}, "informed"),
    ({"episode": 12, "informed": True}, "episode"),
    ({"informed": True, "name": "Dupont"}, "name"),
    ({}, "dmp_consultation"),
])
def test_invalid_bodies_name_the_field(body: dict[str, object], field: str):
    with pytest.raises(InvalidInput) as caught:
        parse_change(body)
    assert field in [e.field for e in caught.value.errors]


def test_unknown_mode_is_refused():
    assert parse_mode(None) is AccessMode.NORMAL
    assert parse_mode("centre_15") is AccessMode.CENTRE_15
    with pytest.raises(InvalidInput):
        parse_mode("admin")
