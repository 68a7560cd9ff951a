"""Intake of a send-order: the request body checked field by field and turned into a ``NewOrder``.

Every refusal is an ``InvalidInput`` with French field messages (the LGC shows them to the doctor). The
document's identifiers are fixed here, once: the CDA's own id is the document uniqueId, and a fresh OID is the
submission-set uniqueId; both are stored with the order so every resend is recognisably the same submission.
The CDA's header is read once (``agent.xml.cda_header``) and stored with the order, so no send reads it again;
the content is never logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.domain import dmp_rules
from agent.domain.dmp_params import DmpParameters
from agent.domain.encoding import decode_base64_field
from agent.domain.ins import OID_INS_NIA, OID_INS_NIR, OID_INS_NIR_DEMO, OID_INS_NIR_TEST, IdentityStatus, check_ins
from agent.domain.orders import NewOrder, check_delay
from agent.errors import FieldError, InvalidInput
from agent.xml.cda_header import CdaHeader, parse_cda_header, vaccinations

INS_OIDS = frozenset({OID_INS_NIR, OID_INS_NIA, OID_INS_NIR_TEST, OID_INS_NIR_DEMO})
_RPPS = re.compile(r"^8?\d{11}$")
_MAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
MAX_CLIENT_REF = 200


def national_id(person_id: str) -> str:
    """A professional's national id as CDA and VIHF write it: "8" + an 11-digit RPPS, other ids as they are."""
    return f"8{person_id}" if re.fullmatch(r"\d{11}", person_id) else person_id


