"""DICA: each condition on and off, with the French reason and its contextual link when it is not met."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.domain.consent import AccessMode, Consultation, Feeding
from agent.domain.dica import DicaFacts, evaluate

ALL_MET = DicaFacts(
    ins="279035121518989", cps_present=True, dmp_exists=True, dmp_unknown_reason="", ins_qualified=True,
    consultation=Consultation.GRANTED, feeding=Feeding.NON_OPPOSITION, mode=AccessMode.NORMAL,
    habilitation=True, notice_acknowledged=True,
)


def test_all_conditions_met_reads_and_writes_without_reasons():
    status = evaluate(ALL_MET)
    assert status.can_read and status.can_write
    assert status.reasons == []
    body = status.as_dict()
    assert body["dmp_exists"] is True and body["consent"]["dmp_consultation"] == "granted"


@pytest.mark.parametrize("change, code, can_write", [
    ({"cps_present": False}, "cps_absent", False),
    ({"dmp_exists": False}, "dmp_absent", False),
    ({"dmp_blocked": True}, "dmp_blocked", True),
    ({"dmp_exists": None, "dmp_unknown_reason": "Le DMP n'a pas pu répondre."}, "dmp_unknown", True),
    ({"ins_qualified": False}, "ins_not_qualified", False),
    ({"ins_qualified": None}, "ins_not_qualified", False),
    ({"consultation": Consultation.UNKNOWN}, "consent_missing", True),
    ({"consultation": Consultation.REFUSED}, "consent_refused", True),
    ({"habilitation": False}, "habilitation_denied", True),
    ({"habilitation": None}, "habilitation_denied", True),
    ({"notice_acknowledged": False}, "notice_due", True),
    ({"notice_acknowledged": None}, "notice_due", True),
])
def test_each_unmet_condition_blocks_reading_with_one_reason(change: dict[str, object], code: str, can_write: bool):
    status = evaluate(replace(ALL_MET, **change))  # type: ignore[arg-type]
    assert status.can_read is False
    assert [r.code for r in status.reasons] == [code]
    reason = status.reasons[0]
    assert reason.message and reason.help  # French message, contextual link
    assert status.can_write is can_write


def test_the_unknown_reason_of_the_dmp_is_passed_on():
    status = evaluate(replace(ALL_MET, dmp_exists=None, dmp_unknown_reason="Le DMP n'a pas pu répondre : délai."))
    assert status.reasons[0].message == "Le DMP n'a pas pu répondre : délai."


def test_the_consent_reason_points_to_the_consent_route_of_this_patient():
    status = evaluate(replace(ALL_MET, consultation=Consultation.UNKNOWN))
    assert status.reasons[0].action == {"method": "PUT", "path": "/v1/patients/279035121518989/consent"}


@pytest.mark.parametrize("mode", [AccessMode.BRIS_DE_GLACE, AccessMode.CENTRE_15])
def test_an_emergency_mode_reads_without_consent(mode: AccessMode):
    status = evaluate(replace(ALL_MET, consultation=Consultation.REFUSED, mode=mode))
    assert status.can_read
    assert status.as_dict()["mode"] == mode.value


def test_opposition_to_feeding_blocks_writing_only_and_says_why():
    status = evaluate(replace(ALL_MET, feeding=Feeding.OPPOSITION))
    assert status.can_read is True
    assert status.can_write is False
    assert [r.code for r in status.reasons] == ["feeding_opposed"]


def test_several_unmet_conditions_are_all_listed():
    status = evaluate(replace(ALL_MET, cps_present=False, consultation=Consultation.UNKNOWN, habilitation=None))
    assert [r.code for r in status.reasons] == ["cps_absent", "consent_missing", "habilitation_denied"]
