"""The CNDA rules as pure functions (agent.domain.dmp_rules): each refusal names its field and its rule."""

from __future__ import annotations

import pytest

from agent.domain import dmp_rules as rules
from agent.domain.ins import OID_INS_NIA, OID_INS_NIR
from agent.errors import AccessRefused, Conflict, InvalidInput, NotFound

INS = "279035121518989"


def test_identity_insi_only_and_never_a_nia() -> None:
    rules.check_identity(INS, OID_INS_NIR, OID_INS_NIR)
    with pytest.raises(InvalidInput) as nia:
        rules.check_identity(INS, OID_INS_NIA, OID_INS_NIA)
    assert nia.value.code == "dmp_nia_forbidden" and nia.value.extra["rule"] == "0.2-080"
    assert nia.value.errors[0].field == "patient.oid"
    with pytest.raises(InvalidInput) as unknown:
        rules.check_identity(INS, OID_INS_NIR, None, prefix="")
    assert unknown.value.code == "ins_not_from_insi" and unknown.value.errors[0].field == "ins"
    with pytest.raises(InvalidInput) as other:
        rules.check_identity(INS, OID_INS_NIR, "1.2.250.1.213.1.4.10")
    assert other.value.code == "ins_oid_mismatch"


@pytest.mark.parametrize("type_code", ["11369-6", "REMB", "DOCPAT05", "docpat01"])
def test_documents_not_to_create(type_code: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        rules.check_creatable(type_code)
    assert refused.value.extra["rule"] == "EX_2.1-1010" and type_code in refused.value.message


def test_a_class_90_document_is_not_created_and_an_ordinary_one_is() -> None:
    with pytest.raises(InvalidInput):
        rules.check_creatable("12345-6", "90")
    rules.check_creatable("11488-4")
    rules.check_creatable("87273-9")  # the note de vaccination is the way to feed the history


@pytest.mark.parametrize(("unique_id", "code"), [
    ("1.2.3^42", "document_id_has_extension"), ("1." + "1" * 130, "document_id_too_long"),
    ("2.25.abc", "document_id_not_oid"), ("1.02.3", "document_id_not_oid")])
def test_unique_id_is_an_oid_alone_of_at_most_128_characters(unique_id: str, code: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        rules.check_unique_id(unique_id)
    assert refused.value.code == code


def test_a_plain_oid_unique_id_passes() -> None:
    rules.check_unique_id("1.2.250.1.213.1.1.1.46.2023.1.1")
    rules.check_unique_id("2." + "1" * 126)


def test_visibility_rules() -> None:
    both = rules.Flags(masked_to_ps=True, invisible_to_patient=True)
    with pytest.raises(InvalidInput) as refused:
        rules.check_visibility(both, type_code="11488-4", allow_masked_and_invisible=False)
    assert refused.value.errors[0].field == "visibility.invisible_to_patient"
    rules.check_visibility(both, type_code="11488-4", allow_masked_and_invisible=True)  # the DMP parameter allows
    with pytest.raises(InvalidInput) as vaccination:
        rules.check_visibility(rules.Flags(masked_to_ps=True), type_code="87273-9", allow_masked_and_invisible=True)
    assert vaccination.value.code == "vaccination_note_masked"


def test_once_visible_never_hidden_again() -> None:
    with pytest.raises(Conflict) as refused:
        rules.check_visibility_change(rules.Flags(), rules.Flags(invisible_to_legal_reps=True))
    assert refused.value.extra == {"rule": "EX_3.3-1040", "field": "invisible_to_legal_reps"}
    # Making it visible, or keeping it hidden, is allowed.
    rules.check_visibility_change(rules.Flags(invisible_to_patient=True), rules.Flags())
    rules.check_visibility_change(rules.Flags(invisible_to_patient=True), rules.Flags(invisible_to_patient=True))


def test_vaccination_note() -> None:
    ok = {"confidentiality": "N", "vaccinations": 1, "vaccinators": ("801",), "authors": ("810", "801")}
    rules.check_vaccination_note(**ok)  # type: ignore[arg-type]
    for change, code in (({"confidentiality": "R"}, "vaccination_note_confidentiality"),
                         ({"vaccinations": 2}, "vaccination_note_count"),
                         ({"authors": ("810",)}, "vaccination_note_author")):
        with pytest.raises(InvalidInput) as refused:
            rules.check_vaccination_note(**{**ok, **change})  # type: ignore[arg-type]
        assert refused.value.code == code


def test_the_dmp_must_be_open_for_this_professional() -> None:
    rules.check_dmp_open(exists=True, closed=False, blocked=False, authorized=False, need_authorization=False)
    cases = [({"exists": False}, NotFound, "dmp_absent"), ({"closed": True}, Conflict, "dmp_closed"),
             ({"blocked": True}, AccessRefused, "dmp_blocked"),
             ({"authorized": False}, AccessRefused, "dmp_not_authorized")]
    for change, kind, code in cases:
        facts = {"exists": True, "closed": False, "blocked": False, "authorized": True, "need_authorization": True,
                 **change}
        with pytest.raises(kind) as refused:
            rules.check_dmp_open(**facts)
        assert refused.value.code == code


def test_an_authorisation_needs_consent_and_an_explicit_request() -> None:
    rules.check_authorization_request(consent_granted=True, explicit=True)
    with pytest.raises(InvalidInput):
        rules.check_authorization_request(consent_granted=True, explicit=False)
    with pytest.raises(AccessRefused):
        rules.check_authorization_request(consent_granted=False, explicit=True)


def test_the_connexion_secrete_is_for_a_minor_and_never_for_a_vaccination_note() -> None:
    import datetime as dt

    today = dt.date(2026, 12, 7)
    assert rules.age_on("2008-12-08", today) == 17 and rules.age_on("20081207", today) == 18
    assert rules.age_on("inconnue", today) is None
    rules.check_secret_connection(birth="2012-05-04", today=today, majority_age=18, type_code="11488-4")
    for birth, majority, type_code, code in (("2008-12-07", 18, "11488-4", "secret_connection_adult"),
                                             ("2012-05-04", 14, "11488-4", "secret_connection_adult"),
                                             ("", 18, "11488-4", "secret_connection_adult"),
                                             ("2012-05-04", 18, "87273-9", "vaccination_note_secret")):
        with pytest.raises(InvalidInput) as refused:
            rules.check_secret_connection(birth=birth, today=today, majority_age=majority, type_code=type_code)
        assert refused.value.code == code and refused.value.errors[0].field == "secret_connection"


def test_a_unique_id_is_an_oid_alone_of_128_characters_at_most() -> None:
    assert rules.is_unique_id("1.2.250.1.213.1.1.9")
    assert not rules.is_unique_id("1.2.3^ABC") and not rules.is_unique_id("urn:oid:1.2.3")
    assert not rules.is_unique_id("1." + "2." * 64 + "3")
