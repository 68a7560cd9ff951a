"""MSSanté rules at order creation (CSE platform recipient, masking, qualified identity for the patient's mailbox),
the catalogue's correspondent proposal, the Annuaire santé answer, and the acknowledgement summary."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.domain.catalogue import CSE_MSS_ADDRESS
from agent.errors import InvalidInput
from agent.mss.directory import check_query, parse_bundle
from agent.mss.orders import document_kind, prepare_order
from agent.mss.part import mss_suggestion
from agent.store import mss_acks
from agent.store.migrations import apply_migrations
from relais_sandbox.directory import _bundle

INS = "279035121518989"


def body(**extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"patient": {"ins": INS, "oid": "1.2.250.1.213.1.4.8", "identity_status": "QUAL"},
                           "document": {"kind": "cse_cs9", "data": {}},
                           "destinations": {"dmp": True, "mss": []}}
    out.update(extra)
    return out


def test_cs9_and_cs24_get_the_cse_platform_cs8_does_not() -> None:
    assert prepare_order(body())["destinations"]["mss"] == [{"address": CSE_MSS_ADDRESS}]
    cs24 = prepare_order(body(document={"kind": "cse_cs24", "data": {}}))
    assert cs24["destinations"]["mss"] == [{"address": CSE_MSS_ADDRESS}]
    assert prepare_order(body(document={"kind": "cse_cs8", "data": {}}))["destinations"]["mss"] == []
    already = body(destinations={"mss": [{"address": CSE_MSS_ADDRESS.upper()}]})
    assert len(prepare_order(already)["destinations"]["mss"]) == 1


def test_the_cse_platform_address_is_configuration() -> None:
    """No public source names the CSE platform's mailbox: [mss] cse_address decides it, empty = none."""
    other = "Certificats@cse.demo.mssante.fr"
    assert prepare_order(body(), cse_address=other)["destinations"]["mss"] == [{"address": other.lower()}]
    assert prepare_order(body(), cse_address="")["destinations"]["mss"] == []
    only_cse: dict[str, Any] = {"document": {"type_code": "11488-4"},
                                "deliveries": [{"destination": f"mss:{other.lower()}"}]}
    assert mss_suggestion(only_cse, other.lower()) is not None  # the platform is no correspondent
    assert mss_suggestion(only_cse) is None  # with the default platform, that address is a correspondent


def test_message_options_are_checked() -> None:
    ok = prepare_order(body(mss_message={"body": "Cher confrère", "patient_no_reply": False}))
    assert ok["mss_message"]["body"] == "Cher confrère"
    with pytest.raises(InvalidInput) as bad:
        prepare_order(body(mss_message={"body": 3, "colour": "red", "patient_body": "x" * 20_001}))
    assert sorted(e.field for e in bad.value.errors) == ["mss_message.body", "mss_message.colour",
                                                          "mss_message.patient_body"]


def test_a_ready_cs9_cda_is_recognised_by_its_template(reference_dir: Path) -> None:
    cda = (reference_dir / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()
    assert document_kind({"cda_base64": base64.b64encode(cda).decode()}) == "cse_cs9"
    assert document_kind({"cda_base64": "not base64!"}) == ""


def test_refusals_at_creation() -> None:
    with pytest.raises(InvalidInput) as masked:
        prepare_order(body(visibility={"masked_to_ps": True}))
    assert masked.value.code == "mss_refused"
    assert "masqué aux professionnels" in masked.value.errors[0].message
    with pytest.raises(InvalidInput) as unqualified:
        prepare_order(body(document={"kind": "n1"}, destinations={"patient_mss": True},
                           patient={"ins": INS, "identity_status": "RECUP"}))
    assert "qualifiée" in unqualified.value.errors[0].message
    ok = prepare_order(body(document={"kind": "n1"}, destinations={"patient_mss": True},
                            visibility={"masked_to_ps": True}))
    assert ok["destinations"]["patient_mss"] is True


def test_correspondent_proposal_from_the_catalogue() -> None:
    consultation: dict[str, Any] = {"document": {"type_code": "11488-4"}, "deliveries": [{"destination": "dmp"}]}
    assert "médecin traitant" in (mss_suggestion(consultation) or "")
    consultation["deliveries"].append({"destination": "mss:dr.x@medecin.mssante.fr"})
    assert mss_suggestion(consultation) is None
    vaccination = {"document": {"type_code": "87273-9"}, "deliveries": [{"destination": "dmp"}]}
    assert mss_suggestion(vaccination) is None


def test_annuaire_bundle_keeps_mss_addresses_only() -> None:
    entries = parse_bundle(_bundle("bernard"))
    assert [(e.name, e.rpps, e.addresses) for e in entries] == [
        ("Dr Louis BERNARD", "810000000045", ("louis.bernard@medecin.demo.mssante.fr",
                                              "cabinet.bernard@demo.mssante.fr"))]
    no_mss = {"resourceType": "Bundle", "entry": [{"resource": {
        "resourceType": "Practitioner", "id": "x", "name": [{"family": "SANS"}],
        "telecom": [{"system": "email", "value": "sans@gmail.com"}]}}]}
    assert parse_bundle(no_mss) == []
    typed = {"resourceType": "Bundle", "entry": [{"resource": {
        "resourceType": "Practitioner", "id": "y", "name": [{"family": "TYPEE"}],
        "telecom": [{"system": "email", "value": "typee@hopital.example.fr",
                     "extension": [{"url": "x", "valueCoding": {"code": "MSSANTE"}}]}]}}]}
    assert parse_bundle(typed)[0].addresses == ("typee@hopital.example.fr",)
    with pytest.raises(ValueError):
        parse_bundle({"resourceType": "Patient"})
    with pytest.raises(InvalidInput):
        check_query(" x ")


def test_mailbox_names_in_modified_utf7() -> None:
    from agent.mss.imap import imap_utf7

    assert imap_utf7("Sent") == "Sent"
    assert imap_utf7("Envoyés") == "Envoy&AOk-s"
    assert imap_utf7("A&B") == "A&-B"
    assert imap_utf7("台北") == "&U,BTFw-"  # RFC 3501's own example


def test_acknowledgements_are_recorded_once_and_summarised() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    apply_migrations(conn)
    row = mss_acks.AckRow("<m1@x>", "dsn", "delivered", "2.0.0", "2026-11-22T08:00:00Z")
    assert mss_acks.record_ack(conn, row, "k1", 0.0)
    assert not mss_acks.record_ack(conn, row, "k1", 1.0)  # the same report read twice
    mss_acks.record_ack(conn, mss_acks.AckRow("<m1@x>", "mdn", "read", "displayed", ""), "k2", 0.0)
    found = mss_acks.acks_for(conn, ["<m1@x>", "<m2@x>"])
    assert [a.kind for a in found["<m1@x>"]] == ["dsn", "mdn"] and found["<m2@x>"] == []
    assert mss_acks.summary(found["<m1@x>"]) == "read"
    assert mss_acks.summary([]) is None
    mss_acks.set_mailbox_position(conn, "INBOX", 7, 42)
    assert mss_acks.mailbox_position(conn, "INBOX") == (7, 42)
