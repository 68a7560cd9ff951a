"""INSi messages: what the client writes is what the simulator's independent reader sees; CNAM answers and faults
parse as the CNAM means them; the search sequence follows the référentiel."""

from __future__ import annotations

import datetime as dt

import pytest
from lxml import etree

from agent.domain.insi_requery import MAX_QUERIES, RequeryPlan
from agent.domain.traits import IdentityTraits
from agent.errors import PermanentRemoteError, TransientRemoteError
from agent.ins import soap
from agent.ins.soap import CallContext, LpsInfo, VitaleQuery
from relais_sandbox.identities import DEMO_CARD, FONTAINE, MARTIN_LYON, TEST_IDENTITIES
from relais_sandbox.insi import found, match_traits, match_vitale
from relais_sandbox.insi_wire import SearchRequest, answer_xml, fault_xml, read_request, refusal, technical_error

CTX = CallContext(message_id="5c1b9c4e-0000-4000-8000-000000000001", now=dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC),
                  emitter="801234567897", lps=LpsInfo(idam="RELAIS01", name="relais", version="0.1", instance="ws-1"))


def test_traits_request_as_the_service_reads_it() -> None:
    traits = IdentityTraits("D'ARTAGNAN DE L'HERAULT", ("PIERRE-ALAIN",), "M", "1990-04-14", "63220")
    data = soap.build_envelope(soap.ACTION_TRAITS, CTX, soap.traits_body(traits), [])
    seen = read_request(data)
    assert seen.action == "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
    assert seen.message_id == f"uuid:{CTX.message_id}" and seen.emitter == "801234567897" and seen.idam == "RELAIS01"
    assert (seen.birth_name, seen.given, seen.sex, seen.birth_date, seen.birth_place) == (
        "D'ARTAGNAN DE L'HERAULT", "PIERRE-ALAIN", "M", "1990-04-14", "63220")
    root = etree.fromstring(data)
    assert root.find(f".//{{{soap.CTXLPS}}}Nom").text == "urn:lps:relais:0.1"  # type: ignore[union-attr]
    assert root.find(f".//{{{soap.CTXBAM}}}ContexteBAM").get("Version") == "01_02"  # type: ignore[union-attr]


def test_several_given_names_travel_space_separated_in_one_prenom() -> None:
    traits = IdentityTraits("LEFEVRE", ("HELENE", "MARIE", "THERESE"), "F", "1955-01-30")
    seen = read_request(soap.build_envelope(soap.ACTION_TRAITS, CTX, soap.traits_body(traits), []))
    assert seen.given == "HELENE MARIE THERESE"


def test_vitale_request_carries_the_coverage_insured_and_beneficiary() -> None:
    query = VitaleQuery(insured_nir="277076322082910", birth_name="NESSI", birth_date="1977-07-14", birth_rank=1,
                        card_serial="468929507")
    seen = read_request(soap.build_envelope(soap.ACTION_VITALE, CTX, soap.vitale_body(query), [], query))
    assert seen.action == "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
    assert (seen.od_number, seen.card_birth_date, seen.rank) == ("2770763220829", "14071977", "1")
    assert (seen.coverage_insured, seen.coverage_birth_date, seen.coverage_rank) == ("2770763220829", "14071977", "1")


def test_found_answer_with_history_as_the_cnam_writes_it() -> None:
    answer = soap.parse_answer(answer_xml("00", found(FONTAINE)))
    assert answer.result == "found" and answer.ins is not None and answer.ins.value == FONTAINE.ins
    assert answer.traits is not None and answer.traits.given_names == FONTAINE.given_names
    assert [h.ins.value for h in answer.history] == [f.value for f in FONTAINE.history]
    assert answer.history[0].ins.kind == "NIA"


@pytest.mark.parametrize(("code", "result"), [("01", "not_found"), ("02", "several")])
def test_not_found_and_several(code: str, result: str) -> None:
    parsed = soap.parse_answer(answer_xml(code))
    assert parsed.result == result and parsed.ins is None


@pytest.mark.parametrize("vitale", [False, True])
def test_siram_40_is_temporary_and_shows_the_insi_code(vitale: bool) -> None:
    with pytest.raises(TransientRemoteError) as failed:
        soap.parse_answer(fault_xml(technical_error(vitale)))
    assert failed.value.code == "insi_temporarily_unavailable"
    assert failed.value.extra["remote"] is not None
    assert failed.value.extra["remote"]["code"] == ("insi_101" if vitale else "insi_102")
    assert failed.value.extra["remote"]["subcode"] == "siram_40" and failed.value.extra["remote"]["severity"] == "fatal"
    assert "momentanément indisponible" in failed.value.message


