"""The order state machine and retry timing: pure rules."""

from __future__ import annotations

import pytest

from agent.domain.orders import (
    DeliveryState as S,
)
from agent.domain.orders import (
    Event,
    attempts_exhausted,
    backoff_seconds,
    cancel_refusal,
    check_delay,
    next_state,
    service_pause_seconds,
    summary_state,
)
from agent.errors import Conflict


@pytest.mark.parametrize(("state", "event", "expected"), [
    (S.SCHEDULED, Event.RELEASE, S.READY),
    (S.READY, Event.CLAIM, S.SENDING),
    (S.SENDING, Event.DELIVERED, S.SENT),
    (S.SENDING, Event.TRANSIENT, S.RETRYING),
    (S.SENDING, Event.OFFLINE, S.WAITING_NETWORK),
    (S.SENDING, Event.PERMANENT, S.FAILED),
    (S.SENDING, Event.RECOVER, S.READY),
    (S.RETRYING, Event.BACKOFF_ELAPSED, S.READY),
    (S.WAITING_NETWORK, Event.NETWORK_BACK, S.READY),
    (S.WAITING_NETWORK, Event.DELIVERED, S.SENT),
    (S.READY, Event.CARD_MISSING, S.WAITING_CARD),
    (S.WAITING_CARD, Event.CARD_BACK, S.READY),
    (S.FAILED, Event.RETRY, S.READY),
    (S.SCHEDULED, Event.CANCEL, S.CANCELLED),
    (S.FAILED, Event.CANCEL, S.CANCELLED),
])
def test_allowed_transitions(state: S, event: Event, expected: S) -> None:
    assert next_state(state, event) is expected


@pytest.mark.parametrize(("state", "code"), [
    (S.SENDING, "already_sending"), (S.SENT, "already_sent"), (S.CANCELLED, "already_cancelled"),
])
def test_cancel_is_refused_once_the_document_left(state: S, code: str) -> None:
    with pytest.raises(Conflict) as caught:
        next_state(state, Event.CANCEL)
    assert caught.value.code == code
    assert "annul" in caught.value.message  # French, for the doctor


def test_a_cancelled_delivery_can_never_be_sent() -> None:
    for event in Event:
        if event is not Event.CANCEL:
            with pytest.raises(Conflict):
                next_state(S.CANCELLED, event)


def test_a_sent_delivery_is_final() -> None:
    """Except when the recipient's MSSanté operator bounces the mail (a failed DSN): it then never arrived."""
    for event in Event:
        if event is Event.BOUNCED:
            assert next_state(S.SENT, event) is S.FAILED
            continue
        with pytest.raises(Conflict):
            next_state(S.SENT, event)


def test_cancel_of_an_order_is_all_or_nothing() -> None:
    assert cancel_refusal([S.SCHEDULED, S.SCHEDULED]) is None
    assert cancel_refusal([S.SCHEDULED, S.SENDING]) == "already_sending"
    assert cancel_refusal([S.SENT, S.RETRYING]) == "already_sent"
    assert cancel_refusal([S.CANCELLED]) is None


def test_summary_state_shows_the_most_pressing_delivery() -> None:
    assert summary_state([S.SENT, S.FAILED]) is S.FAILED
    assert summary_state([S.SENT, S.CANCELLED]) is S.SENT
    assert summary_state([S.SCHEDULED]) is S.SCHEDULED
    assert summary_state([S.WAITING_NETWORK, S.SENT]) is S.WAITING_NETWORK


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 30.0), (2, 60.0), (3, 120.0), (8, 3600.0), (500, 3600.0)])
def test_backoff_is_full_jitter_under_a_capped_exponential(attempt: int, ceiling: float) -> None:
    assert backoff_seconds(attempt, base=30, cap=3600, rand=lambda: 0.0) == 0.0
    top = backoff_seconds(attempt, base=30, cap=3600, rand=lambda: 0.999999)
    assert ceiling * 0.999 < top <= ceiling
    assert backoff_seconds(attempt, base=30, cap=3600, rand=lambda: 0.5) == pytest.approx(ceiling / 2)


def test_backoff_counts_attempts_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_seconds(0, base=1, cap=2, rand=lambda: 0.5)


@pytest.mark.parametrize("failures", [1, 2, 5, 30, 10_000])
def test_a_failing_service_pause_never_falls_under_half_its_capped_ceiling(failures: int) -> None:
    ceiling = min(900.0, 30.0 * 2 ** min(failures - 1, 62))
    assert service_pause_seconds(failures, base=30, cap=900, rand=lambda: 0.0) == ceiling / 2
    assert service_pause_seconds(failures, base=30, cap=900, rand=lambda: 0.999999) <= ceiling


def test_attempts_are_never_exhausted_when_unlimited() -> None:
    assert not attempts_exhausted(10_000, 0)


def test_attempts_exhausted_after_the_configured_count() -> None:
    assert not attempts_exhausted(7, 8)
    assert attempts_exhausted(8, 8)


@pytest.mark.parametrize(("value", "ok"), [(0, True), (900, True), (604800, True), (-1, False), (604801, False),
                                           (True, False), ("900", False), (1.5, False)])
def test_per_order_delay_bounds(value: object, ok: bool) -> None:
    assert (check_delay(value) is None) is ok
