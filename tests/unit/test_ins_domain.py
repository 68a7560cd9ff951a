"""The INS matricule key, trait normalisation, pre-checks and identity-status transitions."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agent.domain.ins import (
    OID_INS_NIR,
    OID_INS_NIR_TEST,
    IdentityStatus,
    check_ins,
    compute_key,
    key_is_valid,
    matricule_sex,
    normalize_matricule,
)
from agent.domain.traits import (
    IdentityTraits,
    NameKind,
    StatusEvent,
    is_valid_name,
    likely_not_found_causes,
    may_share,
    name_problems,
    next_status,
    normalize_given_names,
    normalize_name,
    parse_traits,
)
from relais_sandbox.identities import TEST_IDENTITIES

TODAY = dt.date(2026, 11, 22)

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
departments = st.one_of(st.text(alphabet="0123456789", min_size=2, max_size=2), st.sampled_from(["2A", "2B"]))
bodies = st.builds(
    lambda sex, rest1, dept, rest2: sex + rest1 + dept + rest2,
    st.sampled_from("123478"),
    st.text(alphabet="0123456789", min_size=4, max_size=4),
    departments,
    st.text(alphabet="0123456789", min_size=6, max_size=6),
)


@given(bodies)
def test_the_computed_key_follows_the_published_rule(body: str) -> None:
    """Clé = 97 - (NIR modulo 97), Corsica's 2A and 2B counted as 19 and 18 (INSEE's rule), checked against an
    oracle written here from the rule rather than against the function itself."""
    numeric = int(body.replace("2A", "19", 1) if body[5:7] == "2A" else
                  body.replace("2B", "18", 1) if body[5:7] == "2B" else body)
    expected = 97 - numeric % 97
    assert compute_key(body) == expected
    assert key_is_valid(f"{body}{expected:02d}")
    assert not key_is_valid(f"{body}{expected % 97 + 1:02d}")


@given(bodies, st.integers(min_value=0, max_value=12), st.integers(min_value=1, max_value=9))
def test_any_single_digit_typo_is_caught(body: str, position: int, shift: int) -> None:
    matricule = f"{body}{compute_key(body):02d}"
    assume(matricule[position].isdigit() and not (position in (5, 6) and matricule[5:7] in ("2A", "2B")))
    typo = matricule[:position] + str((int(matricule[position]) + shift) % 10) + matricule[position + 1:]
    assume(typo[0] in "123478")
    assert not key_is_valid(typo)


@given(bodies, st.integers(min_value=7, max_value=11))
def test_swapping_two_adjacent_digits_is_caught(body: str, position: int) -> None:
    matricule = f"{body}{compute_key(body):02d}"
    a, b = matricule[position], matricule[position + 1]
    if a == b or not (a.isdigit() and b.isdigit()):
        return
    assert not key_is_valid(matricule[:position] + b + a + matricule[position + 2:])


@given(st.text(alphabet="0123456789", min_size=3, max_size=3), st.text(alphabet="0123456789", min_size=6, max_size=6))
def test_corsica_counts_2a_as_19_and_2b_as_18(head: str, tail: str) -> None:
    body = f"1{head[:2]}01"
    assert compute_key(f"{body}2A{tail}") == compute_key(f"{body}19{tail}")
    assert compute_key(f"{body}2B{tail}") == compute_key(f"{body}18{tail}")
    assert compute_key(f"{body}2a{tail}") == compute_key(f"{body}2A{tail}")


def test_known_matricules() -> None:
    assert key_is_valid("279035121518989")  # the ANS test INS of the CI-SIS examples
    assert not key_is_valid("279035121518988")
    assert key_is_valid("297022A02077878")  # a Corsican NIR published with INSi test answers
    assert not key_is_valid("27903512151898")
    assert all(key_is_valid(person.ins) for person in TEST_IDENTITIES)
    assert normalize_matricule(" 2 79 03 51 215 189 89 ") == "279035121518989"
    assert matricule_sex("279035121518989") == "F" and matricule_sex("175049912704593") == "M"


def test_test_oids_only_where_allowed() -> None:
    assert check_ins("279035121518989", OID_INS_NIR, allow_test_oids=False) == []
    assert check_ins("279035121518989", OID_INS_NIR_TEST, allow_test_oids=True) == []
    assert [f for f, _ in check_ins("279035121518989", OID_INS_NIR_TEST, allow_test_oids=False)] == ["oid"]


@pytest.mark.parametrize(("typed", "expected"), [
    ("Lefèvre", "LEFEVRE"),
    ("  d’Arcy ", "D'ARCY"),
    ("D ' ARCY", "D'ARCY"),
    ("Pat – Trois", "PAT-TROIS"),
    ("Dupont -- Durand", "DUPONT--DURAND"),
    ("’t Hooft", "'T HOOFT"),
    ("Cœur", "COEUR"),
    ("Lætitia", "LAETITIA"),
    ("Ñúñez  García", "NUNEZ GARCIA"),
    ("O'Neil-Smith", "O'NEIL-SMITH"),
])
def test_names_are_normalised_as_insi_writes_them(typed: str, expected: str) -> None:
    assert normalize_name(typed) == expected


# SEL-MP-043 §2 / §3.4.1 as the public summary gives them: A-Z, space, apostrophe, hyphen and double hyphen in a
# birth name; an apostrophe may come first; no doubled space or apostrophe; given names take no double hyphen.
letters = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)
separators = st.sampled_from([" ", "-", "'", "--"])
birth_names = st.builds(lambda head, rest: head + "".join(sep + word for sep, word in rest),
                        letters, st.lists(st.tuples(separators, letters), max_size=4))
given_names = st.builds(lambda head, rest: head + "".join(sep + word for sep, word in rest),
                        letters, st.lists(st.tuples(st.sampled_from([" ", "-", "'"]), letters), max_size=3))


@given(birth_names, st.booleans())
def test_every_name_the_referentiel_allows_is_accepted(name: str, leading_apostrophe: bool) -> None:
    name = f"'{name}" if leading_apostrophe else name
    assert name_problems(name, NameKind.BIRTH_NAME) == []
    assert normalize_name(name) == name  # already as INSi writes it: normalising changes nothing


@given(given_names)
def test_every_given_name_the_referentiel_allows_is_accepted(name: str) -> None:
    assert is_valid_name(name, NameKind.GIVEN_NAME)


@given(birth_names, st.sampled_from(["  ", "''", " '", "' ", "---", "1", "É", "_", "."]), birth_names)
def test_a_forbidden_sequence_anywhere_is_refused(head: str, bad: str, tail: str) -> None:
    assert not is_valid_name(head + bad + tail, NameKind.BIRTH_NAME)


@given(birth_names)
def test_a_name_never_starts_with_a_space_or_a_hyphen(name: str) -> None:
    assert not is_valid_name(f"-{name}", NameKind.BIRTH_NAME)
    assert not is_valid_name(f" {name}", NameKind.BIRTH_NAME)


@given(letters, letters)
def test_a_given_name_has_no_double_hyphen_and_no_trailing_hyphen_or_apostrophe(a: str, b: str) -> None:
    assert is_valid_name(f"{a}--{b}", NameKind.BIRTH_NAME)
    assert not is_valid_name(f"{a}--{b}", NameKind.GIVEN_NAME)
    assert not is_valid_name(f"{a}-", NameKind.GIVEN_NAME)
    assert not is_valid_name(f"{a}'", NameKind.GIVEN_NAME)


@given(st.text(max_size=30))
def test_normalising_is_idempotent_and_never_invents_a_valid_name_from_garbage(typed: str) -> None:
    once = normalize_name(typed)
    assert normalize_name(once) == once
    if is_valid_name(once, NameKind.BIRTH_NAME):
        assert all(ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ '-" for ch in once)


def test_referentiel_examples_pass_the_precheck() -> None:
    traits, problems = parse_traits({"birth_name": "Dupont--Durand", "given_names": ["Jean-Marie"], "sex": "M",
                                     "birth_date": "1980-01-01"}, TODAY)
    assert problems == [] and traits is not None and traits.birth_name == "DUPONT--DURAND"
    traits, problems = parse_traits({"birth_name": "'t Hooft", "given_names": ["Gerard"], "sex": "M",
                                     "birth_date": "1946-07-05"}, TODAY)
    assert problems == [] and traits is not None and traits.birth_name == "'T HOOFT"
    _, problems = parse_traits({"birth_name": "Durand", "given_names": ["Jean--Marie"], "sex": "M",
                                "birth_date": "1980-01-01"}, TODAY)
    assert [field for field, _ in problems] == ["traits.given_names"] and "double tiret" in problems[0][1]


def test_given_names_keep_composed_names_whole() -> None:
    assert normalize_given_names("Jean-Pierre  Marie") == ("JEAN-PIERRE", "MARIE")
    assert normalize_given_names(["Hélène", "Marie Thérèse"]) == ("HELENE", "MARIE", "THERESE")


def test_precheck_names_every_bad_field() -> None:
    traits, problems = parse_traits({"birth_name": " ", "given_names": [], "birth_date": "1990-02-30",
                                     "birth_place": "7505"}, TODAY)
    assert traits is None
    assert {field for field, _ in problems} == {"traits.birth_name", "traits.given_names", "traits.sex",
                                               "traits.birth_date", "traits.birth_place"}
    assert all(message and message[0].isupper() for _, message in problems)


@pytest.mark.parametrize("date", ["2026-11-23", "1870-01-01", "15/03/1979", "1979-13-01", ""])
def test_impossible_birth_dates_are_refused(date: str) -> None:
    _, problems = parse_traits({"birth_name": "X", "given_names": ["Y"], "sex": "F", "birth_date": date}, TODAY)
    assert [field for field, _ in problems] == ["traits.birth_date"]


def test_precheck_accepts_and_normalises() -> None:
    traits, problems = parse_traits({"birth_name": "orsoni", "given_names": "jean-baptiste ange", "sex": "m",
                                     "birth_date": "1962-08-15", "birth_place": "2a004"}, TODAY)
    assert problems == []
    assert traits == IdentityTraits("ORSONI", ("JEAN-BAPTISTE", "ANGE"), "M", "1962-08-15", "2A004")


def test_not_found_causes_follow_the_traits() -> None:
    plain = likely_not_found_causes(IdentityTraits("MARTIN", ("CLAIRE",), "F", "1985-06-12"))
    assert len(plain) == 1 and "nom de naissance" in plain[0]
    several = likely_not_found_causes(IdentityTraits("DE LA TOUR", ("ANNE", "MARIE"), "F", "1950-01-01", "99127"))
    joined = " ".join(several)
    for expected in ("premier prénom", "tiret", "1er janvier", "lieu de naissance"):
        assert expected in joined


@pytest.mark.parametrize(("start", "event", "end"), [
    (IdentityStatus.PROV, StatusEvent.INS_RETRIEVED, IdentityStatus.RECUP),
    (IdentityStatus.PROV, StatusEvent.DOCUMENT_CHECKED, IdentityStatus.VALI),
    (IdentityStatus.RECUP, StatusEvent.DOCUMENT_CHECKED, IdentityStatus.QUAL),
    (IdentityStatus.VALI, StatusEvent.INS_RETRIEVED, IdentityStatus.QUAL),
    (IdentityStatus.QUAL, StatusEvent.INS_INVALIDATED, IdentityStatus.VALI),
    (IdentityStatus.RECUP, StatusEvent.INS_INVALIDATED, IdentityStatus.PROV),
    (IdentityStatus.VALI, StatusEvent.INS_INVALIDATED, IdentityStatus.VALI),
    (IdentityStatus.QUAL, StatusEvent.DOUBT, IdentityStatus.PROV),
])
def test_status_transitions(start: IdentityStatus, event: StatusEvent, end: IdentityStatus) -> None:
    assert next_status(start, event) is end


def test_only_qual_is_shared_and_vitale_alone_never_qualifies() -> None:
    status = IdentityStatus.PROV
    for _ in range(3):  # an INS found again and again from the carte Vitale
        status = next_status(status, StatusEvent.INS_RETRIEVED)
    assert status is IdentityStatus.RECUP and not may_share(status)
    assert may_share(next_status(status, StatusEvent.DOCUMENT_CHECKED))
