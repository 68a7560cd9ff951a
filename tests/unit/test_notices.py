"""CONF.21: the notice text of the seed, and the 180-day schedule at its boundary with an injected clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.clock import FrozenClock, rfc3339
from agent.domain import notices

REQUIRED_BUTTON_TEXT = (
    "Toute consultation de ma part d'un DMP/MES pour lequel le patient (ou son représentant légal) n'a pas donné "
    "son consentement m'expose à des poursuites."
)
SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seeds" / "000_263e46caf5ca09d4.txt"


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_the_button_carries_the_sentence_the_requirement_demands():
    assert REQUIRED_BUTTON_TEXT in notices.BUTTON
    assert notices.BUTTON.startswith("J'ai compris")


def test_the_notice_text_is_the_seed_text_verbatim():
    if not SEED.exists():
        pytest.skip(f"document source absent ({SEED})")
    seed = _flat(SEED.read_text(encoding="utf-8"))
    assert _flat(notices.TEXT) in seed
    assert _flat(REQUIRED_BUTTON_TEXT) in seed


def test_never_acknowledged_is_due():
    clock = FrozenClock()
    state = notices.state("10003456789", None, clock.now())
    assert state.due and state.acknowledged_at is None


def test_due_again_exactly_180_days_after_the_acknowledgement():
    clock = FrozenClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    acknowledged = clock.now()
    clock.advance(timedelta(days=180).total_seconds() - 1)
    state = notices.state("10003456789", acknowledged, clock.now())
    assert state.due is False
    assert state.next_due_at == acknowledged + timedelta(days=180)
    clock.advance(1)
    assert notices.is_due(acknowledged, clock.now()) is True
    assert notices.state("10003456789", acknowledged, clock.now()).due_since == acknowledged + timedelta(days=180)


def test_an_acknowledgement_far_in_the_future_does_not_hide_the_notice():
    clock = FrozenClock()
    assert notices.is_due(clock.now() + timedelta(days=30), clock.now()) is True
    # Clock skew of a few seconds between two reads is not a wrong clock.
    assert notices.is_due(clock.now() + timedelta(seconds=2), clock.now()) is False


def test_the_state_as_served_carries_text_button_and_dates():
    clock = FrozenClock()
    body = notices.state("10003456789", clock.now(), clock.now()).as_dict(rfc3339)
    assert body["id"] == notices.NOTICE_ID
    assert body["button"] == notices.BUTTON
    assert body["due"] is False
    assert body["next_due_at"] == rfc3339(clock.now() + timedelta(days=180))
