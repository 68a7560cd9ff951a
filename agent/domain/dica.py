"""DICA (DMP, INS, Consentement, Autorisation): may this professional consult the patient's DMP, before any click?

SC.DMP/CONF.16 and SC.DMP/UX.13: for each unmet condition the doctor gets a French explanation and a contextual
link to solve it. The conditions here: a CPS is present (the DMP needs the professional's identity), the patient has
a DMP (TD0.2), the INS is qualified, the patient consented (or an emergency mode is used), the habilitation matrix
lets this profession read the DMP, and the CONF.21 notice is acknowledged. Writing (feeding) needs the CPS, a
qualified INS, a DMP that is not known to be absent, and no opposition.

Pure: every fact comes in as an argument; ``None`` means "could not be determined", which never counts as met.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.domain.consent import AccessMode, Consultation, Feeding

# Contextual help: documents named by the Ségur requirements, and the agent's own routes that solve a condition.
HELP_RIGHTS = (
    "https://esante.gouv.fr/sites/default/files/media_entity/documents/"
    "M%C3%A9mo_Synth%C3%A8se%20des%20droits%20et%20r%C3%A8gles%20d%27acc%C3%A8s%20%C3%A0%20Monespacesant%C3%A9_DMP.pdf"
)
HELP_MATRIX = "https://www.dmp.fr/documents/d/dmp/matrice-habilitation"
HELP_MES = "https://www.monespacesante.fr"


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str
    help: str
    action: dict[str, str] | None = None  # the agent route that solves it, when there is one

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "help": self.help}
        if self.action:
            out["action"] = self.action
        return out


@dataclass(frozen=True, slots=True)
class DicaFacts:
    ins: str
    cps_present: bool
    dmp_exists: bool | None
    dmp_unknown_reason: str  # French, when dmp_exists is None
    ins_qualified: bool | None
    consultation: Consultation
    feeding: Feeding
    mode: AccessMode
    habilitation: bool | None  # None without a profession to look up
    notice_acknowledged: bool | None  # None without an RPPS
    dmp_blocked: bool = False  # TD0.2: the patient blocked this professional from their DMP


@dataclass(frozen=True, slots=True)
class DicaStatus:
    can_read: bool
    can_write: bool
    facts: DicaFacts
    reasons: list[Reason] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        f = self.facts
        return {
            "can_read": self.can_read,
            "can_write": self.can_write,
            "dmp_exists": f.dmp_exists,
            "dmp_blocked": f.dmp_blocked,
            "ins_qualified": f.ins_qualified,
            "consent": {"dmp_consultation": f.consultation.value, "dmp_feeding": f.feeding.value},
            "mode": f.mode.value,
            "habilitation": f.habilitation,
            "notice_acknowledged": f.notice_acknowledged,
            "reasons": [r.as_dict() for r in self.reasons],
        }


def evaluate(facts: DicaFacts) -> DicaStatus:
    reasons: list[Reason] = []
    consent_path = f"/v1/patients/{facts.ins}/consent"
    if not facts.cps_present:
        reasons.append(Reason(
            "cps_absent",
            "Aucune carte CPS n'est insérée : le DMP ne peut être consulté qu'avec l'identité du professionnel.",
            "/v1/cards", {"method": "GET", "path": "/v1/cards"}))
    if facts.dmp_exists is False:
        reasons.append(Reason(
            "dmp_absent",
            "Ce patient n'a pas de DMP / Mon espace santé actif (il a pu s'y opposer ou le fermer).", HELP_MES))
    elif facts.dmp_blocked:
        reasons.append(Reason(
            "dmp_blocked",
            "Le patient vous a retiré l'accès à son DMP : seul le patient peut le rétablir (Mon espace santé).",
            HELP_MES))
    elif facts.dmp_exists is None:
        reasons.append(Reason(
            "dmp_unknown",
            facts.dmp_unknown_reason or "L'existence du DMP n'a pas pu être vérifiée.", HELP_MES))
    if facts.ins_qualified is not True:
        reasons.append(Reason(
            "ins_not_qualified",
            "L'identité INS du patient n'est pas qualifiée : interrogez le téléservice INSi et vérifiez une pièce "
            "d'identité avant d'accéder au DMP." if facts.ins_qualified is False else
            "Le statut de l'identité INS n'est pas connu : indiquez-le (identity_status) ou qualifiez l'INS.",
            "/v1/ins/search", {"method": "POST", "path": "/v1/ins/search"}))
    consent_ok = facts.consultation is Consultation.GRANTED or facts.mode.is_emergency
    if not consent_ok:
        message = (
            "Le patient a refusé la consultation de son DMP." if facts.consultation is Consultation.REFUSED else
            "Le consentement du patient à la consultation de son DMP n'est pas enregistré : recueillez-le."
        )
        code = "consent_refused" if facts.consultation is Consultation.REFUSED else "consent_missing"
        reasons.append(Reason(code, message, HELP_RIGHTS, {"method": "PUT", "path": consent_path}))
    if facts.habilitation is not True:
        reasons.append(Reason(
            "habilitation_denied",
            "La matrice d'habilitation ne permet pas à votre profession de consulter le DMP." if
            facts.habilitation is False else
            "La profession du porteur de la CPS est inconnue : la matrice d'habilitation ne peut être appliquée.",
            HELP_MATRIX))
    if facts.notice_acknowledged is not True:
        reasons.append(Reason(
            "notice_due",
            "L'information sur la traçabilité des accès au DMP (tous les 180 jours) doit être lue et validée "
            "(« J'ai compris ») avant toute consultation.",
            "/v1/notices", {"method": "GET", "path": "/v1/notices"}))
    read_blockers = {r.code for r in reasons}
    can_read = not read_blockers
    if facts.feeding is Feeding.OPPOSITION:
        reasons.append(Reason(
            "feeding_opposed", "Le patient s'est opposé à l'alimentation de son DMP : aucun document n'y sera envoyé.",
            HELP_RIGHTS, {"method": "PUT", "path": consent_path}))
    can_write = (facts.cps_present and facts.ins_qualified is True and facts.dmp_exists is not False
                 and facts.feeding is Feeding.NON_OPPOSITION)
    return DicaStatus(can_read, can_write, facts, reasons)
