"""The rules of the CNDA's DMP test book the agent enforces itself, before any call: pure functions.

Each rule names its source in the test book (``../shared/reference/cnda/dmp/``: the MEMENTO and the Phase 2
declarations) and refuses with an ``InvalidInput`` (422) or a ``Conflict`` (409) naming the field, in French, with
the rule's code as the problem's ``rule`` member: the callers (``OrderService``, ``DmpConsultation``) trace every
refusal with it (CONF.14), so the trace says which rule applied. What was refused is never sent.

- identity (EX_GEN-1530, [CDT] 0.2-080): only an INS obtained through INSi reaches a DMP; a NIA never does;
- documents the software must not create (EX_2.1-1010): patient documents, "Données de remboursement", the
  "Historique des vaccinations";
- document uniqueId (MEMENTO "uniqueID", EX_2.1-1130): an OID without extension, 128 characters at most;
- visibility (EX_2.1-1050, MEMENTO "MASQUAGE", EX_3.3-1040/1045) and the note de vaccination (EX_2.1-2005/2010/
  2020/2035).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent.domain.catalogue import class_code_of
from agent.domain.ins import OID_INS_NIA
from agent.errors import AccessRefused, Conflict, FieldError, InvalidInput, NotFound

# The test book's codes, carried by each refusal (problem member ``rule``) and its trace.
RULE_INSI_ONLY = "EX_GEN-1530"
RULE_NIA = "0.2-080"
RULE_NOT_CREATABLE = "EX_2.1-1010"
RULE_UNIQUE_ID = "EX_2.1-1130"
RULE_MASK_AND_INVISIBLE = "EX_2.1-1050"
RULE_NEVER_HIDDEN_AGAIN = "EX_3.3-1040"
RULE_REPLACEMENT = "2.1-140"  # TD2.1b: a document the practice fed, replaced once it is in the DMP
RULE_VACCINATION = "EX_2.1-2005"
RULE_MINOR = "EX_0.1-1100"  # connexion secrète of a minor ([CDT] 0.1-300, 0.1-340, EX_GEN-1550)
RULE_MINOR_PARAMS = "EX_GEN-1550"  # the DMP parameters fonctions-gestion-mineurs and age-majorite
RULE_EXISTENCE = "MEMENTO-TEST-EXISTENCE"  # the MEMENTO's "TEST d'EXISTENCE": TD0.2 before every use
RULE_TD03 = "0.3-010"  # TD0.3 after the patient's consent, on the professional's explicit request

VACCINATION_NOTE = "87273-9"  # typeCode of the note de vaccination (CI-SIS, 2.1-710)
MAX_UNIQUE_ID = 128
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")


def refusal(field: str, message: str, *, code: str, rule: str) -> InvalidInput:
    return InvalidInput(message, errors=[FieldError(field, message)], code=code, rule=rule)


# --- identity ----------------------------------------------------------------------------------------------


def check_identity(ins: str, oid: str, obtained_oid: str | None, *, prefix: str = "patient.") -> None:
    """A DMP call (feed or consultation) for this INS: ``obtained_oid`` is the OID INSi gave with it on this
    workstation (``agent.store.ins_provenance.insi_oid``), None when INSi never gave it. A NIR read from a carte
    Vitale is never obtained through INSi by itself: the LGC must search or verify it there first."""
    if oid == OID_INS_NIA or obtained_oid == OID_INS_NIA:
        raise refusal(f"{prefix}oid", "Patient identifié par un NIA (matricule provisoire, OID 1.2.250.1.213.1.4.9) : "
                                      "aucun accès au DMP ni alimentation du DMP n'est possible.",
                      code="dmp_nia_forbidden", rule=RULE_NIA)
    if obtained_oid is None:
        raise refusal(f"{prefix}ins", "Cet INS n'a pas été obtenu par le téléservice INSi sur ce poste : il ne peut "
                                      "servir ni à consulter ni à alimenter le DMP (le NIR lu sur la carte Vitale ne "
                                      "suffit pas). Recherchez ou vérifiez l'identité par l'INSi d'abord.",
                      code="ins_not_from_insi", rule=RULE_INSI_ONLY)
    if obtained_oid != oid:
        raise refusal(f"{prefix}oid", f"L'OID de l'INS ne correspond pas à celui renvoyé par l'INSi ({obtained_oid}).",
                      code="ins_oid_mismatch", rule=RULE_INSI_ONLY)


# --- the DMP's state (TD0.2) ---------------------------------------------------------------------------------


def check_dmp_open(*, exists: bool, closed: bool, blocked: bool, authorized: bool, need_authorization: bool) -> None:
    """What the TD0.2 made just before says, for this professional (never a cached answer: MEMENTO "TEST
    d'EXISTENCE"): no call to an absent or closed DMP, nor to one that blocked this professional; a consultation
    also needs this professional's authorisation (TD0.3), except in the emergency modes. No public source says an
    emergency mode lifts the patient's block: it does not here."""
    if not exists:
        raise NotFound("Le patient n'a pas de DMP.", code="dmp_absent", rule=RULE_EXISTENCE)
    if closed:
        raise Conflict("Le DMP du patient est fermé : il ne peut être ni consulté ni alimenté.", code="dmp_closed",
                       rule=RULE_EXISTENCE)
    if blocked:
        raise AccessRefused("Le patient a bloqué votre accès à son DMP.", code="dmp_blocked", rule=RULE_EXISTENCE)
    if need_authorization and not authorized:
        raise AccessRefused("Vous n'êtes pas autorisé à consulter le DMP de ce patient : recueillez son consentement, "
                            "puis demandez l'autorisation d'accès (POST /v1/dmp/{ins}/authorization).",
                            code="dmp_not_authorized", rule=RULE_EXISTENCE)


def check_authorization_request(*, consent_granted: bool, explicit: bool) -> None:
    """TD0.3 (adding this professional's authorisation) only once the patient's consent is recorded, and on the
    professional's explicit request: never automatically."""
    if not explicit:
        raise InvalidInput.field("confirm", "La demande d'autorisation d'accès au DMP doit être explicite "
                                            "(confirm: true).")
    if not consent_granted:
        raise AccessRefused("Le consentement du patient à l'accès à son DMP n'est pas enregistré : l'autorisation ne "
                            "peut pas être demandée.", code="consent_missing", rule=RULE_TD03)


# --- documents the software must not create ----------------------------------------------------------------

PATIENT_CLASS = "90"  # documents of the patient's own expression
REFUND_CLASS, REFUND_TYPE = "60", "REMB"  # "Données de remboursement": the health insurance only
HISTORY_CLASS, HISTORY_TYPE = "52", "11369-6"  # "Historique des vaccinations": the DMP makes it itself


RULE_SENDER = "2.1-900"  # a document sent by someone other than its author (2.1-950, EX_2.1-1140)


def check_sender(sender_id: str, author_ids: tuple[str, ...], structure_id: str,
                 institution_ids: tuple[str, ...]) -> None:
    """A document sent by someone other than its author: the sender (national id) is one of the CDA's authors,
    and the structure the DMP authenticates (empty: none to check) is the organisation of one of them."""
    errors: list[FieldError] = []
    if sender_id not in author_ids:
        errors.append(FieldError("sender.id", "L'expéditeur doit figurer parmi les auteurs du document CDA (un bloc "
                                              "author distinct de celui du rédacteur)."))
    if structure_id and structure_id not in institution_ids:
        errors.append(FieldError("author.organisation.id",
                                 f"La structure authentifiée auprès du DMP ({structure_id}) doit être la structure "
                                 "(representedOrganization) de l'un des auteurs du document."))
    if errors:
        raise InvalidInput("Document envoyé par un autre que son auteur : auteurs incohérents.", errors=errors,
                           code="dmp_author_mismatch", rule=RULE_SENDER)


def check_creatable(type_code: str, class_code: str = "", *, field: str = "document.cda_base64") -> None:
    """EX_2.1-1010: refuse a document the DMP does not take from a professional's software. ``class_code`` is the
    one the document would be sent with; empty: the one table's (``agent.domain.catalogue.class_code_of``)."""
    klass = class_code or class_code_of(type_code)
    if klass == PATIENT_CLASS or type_code.upper().startswith("DOCPAT"):
        what = "un document d'expression personnelle du patient"
    elif klass == REFUND_CLASS or type_code.upper() == REFUND_TYPE:
        what = "les « Données de remboursement » (alimentées par l'Assurance Maladie seule)"
    elif klass == HISTORY_CLASS or type_code == HISTORY_TYPE:
        what = ("l'« Historique des vaccinations » (créé par le DMP lui-même ; envoyez une note de vaccination, "
                "87273-9)")
    else:
        return
    raise refusal(field, f"Ce type de document ({type_code}) ne peut pas être créé par un logiciel de "
                         f"professionnel de santé : c'est {what}.", code="dmp_document_not_creatable",
                  rule=RULE_NOT_CREATABLE)


# --- identifiers -------------------------------------------------------------------------------------------


def check_unique_id(unique_id: str, *, field: str = "document.cda_base64") -> None:
    """MEMENTO "uniqueID" and EX_2.1-1130: the DMP takes a document uniqueId as an OID alone (``root`` without
    ``extension``: it does not support OID^extension), at most 128 characters. Not rewritten: the CDA is signed
    and its id is the document's identity for the LGC, so a rewrite would make two identities of one document."""
    if "^" in unique_id:
        raise refusal(field, "L'identifiant du document (ClinicalDocument/id) a une extension : le DMP n'accepte "
                             "qu'un OID seul (<id root=\"OID\"/>, sans attribut extension). Corrigez "
                             "l'identifiant du document dans le logiciel qui le produit.",
                      code="document_id_has_extension", rule=RULE_UNIQUE_ID)
    if len(unique_id) > MAX_UNIQUE_ID:
        raise refusal(field, f"L'identifiant du document dépasse {MAX_UNIQUE_ID} caractères ({len(unique_id)}) : "
                             "le DMP le refuserait.", code="document_id_too_long", rule=RULE_UNIQUE_ID)
    if not _OID.match(unique_id):
        raise refusal(field, "L'identifiant du document (ClinicalDocument/id@root) n'est pas un OID "
                             "(chiffres séparés par des points).", code="document_id_not_oid", rule=RULE_UNIQUE_ID)


def is_unique_id(value: str) -> bool:
    """A document uniqueId the DMP takes: an OID alone, at most 128 characters."""
    return len(value) <= MAX_UNIQUE_ID and bool(_OID.match(value))


# --- visibility --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flags:
    masked_to_ps: bool = False
    invisible_to_patient: bool = False
    invisible_to_legal_reps: bool = False

    @classmethod
    def of(cls, values: Mapping[str, object]) -> Flags:
        return cls(**{k: bool(values.get(k, False)) for k in ("masked_to_ps", "invisible_to_patient",
                                                               "invisible_to_legal_reps")})


def check_visibility(wanted: Flags, *, type_code: str, allow_masked_and_invisible: bool,
                     prefix: str = "visibility.") -> None:
    """The visibility a document is sent or set with (TD2.1, TD3.3a/b)."""
    if type_code == VACCINATION_NOTE and wanted.masked_to_ps:
        raise refusal(f"{prefix}masked_to_ps", "Une note de vaccination ne peut pas être masquée aux professionnels "
                                               "de santé.", code="vaccination_note_masked", rule=RULE_VACCINATION)
    # The DMP parameter cumul-invisible_patient-masque_ps ([CDT] § 3.1.1): the parameters file's (agent.dmp.params).
    if wanted.masked_to_ps and wanted.invisible_to_patient and not allow_masked_and_invisible:
        raise refusal(f"{prefix}invisible_to_patient", "Un document ne peut pas être à la fois masqué aux "
                                                       "professionnels et invisible au patient.",
                      code="masked_and_invisible", rule=RULE_MASK_AND_INVISIBLE)


def check_visibility_change(current: Flags, wanted: Flags, *, prefix: str = "") -> None:
    """MEMENTO "MASQUAGE", EX_3.3-1040/1045: a document once visible to the patient (or to the legal
    representatives) can never be hidden from them again, by TD3.3b nor by a replacement (409)."""
    for name, who in (("invisible_to_patient", "au patient"), ("invisible_to_legal_reps",
                                                               "aux représentants légaux")):
        if not getattr(current, name) and getattr(wanted, name):
            raise Conflict(f"Ce document est déjà visible {who} : il ne peut plus lui être rendu invisible.",
                           code="already_visible", rule=RULE_NEVER_HIDDEN_AGAIN, field=f"{prefix}{name}")


def check_vaccination_note(*, confidentiality: str, vaccinations: int, vaccinators: tuple[str, ...],
                           authors: tuple[str, ...], field: str = "document.cda_base64") -> None:
    """EX_2.1-2005/2010/2020: a note de vaccination records one vaccination, with confidentialityCode N, and its
    vaccinator (the performer), when known, is also one of the document's authors (the XDS authors are the CDA's:
    the same list), so that they may later modify or delete it."""
    if confidentiality != "N":
        raise refusal(field, "Une note de vaccination a le niveau de confidentialité N (normal) seulement.",
                      code="vaccination_note_confidentiality", rule=RULE_VACCINATION)
    if vaccinations != 1:
        raise refusal(field, f"Une note de vaccination contient une seule vaccination ({vaccinations} trouvée(s)) : "
                             "une note par vaccination.", code="vaccination_note_count", rule=RULE_VACCINATION)
    if any(v not in authors for v in vaccinators):
        raise refusal(field, "Le vaccinateur de la note de vaccination doit figurer aussi parmi ses auteurs.",
                      code="vaccination_note_author", rule=RULE_VACCINATION)


# --- minors: the connexion secrète ------------------------------------------------------------------------------


def age_on(birth: str, today: dt.date) -> int | None:
    """Whole years from a birth date (YYYY-MM-DD or the CDA's YYYYMMDD...) to ``today``; None when unreadable."""
    digits = re.sub(r"\D", "", birth)[:8]
    try:
        born = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def check_secret_connection(*, birth: str, today: dt.date, majority_age: int, type_code: str,
                            field: str = "secret_connection", minors_management: bool = True) -> None:
    """The connexion secrète (documents hidden from the legal representatives, the VIHF saying so) is for a minor
    patient only, minority from the DMP parameter age-majorite (the parameters file, else [dmp] majority_age), while
    the DMP parameter fonctions-gestion-mineurs is true (EX_GEN-1550); a note de vaccination is never sent in
    connexion secrète (EX_2.1-2005). The professional's "âge minimum" (EX_0.1-1115) never refuses it."""
    if not minors_management:
        raise refusal(field, "La gestion des mineurs est désactivée par le DMP (paramètre fonctions-gestion-mineurs) : "
                             "pas de connexion secrète.", code="secret_connection_unavailable", rule=RULE_MINOR_PARAMS)
    age = age_on(birth, today)
    if age is None or age >= majority_age:
        raise refusal(field, f"La connexion secrète est réservée aux patients mineurs (moins de {majority_age} ans).",
                      code="secret_connection_adult", rule=RULE_MINOR)
    if type_code == VACCINATION_NOTE:
        raise refusal(field, "Une note de vaccination ne peut pas être envoyée en connexion secrète.",
                      code="vaccination_note_secret", rule=RULE_VACCINATION)
