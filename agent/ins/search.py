"""INSi use cases on top of the client: who calls (the assertion's content), the search sequence, verification.

- ``cps_caller`` / ``structure_caller``: the professional's assertion from the CPS (CPx endpoint) or from the
  structure's INSI-AUTO / INSI-MANU certificate (mutual-TLS endpoint). A doctor's call without
  ``codeSpecialiteAMO``, or any call without ``identifiantFacturation``, is refused before INSi sees it: the CNAM
  would refuse it too, after counting it.
- ``search_traits``: ``RequeryPlan`` played against INSi; every attempt is reported (``attempts``).
- ``verify``: one search with the record's full traits; "match" only when INSi returns this very INS as the
  active one AND the traits it holds are the record's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.domain.ins import Ins
from agent.domain.insi_requery import RequeryPlan
from agent.domain.signing import Signer
from agent.domain.traits import IdentityTraits, traits_differences
from agent.errors import Unavailable
from agent.ins.assertion import ProfessionalIdentity, subject_dn
from agent.ins.client import Caller, InsiClient, InsiSettings
from agent.ins.soap import CR_FOUND, InsiAnswer

DOCTOR = "10"  # TRE_G15 profession code of médecins (and of doctors in training)


def _not_configured(key: str, what: str) -> Unavailable:
    return Unavailable(f"{what} n'est pas configuré : renseignez la clé [insi] {key} du fichier de configuration "
                       "(l'INSi refuserait l'appel).", code="insi_not_configured")


def cps_caller(settings: InsiSettings, signer: Signer, national_id: str, profession: str) -> Caller:
    if not settings.billing_id:
        raise _not_configured("billing_id", "L'identifiant de facturation (identifiantFacturation)")
    if profession == DOCTOR and not settings.amo_specialty:
        raise _not_configured("amo_specialty", "Le code spécialité AMO du médecin (codeSpecialiteAMO)")
    who = ProfessionalIdentity(subject_dn(signer.certificate_der), national_id, settings.cps_name_qualifier,
                               settings.billing_id, settings.amo_specialty, settings.activity_sector)
    return Caller(signer, national_id, who, "cpx")


def structure_caller(settings: InsiSettings, signer: Signer, structure_id: str) -> Caller:
    if not settings.billing_id:
        raise _not_configured("billing_id", "L'identifiant de facturation (identifiantFacturation)")
    who = ProfessionalIdentity(subject_dn(signer.certificate_der), structure_id, settings.structure_name_qualifier,
                               settings.billing_id, settings.amo_specialty, settings.activity_sector)
    return Caller(signer, structure_id, who, "mtls")


@dataclass
class SearchOutcome:
    answer: InsiAnswer
    attempts: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""  # French, when no single identity came back


async def search_traits(client: InsiClient, typed: IdentityTraits, caller: Caller) -> SearchOutcome:
    plan = RequeryPlan(typed)
    query = plan.first()
    attempts: list[dict[str, Any]] = []
    while True:
        answer = await client.search_traits(query.traits(typed), caller)
        attempts.append({**query.as_dict(), "result": answer.result, "insi_code": answer.code})
        following = plan.after(answer.result)
        if following is None:
            break
        query = following
    message = "" if answer.code == CR_FOUND else plan.missing_trait()
    if answer.code != CR_FOUND and plan.saw_several:
        # The last attempt may say "not found" after a "several": the doctor must add a trait, not retype.
        answer = InsiAnswer("02", answer.label)
    return SearchOutcome(answer, attempts, message)


@dataclass
class VerifyOutcome:
    result: str  # match, mismatch, not_found
    answer: InsiAnswer
    ins_matches: bool = False
    replaced: bool = False
    differences: list[str] = field(default_factory=list)


async def verify(client: InsiClient, ins: Ins, traits: IdentityTraits, caller: Caller) -> VerifyOutcome:
    answer = await client.search_traits(traits, caller)
    if answer.code != CR_FOUND or answer.ins is None:
        return VerifyOutcome("not_found", answer)
    same = answer.ins.value == ins.value
    replaced = not same and any(h.ins.value == ins.value for h in answer.history)
    differences = traits_differences(traits, answer.traits, all_given_names=True) if answer.traits else []
    if same and not differences:
        return VerifyOutcome("match", answer, ins_matches=True)
    return VerifyOutcome("mismatch", answer, ins_matches=same, replaced=replaced, differences=differences)