def test_a_sender_fault_is_a_refusal_with_its_code() -> None:
    with pytest.raises(PermanentRemoteError) as refused:
        soap.parse_answer(fault_xml(refusal("sandbox_authentication", "Jeton absent")))
    assert refused.value.code == "insi_refused" and "Jeton absent" in refused.value.message
    assert refused.value.extra["remote"] == {"code": "sandbox_authentication", "subcode": "sandbox_authentication",
                                    "severity": "fatal", "message": "Jeton absent"}


def test_garbage_is_transient() -> None:
    for garbage in (b"\x00<<not xml", b"<a/>", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><x>&e;</x>'):
        with pytest.raises(TransientRemoteError):
            soap.parse_answer(garbage)
    with pytest.raises(TransientRemoteError):
        soap.parse_answer(answer_xml("00").replace(b">00<", b">07<"))


def _traits_request(traits: IdentityTraits) -> SearchRequest:
    return read_request(soap.build_envelope(soap.ACTION_TRAITS, CTX, soap.traits_body(traits), []))


def test_simulator_matching_rules() -> None:
    people = list(TEST_IDENTITIES)
    assert len(match_traits(people, _traits_request(IdentityTraits("MARTIN", ("CLAIRE",), "F", "1985-06-12")))) == 2
    lyon = IdentityTraits("MARTIN", ("CLAIRE",), "F", "1985-06-12", "69383")
    assert match_traits(people, _traits_request(lyon)) == [MARTIN_LYON]
    whole = IdentityTraits("LEFEVRE", ("HELENE", "MARIE", "THERESE"), "F", "1955-01-30")
    assert len(match_traits(people, _traits_request(whole))) == 1
    assert match_traits(people, _traits_request(IdentityTraits("LEFEVRE", ("MARIE",), "F", "1955-01-30"))) == []
    # Every beneficiary of the demo card INSi knows is found from the card alone; the one it does not know is not.
    for beneficiary in DEMO_CARD.beneficiaries:
        query = VitaleQuery(beneficiary.nir, beneficiary.birth_name, beneficiary.birth_date, beneficiary.birth_rank)
        seen = read_request(soap.build_envelope(soap.ACTION_VITALE, CTX, soap.vitale_body(query), [], query))
        assert match_vitale([DEMO_CARD], seen) == ([beneficiary.person] if beneficiary.person.in_insi else [])


# --- the search sequence (INS référentiel; CNDA INSi 1.07 / 2.07) ------------------------------------------------

def test_not_found_tries_each_other_given_name_then_all_of_them() -> None:
    plan = RequeryPlan(IdentityTraits("LEFEVRE", ("HELENE", "MARIE", "THERESE"), "F", "1955-01-30", "75114"))
    sent = [plan.first().given_names]
    while (following := plan.after("not_found")) is not None:
        sent.append(following.given_names)
        assert following.birth_place is None  # a birth place cannot turn a "not found" into a "found"
    assert sent == [("HELENE",), ("MARIE",), ("THERESE",), ("HELENE", "MARIE", "THERESE")]
    assert plan.missing_trait().startswith("Aucune identité")


def test_several_adds_the_other_given_names_then_the_birth_place() -> None:
    plan = RequeryPlan(IdentityTraits("MARTIN", ("CLAIRE", "ANNE"), "F", "1985-06-12", "69383"))
    plan.first()
    everything = plan.after("several")
    assert everything is not None and everything.given_names == ("CLAIRE", "ANNE") and everything.birth_place is None
    with_place = plan.after("several")
    assert with_place is not None and with_place.birth_place == "69383"
    assert plan.after("found") is None


def test_several_without_a_birth_place_says_which_trait_to_add() -> None:
    plan = RequeryPlan(IdentityTraits("MARTIN", ("CLAIRE",), "F", "1985-06-12"))
    plan.first()
    assert plan.after("several") is None
    assert "ajoutez le lieu de naissance" in plan.missing_trait()


def test_the_sequence_is_bounded() -> None:
    plan = RequeryPlan(IdentityTraits("X", tuple("ABCDEFGHIJ"), "F", "1985-06-12", "69383"))
    count = 1
    plan.first()
    while plan.after("not_found") is not None:
        count += 1
    assert count == MAX_QUERIES