def body_hash(body: dict[str, Any]) -> str:
    """The body's fingerprint for client_ref idempotency (canonical JSON, so key order does not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_submission_set_oid() -> str:
    """A UUID-derived OID (ITU-T X.667, arc 2.25): unique without a registry, 44 characters at most."""
    return f"2.25.{uuid.uuid4().int}"


@dataclass(frozen=True)
class Intake:
    allow_test_oids: bool
    default_delay: int
    # The DMP's parameters in force (cumul-invisible_patient-masque_ps, age-majorite, fonctions-gestion-mineurs):
    # the downloaded file's, else [dmp]'s (agent.dmp.params); and today's date (the injected clock's).
    parameters: Callable[[], DmpParameters] = DmpParameters
    today: Callable[[], dt.date] = dt.date.today
    # The VIHF's Identifiant_Structure in indirect mode: a document sent by someone other than its author must
    # have it as the organisation of one of its authors (EX_2.1-1140). Empty (direct mode): not checked.
    structure_id: str = ""
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    new_set_oid: Callable[[], str] = new_submission_set_oid

    def check(self, body: dict[str, Any], cda: bytes, client_name: str, header: CdaHeader | None = None,
              *, fingerprint: str | None = None, default_delay: int | None = None) -> NewOrder:
        """``cda`` is the document to send (decoded, or built by the documents part from ``body["document"]``);
        ``header`` its header when the caller already read it (it is read here otherwise, once);
        ``fingerprint`` the hash of the body as the client sent it (client_ref idempotency), when ``body`` is
        that body with the automatic recipients added; ``default_delay`` the doctor's delay when they chose one
        (the configuration's otherwise)."""
        errors: list[FieldError] = []

        def need(path: str, value: Any, kind: type, message: str) -> Any:
            if not isinstance(value, kind):
                errors.append(FieldError(path, message))
                return None
            return value

        client_ref = body.get("client_ref")
        if client_ref is not None and (not isinstance(client_ref, str) or not 0 < len(client_ref) <= MAX_CLIENT_REF):
            errors.append(FieldError("client_ref", f"Chaîne de 1 à {MAX_CLIENT_REF} caractères attendue."))
        patient = need("patient", body.get("patient"), dict, "Le patient est obligatoire (objet patient).") or {}
        ins = need("patient.ins", patient.get("ins"), str, "Le matricule INS est obligatoire.")
        oid = need("patient.oid", patient.get("oid"), str, "L'OID de l'INS est obligatoire.")
        if ins is not None and oid is not None:
            problems = check_ins(ins, oid, allow_test_oids=self.allow_test_oids)
            errors.extend(FieldError(f"patient.{f}", m) for f, m in problems)
        status = patient.get("identity_status")
        if status not in {s.value for s in IdentityStatus}:
            errors.append(FieldError("patient.identity_status",
                                     "Statut de l'identité attendu : PROV, RECUP, VALI ou QUAL."))
        author = need("author", body.get("author"), dict, "L'auteur est obligatoire (objet author).") or {}
        rpps = author.get("rpps")
        if not isinstance(rpps, str) or not _RPPS.match(rpps):
            errors.append(FieldError("author.rpps", "Le RPPS de l'auteur doit compter 11 chiffres."))
        sender = self._sender(body.get("sender"), errors)
        visibility = body.get("visibility", {})
        if not isinstance(visibility, dict) or any(
                k not in {"masked_to_ps", "invisible_to_patient", "invisible_to_legal_reps"} or not isinstance(v, bool)
                for k, v in visibility.items()):
            errors.append(FieldError("visibility", "Visibilité : masked_to_ps, invisible_to_patient, "
                                                   "invisible_to_legal_reps (booléens)."))
            visibility = {}
        secret = body.get("secret_connection", False)
        if not isinstance(secret, bool):
            errors.append(FieldError("secret_connection", "true ou false attendu."))
            secret = False
        if secret:  # the connexion secrète: every document hidden from the legal representatives
            visibility = {**visibility, "invisible_to_legal_reps": True}
        destinations = self._destinations(body.get("destinations", {}), errors)
        replaces = _replaces(body.get("replaces"), destinations, errors)
        delay = body.get("delay_seconds", self.default_delay if default_delay is None else default_delay)
        reason = check_delay(delay)
        if reason:
            errors.append(FieldError("delay_seconds", reason))
        if errors:
            raise InvalidInput("La demande d'envoi est invalide.", errors=errors)
        if "dmp" in destinations and status != IdentityStatus.QUAL:
            raise InvalidInput.field(
                "patient.identity_status",
                "L'INS n'est pas qualifié : un document ne peut alimenter le DMP qu'avec une identité au statut "
                "« Identité qualifiée » (QUAL).",
                code="ins_not_qualified",
            )
        header = header or parse_cda_header(cda)
        for extension, root in header.patient_ids:
            if root in INS_OIDS and (root != oid or extension != ins):
                raise InvalidInput.field("document.cda_base64",
                                         "L'INS du patient dans le CDA ne correspond pas à celui de la demande.")
        if "dmp" in destinations and sender is not None:
            self._sender_in_document(header, sender)
        if "dmp" in destinations:
            self._dmp_document(header, cda, visibility)
            if replaces == header.unique_id:
                raise InvalidInput.field("replaces", "La nouvelle version doit avoir son propre identifiant "
                                                     "(ClinicalDocument/id) : celui-ci est celui du document remplacé.",
                                         code="replacement_same_id")
            if secret:
                params = self.parameters()
                dmp_rules.check_secret_connection(birth=header.patient_birth or str(patient.get("birth_date", "")),
                                                  today=self.today(), majority_age=params.majority_age,
                                                  type_code=header.type_code.code,
                                                  minors_management=params.minors_management)
        payload = json.dumps({
            "patient": patient, "author": author, "visibility": visibility,
            "cda_base64": base64.b64encode(cda).decode(), "cda_header": header.to_json(),
            **({"secret_connection": True} if secret else {}),
            **({"sender": sender} if sender is not None else {}),
            # TD2.1 replacement (RPLC): the previous version, looked up in ObjectRef mode just before the send.
            **({"replaces": replaces} if replaces else {}),
            # MSSanté message options (body text, no-reply, read receipt), checked by agent.mss.orders.
            **({"mss_message": body["mss_message"]} if isinstance(body.get("mss_message"), dict) else {}),
        }, ensure_ascii=False).encode()
        return NewOrder(
            order_id=self.new_id(), client_ref=client_ref, client_name=client_name,
            body_hash=fingerprint or body_hash(body),
            ins=ins, ins_oid=oid, identity_status=str(status), author_rpps=rpps[-11:],  # type: ignore[index]
            document_unique_id=header.unique_id, submission_set_unique_id=self.new_set_oid(),
            type_code=header.type_code.code, payload=payload, destinations=destinations, delay_seconds=int(delay),
        )

    @staticmethod
    def _sender(raw: Any, errors: list[FieldError]) -> dict[str, Any] | None:
        """The order's sender when not its author ([CDT] 2.1-900); the API schema checked the shape."""
        if raw is None:
            return None
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) and raw.get(k) for k in
                                                ("id", "family", "given")):
            errors.append(FieldError("sender", "Expéditeur : id, family et given sont obligatoires."))
            return None
        return dict(raw)

    def _sender_in_document(self, header: CdaHeader, sender: dict[str, Any]) -> None:
        """[CDT] 2.1-900 / EX_2.1-1140, checked before anything is stored: the sender is one of the CDA's authors
        (in a block of their own), and the authenticated structure is the organisation of one of the authors."""
        national = national_id(str(sender["id"]))
        if national == header.author_id:
            return  # the author sends: the plain case
        dmp_rules.check_sender(national, header.author_ids, self.structure_id, header.institution_ids)

    def _dmp_document(self, header: CdaHeader, cda: bytes, visibility: dict[str, Any]) -> None:
        """The test book's rules on a document bound for the DMP (``agent.domain.dmp_rules``): what the software
        may create, the uniqueId, the visibility, the note de vaccination."""
        type_code = header.type_code.code
        dmp_rules.check_creatable(type_code)
        dmp_rules.check_unique_id(header.unique_id)
        dmp_rules.check_visibility(dmp_rules.Flags.of(visibility), type_code=type_code,
                                   allow_masked_and_invisible=self.parameters().allow_masked_and_invisible)
        if type_code == dmp_rules.VACCINATION_NOTE:
            count, vaccinators, authors = vaccinations(cda)
            dmp_rules.check_vaccination_note(confidentiality=header.confidentiality.code, vaccinations=count,
                                             vaccinators=vaccinators, authors=authors)

    @staticmethod
    def _destinations(raw: Any, errors: list[FieldError]) -> tuple[str, ...]:
        if not isinstance(raw, dict):
            errors.append(FieldError("destinations", "destinations doit être un objet."))
            return ()
        out: list[str] = []
        dmp = raw.get("dmp", True)  # feeding is opt-out
        if not isinstance(dmp, bool):
            errors.append(FieldError("destinations.dmp", "true ou false attendu."))
        elif dmp:
            out.append("dmp")
        mss = raw.get("mss", [])
        if not isinstance(mss, list):
            errors.append(FieldError("destinations.mss", "Une liste de destinataires {address} est attendue."))
            mss = []
        for index, item in enumerate(mss):
            address = item.get("address") if isinstance(item, dict) else None
            if not isinstance(address, str) or not _MAIL.match(address):
                errors.append(FieldError(f"destinations.mss[{index}].address", "Adresse MSSanté invalide."))
            elif f"mss:{address.lower()}" not in out:
                out.append(f"mss:{address.lower()}")
        patient_mss = raw.get("patient_mss", False)
        if not isinstance(patient_mss, bool):
            errors.append(FieldError("destinations.patient_mss", "true ou false attendu."))
        elif patient_mss:
            out.append("patient_mss")
        if not out and not errors:
            errors.append(FieldError("destinations", "Aucun destinataire : indiquez le DMP ou une adresse MSSanté."))
        return tuple(out)


_UUID_URN = re.compile(r"^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _replaces(raw: Any, destinations: tuple[str, ...], errors: list[FieldError]) -> str:
    """``replaces``: the previous version of a document this practice fed to the DMP (TD2.1/TD2.1b, RPLC), by its
    uniqueId (an OID, EX_2.1-1130) or its entryUUID (``urn:uuid:...``); only with the DMP destination."""
    if raw is None:
        return ""
    if not isinstance(raw, str) or not (_UUID_URN.match(raw) or dmp_rules.is_unique_id(raw)):
        errors.append(FieldError("replaces", "Identifiant du document remplacé attendu : son uniqueId (OID) ou son "
                                             "entryUUID (urn:uuid:...)."))
        return ""
    if "dmp" not in destinations:
        errors.append(FieldError("replaces", "Le remplacement d'un document ne concerne que le DMP "
                                             "(destinations.dmp)."))
        return ""
    return raw


def decode_cda(document: dict[str, Any]) -> bytes:
    return decode_base64_field(document.get("cda_base64"), "document.cda_base64",
                               "Le document CDA (cda_base64) est obligatoire.")
