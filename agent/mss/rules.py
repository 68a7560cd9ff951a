"""Who may receive a document by MSSanté: the masking rules of the ANS guide (regles-gestion-mssante), pure.

The guide's matrix, reduced to what the agent controls:
- a document masked to professionals (MASQUE_PS) never goes to a professional's, organisation's or
  applicative mailbox;
- the patient's Mon espace santé mailbox (``<INS>@patient.mssante.fr``) receives it only when the document is
  visible to the patient (INVISIBLE_PATIENT = N);
- the CSE platform (certificats de santé de l'enfant, LGC.CSE.15; ``[mss] cse_address``) is a professional
  recipient like any other.

Every refusal says why, in French, for the doctor. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.domain.ins import key_is_valid, normalize_matricule
from agent.errors import FieldError, InvalidInput

PATIENT_DOMAIN = "patient.mssante.fr"
# Destination keys as the order stores them: "mss:<address>" for a professional, "patient_mss" for the patient.
PATIENT_DESTINATION = "patient_mss"
MSS_PREFIX = "mss:"

# A deliberately strict address shape: MSSanté addresses are plain ASCII local@domain, never display names,
# comments or quoted local parts (a header injection must be impossible by construction).
_ADDRESS = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(\.[A-Za-z0-9\-]{1,63})+$")


class RecipientKind(enum.StrEnum):
    PROFESSIONAL = "professional"  # a professional, an organisation or an applicative mailbox
    PATIENT = "patient"  # the patient's Mon espace santé mailbox


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    kind: RecipientKind

    @property
    def destination(self) -> str:
        return PATIENT_DESTINATION if self.kind is RecipientKind.PATIENT else f"{MSS_PREFIX}{self.address}"


@dataclass(frozen=True, slots=True)
class MaskFlags:
    masked_to_ps: bool = False
    invisible_to_patient: bool = False
    invisible_to_legal_reps: bool = False

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> MaskFlags:
        return cls(bool(data.get("masked_to_ps", False)), bool(data.get("invisible_to_patient", False)),
                   bool(data.get("invisible_to_legal_reps", False)))


def is_valid_address(address: str) -> bool:
    return bool(_ADDRESS.match(address))


def patient_address(ins: str) -> str:
    """The patient's Mon espace santé mailbox: the 15-character INS matricule at patient.mssante.fr."""
    matricule = normalize_matricule(ins)
    if not key_is_valid(matricule):
        raise InvalidInput.field("patient.ins",
                                 "INS invalide : l'adresse de messagerie du patient ne peut être formée.")
    return f"{matricule}@{PATIENT_DOMAIN}"


def is_patient_address(address: str) -> bool:
    return address.lower().endswith("@" + PATIENT_DOMAIN)


def refusal(recipient: Recipient, flags: MaskFlags) -> str | None:
    """Why ``recipient`` may not receive a document with these flags (French), or None when it may."""
    if recipient.kind is RecipientKind.PROFESSIONAL and flags.masked_to_ps:
        return ("Le document est masqué aux professionnels de santé : il ne peut pas être envoyé "
                f"par messagerie à {recipient.address}.")
    if recipient.kind is RecipientKind.PATIENT and flags.invisible_to_patient:
        return ("Le document est invisible pour le patient : il ne peut pas être envoyé dans sa messagerie "
                "Mon espace santé.")
    return None


def plan_recipients(addresses: Iterable[str], *, to_patient: bool, ins: str, flags: MaskFlags,
                    field: str = "destinations.mss") -> list[Recipient]:
    """The order's MSS recipients, checked; an ``InvalidInput`` listing every refusal otherwise.

    Duplicates collapse (one delivery per mailbox). A patient address given among the professional ones is
    treated as the patient's mailbox, so the masking rule cannot be bypassed by spelling it out.
    """
    errors: list[FieldError] = []
    out: list[Recipient] = []
    seen: set[str] = set()
    for index, raw in enumerate(addresses):
        address = raw.strip()
        where = f"{field}[{index}].address"
        if not is_valid_address(address):
            errors.append(FieldError(where, "Adresse MSSanté invalide (forme attendue : nom@domaine.mssante.fr)."))
            continue
        kind = RecipientKind.PATIENT if is_patient_address(address) else RecipientKind.PROFESSIONAL
        recipient = Recipient(address.lower() if kind is RecipientKind.PATIENT else address, kind)
        why = refusal(recipient, flags)
        if why:
            errors.append(FieldError(where, why))
        elif recipient.destination.lower() not in seen:
            seen.add(recipient.destination.lower())
            out.append(recipient)
    if to_patient:
        try:
            recipient = Recipient(patient_address(ins), RecipientKind.PATIENT)
        except InvalidInput as exc:
            errors.extend(FieldError("destinations.patient_mss", e.message) for e in exc.errors)
        else:
            why = refusal(recipient, flags)
            if why:
                errors.append(FieldError("destinations.patient_mss", why))
            elif recipient.destination not in seen:
                seen.add(recipient.destination)
                out.append(recipient)
    if errors:
        raise InvalidInput("Envoi par messagerie sécurisée refusé.", errors=errors, code="mss_refused")
    return out


def recipient_for(destination: str, ins: str) -> Recipient:
    """The recipient behind a stored destination key ("mss:<address>" or "patient_mss")."""
    if destination == PATIENT_DESTINATION:
        return Recipient(patient_address(ins), RecipientKind.PATIENT)
    if destination.startswith(MSS_PREFIX):
        address = destination[len(MSS_PREFIX):]
        kind = RecipientKind.PATIENT if is_patient_address(address) else RecipientKind.PROFESSIONAL
        if is_valid_address(address):
            return Recipient(address, kind)
    raise InvalidInput.field("destination", f"Destination MSSanté inconnue : {destination!r}.")
