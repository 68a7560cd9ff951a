"""What the DMP client takes and gives back: plain records, no XML, no sockets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.domain.signing import Signer
from agent.xml.cda_header import CdaHeader

# XDS availability statuses (ebRIM), and the DMP's archived status (TD3.3d).
STATUS_APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
STATUS_DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
STATUS_ARCHIVED = "urn:asip:ci-sis:2010:StatusType:Archived"
# TD3.3c: the DMP "deletes" by an ITI-57 status change to this status ([CDT] 3.3-070/540, PDSM4DMP, DRIMbox).
STATUS_DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
STATUS_NAMES = {STATUS_APPROVED: "approved", STATUS_DEPRECATED: "deprecated", STATUS_ARCHIVED: "archived",
                STATUS_DELETED: "deleted"}
STATUS_URNS = {name: urn for urn, name in STATUS_NAMES.items()}


@dataclass(frozen=True, slots=True)
class Visibility:
    """The DMP masking codes of JDV_J08 (confidentialityCode, system 1.2.250.1.213.1.1.4.13)."""

    masked_to_ps: bool = False  # MASQUE_PS: hidden from other professionals
    invisible_to_patient: bool = False  # INVISIBLE_PATIENT
    invisible_to_legal_reps: bool = False  # INVISIBLE_REPRESENTANTS_LEGAUX

    def as_dict(self) -> dict[str, bool]:
        return {"masked_to_ps": self.masked_to_ps, "invisible_to_patient": self.invisible_to_patient,
                "invisible_to_legal_reps": self.invisible_to_legal_reps}

    @property
    def label(self) -> str:
        """One word for lists: the most restrictive flag set, else "normal"."""
        if self.invisible_to_patient:
            return "invisible_to_patient"
        if self.invisible_to_legal_reps:
            return "invisible_to_legal_reps"
        if self.masked_to_ps:
            return "masked_to_ps"
        return "normal"


@dataclass(frozen=True, slots=True)
class Access:
    """How this request reaches the DMP: the access mode (normal, bris_de_glace, centre15) goes to the VIHF's
    PurposeOfUse; ``secret`` is the connexion secrète of a minor (documents hidden from the legal representatives)."""

    mode: str = "normal"
    secret: bool = False
    reason: str = ""  # why bris de glace / centre 15 (the VIHF carries it when configured: vihf.VihfSettings)


NORMAL_ACCESS = Access()


@dataclass(frozen=True, slots=True)
class Professional:
    """The professional the VIHF speaks for (from the CPS, or the demo configuration)."""

    rpps: str  # the national id as in the CPS: "8" + RPPS (11 digits)
    family_name: str
    given_name: str
    profession: str = "10"  # TRE_G15 ProfessionSante: 10 = médecin
    specialty: str = "SM26"  # TRE_R38 savoir-faire: SM26 = médecine générale
    role: str = ""
    via_psc: bool = False  # identified through Pro Santé Connect (no card): the DMP's PSC mode (dmp/psc.py)

    @property
    def national_id(self) -> str:
        """ "8" + RPPS; an id that is not an RPPS (establishment staff: "3" + structure + "/" + local id) as is."""
        return self.rpps if self.rpps.startswith("8") or not self.rpps.isdigit() else f"8{self.rpps}"


@dataclass(frozen=True, slots=True)
class SubmissionRequest:
    """One ITI-41 submission (TD2.1) of one CDA, with the ids the queue fixed when the order was created."""

    cda: bytes
    submission_set_unique_id: str  # an OID, fixed at order creation (idempotency key)
    document_unique_id: str  # the CDA's id (root or root^extension), fixed at order creation
    ins: str  # 15-character matricule
    ins_oid: str
    visibility: Visibility = field(default_factory=Visibility)
    replaces_entry_uuid: str | None = None  # TD2.1 replacement: the entryUUID of the previous version
    signer: Signer | None = None  # signs the submission set (IHE DSG); None: the client's default signer
    professional: Professional | None = None  # who the VIHF speaks for; None: the client's default
    header: CdaHeader | None = None  # the CDA's header as read when the order was created; None: read it here
    access: Access = NORMAL_ACCESS  # connexion secrète of a minor: the VIHF says so


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    document_entry_uuid: str
    submission_set_entry_uuid: str
    signature_entry_uuid: str
    document_unique_id: str
    submission_set_unique_id: str

    @property
    def entry_uuid(self) -> str:
        return self.document_entry_uuid

    @property
    def entry_uuids(self) -> list[str]:
        return [self.document_entry_uuid, self.signature_entry_uuid, self.submission_set_entry_uuid]


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """An XDS DocumentEntry as a registry returns it (TD3.1)."""

    entry_uuid: str
    unique_id: str
    patient_id: str = ""
    type_code: str = ""
    class_code: str = ""
    format_code: str = ""
    title: str = ""
    author: str = ""  # "family given" of the first author person
    author_id: str = ""  # the author's national id (8 + RPPS)
    creation_time: str = ""  # RFC 3339
    service_start: str = ""
    service_stop: str = ""
    status: str = "approved"  # approved, deprecated, archived
    visibility: Visibility = field(default_factory=Visibility)
    mime_type: str = ""
    size: int = 0
    hash: str = ""
    repository_unique_id: str = ""
    object_type: str = ""  # stable or on-demand
    logical_id: str = ""
    version: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"entry_uuid": self.entry_uuid, "unique_id": self.unique_id, "type_code": self.type_code,
                "class_code": self.class_code, "title": self.title, "author": self.author,
                "creation_time": self.creation_time, "service_start": self.service_start,
                "service_stop": self.service_stop, "status": self.status,
                "visibility": self.visibility.as_dict(),
                "format_code": self.format_code, "size": self.size, "mime_type": self.mime_type}


@dataclass(frozen=True, slots=True)
class SearchCriteria:
    """TD3.1 FindDocuments criteria (all optional but the patient)."""

    type_codes: tuple[str, ...] = ()
    class_codes: tuple[str, ...] = ()
    format_codes: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ("approved",)  # approved, deprecated, archived
    created_from: str = ""  # RFC 3339 or YYYY-MM-DD
    created_to: str = ""
    service_from: str = ""
    service_to: str = ""
    author: str = ""  # author person id or name fragment, as XDS matches it
    visibility: str = ""  # "", normal, masked_to_ps, invisible_to_patient, invisible_to_legal_reps


@dataclass(frozen=True, slots=True)
class RetrievedDocument:
    unique_id: str
    repository_unique_id: str
    mime_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class PatientDmpStatus:
    """TD0.2: does the patient have a DMP, and may this professional consult it."""

    exists: bool
    active: bool = False
    authorized: bool = False  # the professional's consultation authorisation
    blocked: bool = False  # the patient blocked this professional
    attached_to_mes: bool = False  # linked to Mon espace santé
    closed_reason: str = ""
    treating_physician: bool = False
    authorization: str = ""  # valid, expired, forbidden, none (or the DMP's own word when unknown)
    closed_on: str = ""  # YYYY-MM-DD
    ack_code: str = ""  # the HL7v3 acknowledgement (AA)
    query_response: str = ""  # OK, NF (no DMP)

    def as_dict(self) -> dict[str, Any]:
        return {"exists": self.exists, "active": self.active, "authorized": self.authorized,
                "blocked": self.blocked, "attached_to_mes": self.attached_to_mes,
                "closed_reason": self.closed_reason, "treating_physician": self.treating_physician,
                "authorization": self.authorization, "closed_on": self.closed_on}
