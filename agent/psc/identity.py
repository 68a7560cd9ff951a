"""The professional a PSC login identifies, read from PSC's userinfo (and checked against the id_token).

PSC's userinfo (industriels.esante.gouv.fr, "Pro Santé Connect / userinfo"): ``SubjectNameID`` and
``preferred_username`` carry the national identifier (``8`` + RPPS for an RPPS holder), ``given_name``,
``family_name``, and ``SubjectRefPro.exercices[]`` the professional's exercises, each with ``codeProfession``
(TRE_G15), ``codeTypeSavoirFaire``/``codeSavoirFaire`` (the specialty, TRE_R38 when the type is ``S``) and
``activities[]`` (the places of exercise). The first exercise is the one used (a choice among several is a
later step: the DMP's VIHF names one profession).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.errors import AccessRefused


@dataclass(frozen=True, slots=True)
class PscIdentity:
    national_id: str  # SubjectNameID: "8" + RPPS
    family_name: str
    given_name: str
    profession: str = ""
    specialty: str = ""
    sector: str = ""
    subject: str = ""  # the OIDC "sub"

    @property
    def rpps(self) -> str:
        """The 11-digit RPPS when the national id is an RPPS one ("8" + 11 digits), else the id itself."""
        nid = self.national_id
        return nid[1:] if len(nid) == 12 and nid.startswith("8") and nid.isdigit() else nid

    def as_dict(self) -> dict[str, str]:
        return {"rpps": self.rpps, "national_id": self.national_id, "family_name": self.family_name,
                "given_name": self.given_name, "profession": self.profession, "specialty": self.specialty}


def identity_from(userinfo: dict[str, Any], id_claims: dict[str, Any]) -> PscIdentity:
    """The identity of a login; refused when userinfo and the id_token do not speak of the same person."""
    sub = str(id_claims.get("sub", ""))
    if not sub or str(userinfo.get("sub", sub)) != sub:  # OpenID Connect Core §5.3.2
        raise AccessRefused("Pro Santé Connect a répondu pour un autre professionnel.", code="psc_subject_mismatch")
    national_id = str(userinfo.get("SubjectNameID") or userinfo.get("preferred_username")
                      or id_claims.get("SubjectNameID") or id_claims.get("preferred_username") or "")
    claimed = id_claims.get("SubjectNameID") or id_claims.get("preferred_username")
    if not national_id or (claimed and str(claimed) != national_id):
        raise AccessRefused("Identifiant national du professionnel absent ou incohérent.",
                            code="psc_subject_mismatch")
    profession = specialty = ""
    ref = userinfo.get("SubjectRefPro")
    exercices = ref.get("exercices") if isinstance(ref, dict) else None
    if isinstance(exercices, list) and exercices and isinstance(exercices[0], dict):
        first = exercices[0]
        profession = str(first.get("codeProfession") or "")
        if str(first.get("codeTypeSavoirFaire") or "S") == "S":
            specialty = str(first.get("codeSavoirFaire") or "")
    if not profession:
        roles = userinfo.get("SubjectRole")
        if isinstance(roles, list) and roles:
            profession = str(roles[0]).partition("^")[0]
    return PscIdentity(national_id=national_id, family_name=str(userinfo.get("family_name") or ""),
                       given_name=str(userinfo.get("given_name") or ""), profession=profession,
                       specialty=specialty, sector=str(userinfo.get("Secteur_Activite") or ""), subject=sub)
