"""Forwarding messages and their freshness rules, as pure code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.errors import Conflict, InvalidInput
from agent.routing.peers import split_address
from agent.routing.protocol import (
    MAX_HINTS,
    Cancel,
    Forward,
    Freshness,
    Presence,
    check_fresh,
    new_nonce,
    same_rpps,
)

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def forward(**changes: object) -> dict[str, object]:
    message = Forward("order-1", NOW, new_nonce(), "01234567897", {"destinations": ["dmp"]}, b'{"a": 1}').to_json()
    message.update(changes)
    return message


def test_forward_survives_the_wire_with_its_content_intact() -> None:
    original = Forward("order-1", NOW, new_nonce(), "01234567897", {"send_at": 1.5}, b"\x00\xffcontent")
    assert Forward.from_json(original.to_json()) == original


@pytest.mark.parametrize("field,value", [
    ("nonce", "short"), ("nonce", None), ("order_id", "../../etc"), ("author_rpps", "123"),
    ("at", "yesterday"), ("at", "2026-01-05T09:00:00"), ("payload_base64", "***"), ("type", "cancel"),
])
def test_malformed_forwards_are_refused_field_by_field(field: str, value: object) -> None:
    with pytest.raises(InvalidInput):
        Forward.from_json(forward(**{field: value}))


def test_freshness_window_refuses_old_and_future_messages() -> None:
    rules = Freshness(max_age=timedelta(minutes=5), max_skew=timedelta(minutes=2))
    check_fresh(NOW - timedelta(minutes=4, seconds=59), NOW, rules)
    check_fresh(NOW + timedelta(minutes=1), NOW, rules)
    for when in (NOW - timedelta(minutes=5, seconds=1), NOW + timedelta(minutes=2, seconds=1)):
        with pytest.raises(Conflict) as info:
            check_fresh(when, NOW, rules)
        assert info.value.code == "stale"


def test_nonces_are_kept_longer_than_a_message_stays_fresh() -> None:
    rules = Freshness()
    assert rules.keep_nonces > rules.max_age + rules.max_skew


def test_cancel_round_trip_and_type_check() -> None:
    cancel = Cancel("order-1", NOW, new_nonce())
    assert Cancel.from_json(cancel.to_json()) == cancel
    with pytest.raises(InvalidInput):
        Cancel.from_json(forward())


def test_presence_keeps_only_well_formed_address_hints() -> None:
    raw = Presence("Accueil", 7464, None, False, 3, None,
                   (("127.0.0.1", 7465, "Salle"),)).to_json()
    raw["peers"] = [*raw["peers"], ["h", 0, "x"], ["h", "80", "x"], "junk", ["h", 7466]]  # type: ignore[list-item]
    parsed = Presence.from_json(raw)
    assert parsed.peers == (("127.0.0.1", 7465, "Salle"),)
    with pytest.raises(InvalidInput):
        Presence.from_json({**raw, "rpps": "not-rpps"})
    with pytest.raises(InvalidInput):
        Presence.from_json({**raw, "port": 70000})


def test_a_presence_may_only_suggest_addresses_on_the_practice_networks() -> None:
    lan = [["192.168.1.20", 7464, "Salle"], ["10.0.0.3", 7464, "Accueil"], ["fe80::1", 7464, "Box"],
           ["172.16.5.1", 7464, "Bureau"], ["::1", 7465, "Ici"]]
    outside = [["8.8.8.8", 443, "x"], ["evil.example", 7464, "x"], ["0.0.0.0", 7464, "x"], ["224.0.0.251", 5353, "x"],
               ["2a00:1450:4007::1", 7464, "x"], ["100.64.0.1", 7464, "x"], ["localhost", 7464, "x"]]
    raw = Presence("Accueil", 7464, None, False, 3, None).to_json()
    parsed = Presence.from_json({**raw, "peers": outside + lan})
    assert [list(p) for p in parsed.peers] == lan
    many = [["10.0.0.1", port, "Salle"] for port in range(1000, 1100)]
    assert len(Presence.from_json({**raw, "peers": many}).peers) == MAX_HINTS


def test_rpps_match_on_the_national_identifier_forms() -> None:
    assert same_rpps("01234567897", "801234567897")
    assert not same_rpps("01234567897", "01234567898")
    assert not same_rpps(None, "01234567897")


def test_peer_addresses() -> None:
    assert split_address("192.168.1.20:7464") == ("192.168.1.20", 7464)
    assert split_address("[::1]:7464") == ("::1", 7464)
    for bad in ("host", "host:0", "host:port", ":7464"):
        with pytest.raises(InvalidInput):
            split_address(bad)
