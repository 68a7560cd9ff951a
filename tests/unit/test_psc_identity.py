"""The professional read from PSC's userinfo, matched to the id_token (pure)."""

from __future__ import annotations

import pytest

from agent.errors import AccessRefused
from agent.psc.identity import identity_from
from relais_sandbox.psc import TEST_USERS, userinfo_claims


def test_the_simulated_userinfo_gives_rpps_profession_and_specialty():
    user = TEST_USERS[1]
    info = userinfo_claims(user)
    identity = identity_from(info, {"sub": info["sub"], "SubjectNameID": user.national_id})
    assert (identity.rpps, identity.national_id, identity.profession, identity.specialty) == (
        user.rpps, f"8{user.rpps}", "10", "SM26")


def test_a_non_rpps_identifier_is_kept_whole_and_an_empty_savoir_faire_is_no_specialty():
    # The shape of a PSC test account (BAS): an "ANS…" identifier, a profession, no savoir-faire.
    info = {"sub": "f:x:ANS2023", "SubjectNameID": "ANS2023", "given_name": "Test", "family_name": "ESSAI",
            "SubjectRefPro": {"exercices": [{"codeProfession": "80", "codeTypeSavoirFaire": "",
                                              "codeSavoirFaire": ""}]}}
    identity = identity_from(info, {"sub": "f:x:ANS2023"})
    assert (identity.rpps, identity.profession, identity.specialty) == ("ANS2023", "80", "")


def test_userinfo_for_another_subject_or_another_professional_is_refused():
    info = userinfo_claims(TEST_USERS[0])
    with pytest.raises(AccessRefused):
        identity_from(info, {"sub": "f:sandbox:someone-else"})
    with pytest.raises(AccessRefused):
        identity_from(info, {"sub": info["sub"], "SubjectNameID": TEST_USERS[1].national_id})
    with pytest.raises(AccessRefused):
        identity_from({"sub": "s"}, {"sub": "s"})  # no national identifier at all
