"""What the MSSanté part says about a send-order when it is created (pure): the CSE platform recipient added
automatically for a CS9 or CS24 (LGC.CSE.15), and the masking rules checked before anything is stored, so the
LGC gets a 422 naming the refused recipient and the reason, in French.

With an identity that is not qualified (PROV, RECUP, VALI), the INS matricule and OID must reference neither the
document nor the message (INS/va1.53): a CDA whose recordTarget carries an INS is refused for MSSanté.
"""

from __future__ import annotations

import base64
import binascii
import copy
from typing import Any

from agent.domain import catalogue
from agent.domain.ins import PRODUCTION_OIDS, TEST_OIDS
from agent.errors import FieldError, InvalidInput
from agent.mss import rules
from agent.xml.safe import parse

HL7 = "urn:hl7-org:v3"
INS_OIDS = PRODUCTION_OIDS | TEST_OIDS
# CDA templateIds of the certificats de santé de l'enfant -> the catalogue's kinds.
CSE_TEMPLATES = {"1.2.250.1.213.1.1.1.5.1": "cse_cs8", "1.2.250.1.213.1.1.1.5.2": "cse_cs9",
                 "1.2.250.1.213.1.1.1.5.3": "cse_cs24"}


def _ready_cda(document: Any, root: Any = None) -> Any:
    """The root of the order's ready CDA (``cda_base64``), or None (built later, or unreadable: the intake says);
    ``root`` when the caller already parsed it."""
    if root is not None:
        return root
    raw = document.get("cda_base64") if isinstance(document, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        return parse(base64.b64decode(raw, validate=True), what="CDA")
    except (binascii.Error, ValueError, InvalidInput):
        return None


def cda_carries_ins(document: Any, cda_root: Any = None) -> bool:
    """Whether the ready CDA's recordTarget names the patient by an INS (matricule and INS OID)."""
    root = _ready_cda(document, cda_root)
    if root is None:
        return False
    ids = root.iterfind(f"{{{HL7}}}recordTarget/{{{HL7}}}patientRole/{{{HL7}}}id")
    return any(i.get("root", "") in INS_OIDS for i in ids)


def document_kind(document: Any, cda_root: Any = None) -> str:
    """The catalogue kind of the order's document: given (``{kind, data}``), or read from a ready CDA."""
    if not isinstance(document, dict):
        return ""
    if isinstance(document.get("kind"), str):
        return str(document["kind"])
    root = _ready_cda(document, cda_root)
    if root is None:
        return ""
    for template in root.findall(f"{{{HL7}}}templateId"):
        kind = CSE_TEMPLATES.get(template.get("root", ""))
        if kind:
            return kind
    return ""


NOT_QUALIFIED_CDA = ("L'identité du patient n'est pas qualifiée : le document ne doit pas porter l'INS (matricule et "
                     "OID) pour être envoyé par messagerie ; identifiez le patient par l'identifiant local du "
                     "logiciel (INS/va1.53).")
# What an order's answer says about its MSS deliveries when the identity is not qualified.
NOT_QUALIFIED_NOTE = ("Identité non qualifiée : l'INS n'est transmis ni dans le document ni dans le message "
                      "(X-MSS-INS : N) ; le patient y est désigné par l'identifiant local du document.")


MESSAGE_KEYS = {"body": str, "patient_body": str, "patient_no_reply": bool, "read_receipt": bool, "subject": str}
MAX_BODY_CHARS = 20_000
MAX_SUBJECT_CHARS = 150


def message_errors(message: Any) -> list[FieldError]:
    """``mss_message``: the mail's text for professionals (CORPSMAIL_PS) and for the patient (CORPSMAIL_PATIENT),
    X-MSS-MES: FIN to the patient (``patient_no_reply``), and the read receipt (ACK_LECTURE_MSS)."""
    if message is None:
        return []
    if not isinstance(message, dict):
        return [FieldError("mss_message", "mss_message doit être un objet.")]
    errors: list[FieldError] = []
    for key, value in message.items():
        kind = MESSAGE_KEYS.get(key)
        if kind is None:
            errors.append(FieldError(f"mss_message.{key}", "Champ inconnu (subject, body, patient_body, "
                                                           "patient_no_reply, read_receipt)."))
        elif not isinstance(value, kind):
            errors.append(FieldError(f"mss_message.{key}",
                                     "Texte attendu." if kind is str else "true ou false attendu."))
        elif key == "subject" and isinstance(value, str) and (
                len(value) > MAX_SUBJECT_CHARS or any(c in value for c in "\r\n\x00")):
            errors.append(FieldError("mss_message.subject",
                                     f"Objet sur une ligne, de {MAX_SUBJECT_CHARS} caractères au plus."))
        elif isinstance(value, str) and (len(value) > MAX_BODY_CHARS or "\x00" in value):
            errors.append(FieldError(f"mss_message.{key}", f"Texte de {MAX_BODY_CHARS} caractères au plus."))
    return errors


def prepare_order(body: dict[str, Any], *, cse_address: str = catalogue.CSE_MSS_ADDRESS,
                  cda_root: Any = None) -> dict[str, Any]:
    """The order body with its automatic MSS recipients, after the masking rules; raises ``InvalidInput``.
    ``cda_root``: the body's ready CDA, already parsed by the caller (``agent.xml.cda_header.read_ready_cda``).

    Applied whether or not MSSanté is configured yet: like the DMP's, MSS deliveries then wait in the queue
    until it is (the order's JSON says so in ``mss_warning``). ``cse_address``: ``[mss] cse_address``."""
    if "destinations" in body and not isinstance(body["destinations"], dict):
        return body  # the intake reports the shape error (null included: it answered 500)
    out = copy.deepcopy(body)
    dest: dict[str, Any] = out.setdefault("destinations", {})
    mss = dest.get("mss", [])
    if not isinstance(mss, list):
        return body
    cse = catalogue.cse_mss_recipient(document_kind(out.get("document"), cda_root), cse_address)
    addresses = [str(item.get("address", "")) for item in mss if isinstance(item, dict)]
    if cse and cse not in {a.strip().lower() for a in addresses}:
        mss.append({"address": cse})
        dest["mss"] = mss
        addresses.append(cse)
    to_patient = dest.get("patient_mss") is True
    if not addresses and not to_patient:
        problems = message_errors(out.get("mss_message"))
        if problems:
            raise InvalidInput("Options du message MSSanté invalides.", errors=problems)
        return out
    patient = out.get("patient") if isinstance(out.get("patient"), dict) else {}
    assert isinstance(patient, dict)
    visibility = out.get("visibility") if isinstance(out.get("visibility"), dict) else {}
    assert isinstance(visibility, dict)
    errors: list[FieldError] = message_errors(out.get("mss_message"))
    if to_patient and patient.get("identity_status") != "QUAL":
        errors.append(FieldError("destinations.patient_mss",
                                 "L'identité du patient doit être qualifiée (INS qualifiée) pour écrire dans sa "
                                 "messagerie Mon espace santé."))
    if patient.get("identity_status") != "QUAL" and cda_carries_ins(out.get("document"), cda_root):
        errors.append(FieldError("document.cda_base64", NOT_QUALIFIED_CDA))
    try:
        rules.plan_recipients(addresses, to_patient=to_patient and not errors, ins=str(patient.get("ins", "")),
                              flags=rules.MaskFlags.from_mapping(visibility))
    except InvalidInput as exc:
        errors.extend(exc.errors)
    if errors:
        raise InvalidInput("Envoi par messagerie sécurisée refusé.", errors=errors, code="mss_refused")
    return out
