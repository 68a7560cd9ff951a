"""Intake of a send-order: field checks, identifiers fixed once, the CDA header read with the hardened parser."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.dmp.gateway import sender_of
from agent.domain.delivery import DeliveryJob, Lookup
from agent.domain.ins import OID_INS_NIR
from agent.domain.orders import NewOrder
from agent.errors import InvalidInput
from agent.queue.intake import Intake, body_hash, decode_cda, new_submission_set_oid
from agent.xml.cda_header import parse_cda_header
from agent.xml.safe import UnsafeXml
from tests.support.documents import with_co_author
from tests.support.queue import ins_value, make_cda, order_body

INTAKE = Intake(allow_test_oids=False, default_delay=900, new_id=lambda: "order-1",
                new_set_oid=lambda: "2.25.42")


def check(body: dict[str, Any]) -> NewOrder:
    return INTAKE.check(body, decode_cda(body["document"]), "lgc")


def test_a_valid_order_gets_its_ids_once_and_its_content_in_the_payload_only() -> None:
    cda = make_cda("1.2.3.4.5", extra="contenu")
    body = order_body(cda=cda, delay=None, mss=["Dr.X@medecin.mssante.fr", "dr.x@medecin.mssante.fr"])
    new = check(body)
    assert new.order_id == "order-1" and new.submission_set_unique_id == "2.25.42"
    assert new.document_unique_id == "1.2.3.4.5" and new.type_code == "11488-4"
    assert new.destinations == ("dmp", "mss:dr.x@medecin.mssante.fr")
    assert new.delay_seconds == 900
    payload = json.loads(new.payload)
    assert payload["patient"]["birth_name"] == "TEST" and payload["cda_base64"]


def test_root_and_extension_make_the_unique_id() -> None:
    cda = make_cda("1.2.3").replace(b'<id root="1.2.3"/>', b'<id root="1.2.3" extension="ABC"/>')
    assert parse_cda_header(cda).unique_id == "1.2.3^ABC"


def test_submission_set_oids_are_unique_oids_within_the_xds_length() -> None:
    oids = {new_submission_set_oid() for _ in range(1000)}
    assert len(oids) == 1000
    assert all(o.startswith("2.25.") and len(o) <= 64 - 2 and o[5:].isdigit() for o in oids)


def test_body_hash_ignores_key_order_but_not_content() -> None:
    a = {"x": 1, "y": [1, 2]}
    assert body_hash(a) == body_hash({"y": [1, 2], "x": 1})
    assert body_hash(a) != body_hash({"x": 1, "y": [2, 1]})


def test_feeding_is_opt_out_and_an_order_needs_a_destination() -> None:
    body = order_body()
    del body["destinations"]
    assert check(body).destinations == ("dmp",)
    with pytest.raises(InvalidInput) as caught:
        check(order_body(dmp=False))
    assert caught.value.errors[0].field == "destinations"


def test_dmp_needs_qual_but_mss_alone_does_not() -> None:
    with pytest.raises(InvalidInput) as caught:
        check(order_body(status="VALI"))
    assert caught.value.code == "ins_not_qualified"
    assert check(order_body(status="VALI", dmp=False, mss=["a@b.fr"])).destinations == ("mss:a@b.fr",)


def test_test_oids_only_where_allowed() -> None:
    body = order_body(oid="1.2.250.1.213.1.4.10")
    with pytest.raises(InvalidInput) as caught:
        check(body)
    assert caught.value.errors[0].field == "patient.oid"
    lenient = Intake(allow_test_oids=True, default_delay=0)
    assert lenient.check(body, decode_cda(body["document"]), "lgc").ins_oid == "1.2.250.1.213.1.4.10"


def test_the_cda_must_be_about_this_patient() -> None:
    other = ins_value(7)
    with pytest.raises(InvalidInput, match="ne correspond pas"):
        check(order_body(cda=make_cda(ins=other, oid=OID_INS_NIR)))


@pytest.mark.parametrize("cda", [
    b"<html/>",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><ClinicalDocument xmlns="urn:hl7-org:v3"/>',
    b'<ClinicalDocument xmlns="urn:hl7-org:v3"><code code="1"/></ClinicalDocument>',
])
def test_what_is_not_a_usable_cda_is_refused(cda: bytes) -> None:
    with pytest.raises((InvalidInput, UnsafeXml)):
        parse_cda_header(cda)


def test_base64_is_checked() -> None:
    with pytest.raises(InvalidInput):
        decode_cda({"cda_base64": "not base64!"})
    with pytest.raises(InvalidInput):
        decode_cda({})


SENDER = {"id": "10009999999", "family": "AUTRE", "given": "Bruno"}  # B of [CDT] 2.1-900


def test_cdt_2_1_900_a_sender_among_the_authors_travels_with_the_order_to_the_vihf() -> None:
    intake = Intake(allow_test_oids=False, default_delay=900, structure_id="1750803447")
    ins = ins_value(7)
    cda = with_co_author(make_cda(ins=ins), "810009999999", "AUTRE", "Bruno", organisation_id="1750803447")
    body = order_body(cda=cda, ins=ins)
    body["sender"] = dict(SENDER)
    new = intake.check(body, cda, "lgc")
    job = DeliveryJob.from_payload("o", "dmp", new.author_rpps, Lookup(new.ins, new.ins_oid, "1", "2"), new.payload)
    assert job.sender == SENDER
    who = sender_of(job.sender)
    assert who is not None and who.national_id == "810009999999" and who.family_name == "AUTRE"
    assert sender_of({}) is None  # no sender: the author (the CPS) sends


def test_cdt_2_1_900_a_sender_absent_from_the_cda_authors_is_refused_naming_the_field() -> None:
    intake = Intake(allow_test_oids=False, default_delay=900, structure_id="1750803447")
    ins = ins_value(8)
    body = order_body(cda=make_cda(ins=ins), ins=ins)
    body["sender"] = dict(SENDER)
    with pytest.raises(InvalidInput) as caught:
        intake.check(body, decode_cda(body["document"]), "lgc")
    # make_cda's author names no organisation either: both faults are named at once.
    assert [e.field for e in caught.value.errors] == ["sender.id", "author.organisation.id"]
    assert caught.value.extra["rule"] == "2.1-900"


def test_ex_2_1_1140_the_structure_must_be_an_authors_organisation() -> None:
    intake = Intake(allow_test_oids=False, default_delay=900, structure_id="1750803447")
    ins = ins_value(9)
    cda = with_co_author(make_cda(ins=ins), "810009999999", "AUTRE", "Bruno", organisation_id="1999999999")
    body = order_body(cda=cda, ins=ins)
    body["sender"] = dict(SENDER)
    with pytest.raises(InvalidInput) as caught:
        intake.check(body, cda, "lgc")
    assert [e.field for e in caught.value.errors] == ["author.organisation.id"]
    assert "1750803447" in caught.value.errors[0].message


def test_a_replacement_names_the_previous_version_and_goes_to_the_dmp() -> None:
    """TD2.1b ([CDT] 2.1-140): ``replaces`` is a uniqueId (OID) or an entryUUID, DMP orders only, kept in the
    payload for the delivery; the new version has its own document id."""
    body = {**order_body(cda=make_cda("1.2.3.4.6")), "replaces": "1.2.3.4.5"}
    assert json.loads(check(body).payload)["replaces"] == "1.2.3.4.5"
    uuid_ref = "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"
    assert json.loads(check({**body, "replaces": uuid_ref}).payload)["replaces"] == uuid_ref
    assert "replaces" not in json.loads(check(order_body()).payload)
    for bad in ("1.2.3^X", "urn:uuid:nope", "", 12):
        with pytest.raises(InvalidInput) as caught:
            check({**body, "replaces": bad})
        assert [e.field for e in caught.value.errors] == ["replaces"], bad
    with pytest.raises(InvalidInput) as caught:
        check({**order_body(cda=make_cda("1.2.3.4.6"), dmp=False, mss=["dr.x@medecin.mssante.fr"]),
               "replaces": "1.2.3.4.5"})
    assert [e.field for e in caught.value.errors] == ["replaces"]
    with pytest.raises(InvalidInput) as same:
        check({**body, "replaces": "1.2.3.4.6"})
    assert same.value.code == "replacement_same_id" and same.value.errors[0].field == "replaces"


def test_cdt_2_1_900_a_sender_is_a_delegate_only_when_not_the_author() -> None:
    from agent.domain.delivery import payload_sender, sent_by_delegate

    assert sent_by_delegate(SENDER, "10001234567")
    assert not sent_by_delegate({**SENDER, "id": "10001234567"}, "10001234567")
    assert not sent_by_delegate({**SENDER, "id": "810001234567"}, "10001234567")  # "8" + RPPS: the same person
    assert not sent_by_delegate({}, "10001234567")
    assert payload_sender(json.dumps({"sender": SENDER}).encode()) == SENDER
    assert payload_sender(b'{"patient": {}}') == {}
