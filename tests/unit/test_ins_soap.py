"""INSi messages: what the client sends is what the service reads; answers and faults parse as INSi means them."""

from __future__ import annotations

import datetime as dt

import pytest
from lxml import etree

from agent.domain.ins import OID_INS_NIA, Ins
from agent.domain.traits import IdentityTraits
from agent.errors import PermanentRemoteError, TransientRemoteError
from agent.ins import soap
from agent.ins.soap import CallContext, HistoricIns, InsiAnswer, LpsInfo, VitaleQuery
from relais_sandbox.identities import DEMO_VITALE, MARTIN_LYON, TEST_IDENTITIES
from relais_sandbox.insi import match_traits, match_vitale

CTX = CallContext(message_id="5c1b9c4e-0000-4000-8000-000000000001", now=dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC),
                  emitter="01234567897", lps=LpsInfo(idam="RELAIS01", name="relais", version="0.1", instance="ws-1"))


def test_traits_request_round_trip_and_headers() -> None:
    traits = IdentityTraits("D'ARCY", ("JEAN-PHILIPPE", "LOUIS"), "M", "1990-11-02", "75114")
    data = soap.build_envelope(soap.ACTION_TRAITS, CTX, soap.traits_body(traits))
    root = etree.fromstring(data)
    header = root.find(f"{{{soap.SOAP}}}Header")
    assert header is not None
    action = header.findtext(f"{{{soap.WSA}}}Action")
    assert action == "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
    assert header.findtext(f"{{{soap.WSA}}}MessageID") == f"uuid:{CTX.message_id}"
    lps = header.find(f"{{{soap.CTXLPS}}}ContexteLPS/{{{soap.CTXLPS}}}LPS")
    assert lps is not None and lps.findtext(f"{{{soap.CTXLPS}}}IDAM") == "RELAIS01"
    assert header.find(f"{{{soap.CTXBAM}}}ContexteBAM") is not None
    parsed = soap.parse_request(data)
    assert parsed.emitter == "01234567897" and parsed.assertion is None
    # Only the first given name travels: INSi compares the first birth given name.
    assert parsed.traits == IdentityTraits("D'ARCY", ("JEAN-PHILIPPE",), "M", "1990-11-02", "75114")


def test_vitale_request_round_trip() -> None:
    query = VitaleQuery(insured_nir="279035121518989", birth_name="PAT-TROIS", birth_date="2012-05-04", birth_rank=1)
    parsed = soap.parse_request(soap.build_envelope(soap.ACTION_VITALE, CTX, soap.vitale_body(query)))
    assert parsed.action == soap.ACTION_VITALE and parsed.vitale == query


def test_assertion_has_the_signature_slot_after_the_issuer() -> None:
    assertion = soap.build_assertion(CTX, "_a1")
    children = [etree.QName(child).localname for child in assertion]
    assert children[:3] == ["Issuer", "Signature", "Subject"]
    assert assertion.get("ID") == "_a1"


def test_found_answer_round_trip_with_history() -> None:
    answer = InsiAnswer("00", "OK", Ins("175049912704593", "1.2.250.1.213.1.4.10"),
                        IdentityTraits("FONTAINE", ("THOMAS", "LUCA"), "M", "1975-04-18", "99127"),
                        (HistoricIns(Ins("775049912700329", OID_INS_NIA), "1999-09-01", "2003-02-28"),))
    parsed = soap.parse_answer(soap.build_answer(answer))
    assert parsed == answer
    assert parsed.result == "found" and parsed.history[0].ins.kind == "NIA"


@pytest.mark.parametrize(("code", "result"), [("01", "not_found"), ("02", "several")])
def test_not_found_and_several(code: str, result: str) -> None:
    parsed = soap.parse_answer(soap.build_answer(InsiAnswer(code)))
    assert parsed.result == result and parsed.ins is None


def test_a_fault_is_a_refusal_garbage_is_transient() -> None:
    with pytest.raises(PermanentRemoteError) as refused:
        soap.parse_answer(soap.build_fault("AUTHENTIFICATION", "Jeton absent"))
    assert refused.value.code == "insi_refused" and "Jeton absent" in refused.value.message
    for garbage in (b"\x00<<not xml", b"<a/>", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><x>&e;</x>'):
        with pytest.raises(TransientRemoteError):
            soap.parse_answer(garbage)
    unknown = soap.build_answer(InsiAnswer("00")).replace(b">00<", b">07<")
    with pytest.raises(TransientRemoteError):
        soap.parse_answer(unknown)


def test_simulator_matching_rules() -> None:
    people = list(TEST_IDENTITIES)
    homonyms = IdentityTraits("MARTIN", ("CLAIRE",), "F", "1985-06-12")
    assert len(match_traits(people, homonyms)) == 2
    lyon = IdentityTraits("MARTIN", ("CLAIRE",), "F", "1985-06-12", "69383")
    assert match_traits(people, lyon) == [MARTIN_LYON]
    whole_list = IdentityTraits("LEFEVRE", ("HELENE", "MARIE", "THERESE"), "F", "1955-01-30")
    assert len(match_traits(people, whole_list)) == 1
    second_name_first = IdentityTraits("LEFEVRE", ("MARIE",), "F", "1955-01-30")
    assert match_traits(people, second_name_first) == []
    # Every beneficiary of the demo card INSi knows is found from the card alone; the one it does not know is not.
    for beneficiary in DEMO_VITALE:
        query = VitaleQuery(beneficiary.nir, beneficiary.birth_name, beneficiary.birth_date, beneficiary.birth_rank)
        expected = [beneficiary.person] if beneficiary.person.in_insi else []
        assert match_vitale(query) == expected
