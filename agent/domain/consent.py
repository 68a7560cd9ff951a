"""The patient's consent, as the DMP rules define it (SC.DMP/CONF.06, .06.BIS, .09.BIS).

Per patient and per care episode the practice records: that the patient was informed, their consent to the
consultation of their DMP (granted or refused; unknown until asked), and their non-opposition (the default) or
opposition to the feeding of their DMP. Each change is a new record with who made it and when; the history is
never rewritten. The rights follow from the latest record: consultation needs a granted consent, feeding is
refused after an opposition. The emergency modes (bris de glace, centre 15) may consult without consent; they are
not a consent and are never stored as one.

Pure rules, stdlib only: no store, no clock (times come in as arguments).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from agent.errors import FieldError, InvalidInput


class Consultation(enum.StrEnum):
    GRANTED = "granted"
    REFUSED = "refused"
    UNKNOWN = "unknown"  # never asked: consultation is not allowed


class Feeding(enum.StrEnum):
    NON_OPPOSITION = "non_opposition"  # the default of the law: documents are sent
    OPPOSITION = "opposition"


class AccessMode(enum.StrEnum):
    NORMAL = "normal"
    BRIS_DE_GLACE = "bris_de_glace"  # emergency: the patient's life is at stake and consent cannot be asked
    CENTRE_15 = "centre_15"  # the regulating doctor of the SAMU (centre 15)

    @property
    def is_emergency(self) -> bool:
        return self is not AccessMode.NORMAL


DEFAULT_EPISODE = ""


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    ins: str
    episode: str
    informed: bool
    dmp_consultation: Consultation
    dmp_feeding: Feeding
    recorded_by: str | None  # RPPS of the professional, None when no CPS was present
    workstation: str
    client: str
    recorded_at: str  # RFC 3339

    def as_dict(self) -> dict[str, Any]:
        return {
            "ins": self.ins,
            "episode": self.episode or None,
            "informed": self.informed,
            "dmp_consultation": self.dmp_consultation.value,
            "dmp_feeding": self.dmp_feeding.value,
            "recorded_by": {"rpps": self.recorded_by, "workstation": self.workstation, "client": self.client},
            "recorded_at": self.recorded_at,
        }


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """What a PUT asks for; a field left out keeps its current value."""

    informed: bool | None = None
    dmp_consultation: Consultation | None = None
    dmp_feeding: Feeding | None = None
    episode: str = DEFAULT_EPISODE


def parse_change(body: Any) -> ConsentChange:
    """Validate a request body; every problem is reported at once, in French."""
    if not isinstance(body, dict):
        raise InvalidInput("Un objet JSON est attendu.")
    errors: list[FieldError] = []
    informed = body.get("informed")
    if informed is not None and not isinstance(informed, bool):
        errors.append(FieldError("informed", "true ou false est attendu."))
    consultation = body.get("dmp_consultation")
    if consultation is not None and consultation not in (Consultation.GRANTED, Consultation.REFUSED):
        errors.append(FieldError("dmp_consultation", "Valeur attendue : « granted » ou « refused »."))
    feeding = body.get("dmp_feeding")
    if feeding is not None and feeding not in (Feeding.NON_OPPOSITION, Feeding.OPPOSITION):
        errors.append(FieldError("dmp_feeding", "Valeur attendue : « non_opposition » ou « opposition »."))
    episode = body.get("episode", DEFAULT_EPISODE)
    if episode is None:
        episode = DEFAULT_EPISODE
    if not isinstance(episode, str) or len(episode) > 128:
        errors.append(FieldError("episode", "Identifiant d'épisode de soins : une chaîne de 128 caractères au plus."))
    unknown = sorted(set(body) - {"informed", "dmp_consultation", "dmp_feeding", "episode"})
    for name in unknown:
        errors.append(FieldError(name, "Champ inconnu."))
    if not errors and informed is None and consultation is None and feeding is None:
        errors.append(FieldError("dmp_consultation", "Rien à enregistrer : indiquez au moins un des champs."))
    if consultation == Consultation.GRANTED and informed is False:
        errors.append(FieldError("informed", "Le consentement suppose que le patient a été informé."))
    if errors:
        raise InvalidInput("Consentement invalide.", errors=errors)
    return ConsentChange(
        informed=informed,
        dmp_consultation=Consultation(consultation) if consultation else None,
        dmp_feeding=Feeding(feeding) if feeding else None,
        episode=str(episode),
    )


def apply_change(
    current: ConsentRecord | None, change: ConsentChange, *, ins: str, recorded_by: str | None,
    workstation: str, client: str, recorded_at: str,
) -> ConsentRecord:
    """The next record: the change over the patient's current state (defaults: not informed, not asked,
    non-opposition). A granted consent implies the patient was informed."""
    informed = current.informed if current else False
    consultation = current.dmp_consultation if current else Consultation.UNKNOWN
    feeding = current.dmp_feeding if current else Feeding.NON_OPPOSITION
    if change.informed is not None:
        informed = change.informed
    if change.dmp_consultation is not None:
        consultation = change.dmp_consultation
    if change.dmp_feeding is not None:
        feeding = change.dmp_feeding
    if consultation is Consultation.GRANTED:
        informed = True
    return ConsentRecord(ins, change.episode, informed, consultation, feeding, recorded_by, workstation, client,
                         recorded_at)


def may_consult(record: ConsentRecord | None, mode: AccessMode) -> bool:
    if mode.is_emergency:
        return True
    return record is not None and record.dmp_consultation is Consultation.GRANTED


def may_feed(record: ConsentRecord | None) -> bool:
    return record is None or record.dmp_feeding is Feeding.NON_OPPOSITION


def parse_mode(value: str | None) -> AccessMode:
    try:
        return AccessMode(value or AccessMode.NORMAL)
    except ValueError:
        raise InvalidInput.field("mode", "Mode d'accès inconnu (normal, bris_de_glace ou centre_15).") from None
