"""DmpClient: the DMP transactions as async methods (TD0.2, TD0.3, TD2.1, TD3.1, TD3.2, TD3.3a-d).

Interface other parts code against (the queue, the API routes); the XML lives in ``submission``, ``queries``,
``ebrim``, ``soap`` and ``vihf``, the sockets in ``transport``. Failures: ``TransientRemoteError`` (network, 5xx,
timeout), ``PermanentRemoteError`` (registry errors, client SOAP faults), ``DuplicateUniqueId`` for
XDSDuplicateUniqueIdInRegistry (the queue treats it as delivered). Signing blocks (a card may be slow): it runs
in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from lxml import etree

from agent.clock import Clock
from agent.dmp import hl7v3, queries
from agent.dmp.ebrim import DSG_FORMATS, XDSB, Author, SubmissionSetSpec, cx, entry_from_extrinsic, rim
from agent.dmp.models import (
    NORMAL_ACCESS,
    Access,
    DocumentEntry,
    PatientDmpStatus,
    Professional,
    RetrievedDocument,
    SearchCriteria,
    SubmissionRequest,
    SubmissionResult,
    Visibility,
)
from agent.dmp.psc import DmpPscTokens
from agent.dmp.soap import (
    ACTION_ITI18,
    ACTION_ITI41,
    ACTION_ITI43,
    ACTION_ITI57,
    SOAP_CT,
    TRANSIENT_CODES,
    MtomMessage,
    envelope,
    parse_envelope,
    raise_for_registry,
    resolve_xop,
    transient_if,
    write_mtom,
)
from agent.dmp.submission import Sender, SubmissionDefaults, build_submission, xcn
from agent.dmp.transport import Answer, Transport
from agent.dmp.valuesets import ValueSets
from agent.dmp.vihf import MODE_DIRECT, VihfSettings, signed_assertion
from agent.domain.ins import OID_INS_NIA
from agent.domain.signing import Signer
from agent.errors import InvalidInput, NotFound, PermanentRemoteError, TransientRemoteError, Unavailable
from agent.logs import get_logger

log = get_logger("dmp")
MAX_GET_DOCUMENTS = 20  # [CDT] EX_3.1: at most 20 documents per GetDocuments
UNREACHABLE = frozenset({"dmp_unreachable", "dmp_timeout", "dmp_tls_error"})
ProfessionalSource = Callable[[], Professional | None]


@dataclass(frozen=True, slots=True)
class DmpEndpoints:
    """The DMP's services; a sandbox or a real platform gives the base URL."""

    base_url: str

    @property
    def repository(self) -> str:
        return f"{self.base_url.rstrip('/')}/repository"

    @property
    def registry(self) -> str:
        return f"{self.base_url.rstrip('/')}/registry"

    @property
    def patients(self) -> str:
        return f"{self.base_url.rstrip('/')}/patients"


class DmpClient:
    def __init__(self, endpoints: DmpEndpoints, transport: Transport, *, clock: Clock, vihf: VihfSettings,
                 structure_signer: Signer, defaults: SubmissionDefaults, professional: ProfessionalSource,
                 document_signer: Callable[[], Signer] | None = None, value_sets: ValueSets | None = None,
                 new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
                 on_connectivity: Callable[[bool], None] | None = None,
                 td03_interaction: str = hl7v3.TD03_INTERACTION, psc: DmpPscTokens | None = None,
                 transient_codes: frozenset[str] = TRANSIENT_CODES) -> None:
        self.endpoints = endpoints
        self.transport = transport
        self.clock = clock
        self.vihf = vihf
        self.structure_signer = structure_signer
        self.defaults = defaults
        self.professional = professional
        self.document_signer = document_signer
        self.value_sets = value_sets
        self.new_uuid = new_uuid
        self.on_connectivity = on_connectivity
        self.td03_interaction = td03_interaction
        self.psc = psc  # the DMP's Pro Santé Connect mode, for professionals connected without a card
        self.transient_codes = transient_codes  # the DMP codes that mean "later" ([dmp] transient_error_codes)
        self.reachable: bool | None = None  # None: no call yet
        self.checked_at: dt.datetime | None = None

    async def close(self) -> None:
        await self.transport.close()

    async def _post(self, url: str, data: bytes, ctype: str, action: str,
                    headers: dict[str, str] | None = None) -> Answer:
        """The transport's post, remembering whether the DMP answered (for /v1/status and the tray)."""
        try:
            answer = await self.transport.post(url, data, ctype, action, headers)
        except TransientRemoteError as exc:
            if exc.code in UNREACHABLE:
                self._connectivity(False)
            raise
        self._connectivity(True)
        return answer

    def _connectivity(self, reachable: bool) -> None:
        changed = reachable != self.reachable
        self.reachable, self.checked_at = reachable, self.clock.now()
        if changed and self.on_connectivity is not None:
            self.on_connectivity(reachable)

    def status(self) -> dict[str, object]:
        """``connectivity.dmp`` of /v1/status: no patient data, only whether the last call got an answer."""
        return {"configured": True, "url": self.endpoints.base_url, "reachable": self.reachable,
                "checked_at": self.checked_at.isoformat().replace("+00:00", "Z") if self.checked_at else None}

    # --- plumbing --------------------------------------------------------------------------------------

    def _who(self, professional: Professional | None) -> Professional:
        who = professional or self.professional()
        if who is None:
            raise Unavailable("Aucun professionnel identifié : insérez la carte CPS.", code="cps_absent")
        return who

    def _security(self, who: Professional, ins: str, oid: str, access: Access = NORMAL_ACCESS) -> etree._Element:
        signer = self.structure_signer
        if who.via_psc and self.psc is not None:  # PSC mode: no card; the structure signs (agent/dmp/psc.py)
            return signed_assertion(replace(self.vihf, mode=self.psc.settings.vihf_mode), who, ins, oid, signer,
                                    self.clock.now(), purpose=self.vihf.purpose(access.mode), secret=access.secret,
                                    authn_context=self.psc.settings.authn_context, reason=access.reason)
        if self.vihf.mode == MODE_DIRECT:  # direct mode: the professional's card signs the VIHF
            if self.document_signer is None:
                raise Unavailable("Mode d'authentification directe : insérez la carte CPS.", code="cps_absent")
            signer = self.document_signer()
        return signed_assertion(self.vihf, who, ins, oid, signer, self.clock.now(),
                                purpose=self.vihf.purpose(access.mode), secret=access.secret, reason=access.reason)

    async def _call(self, url: str, action: str, body: etree._Element, who: Professional, ins: str, oid: str,
                    attachments: dict[str, bytes] | None = None,
                    access: Access = NORMAL_ACCESS) -> tuple[etree._Element, MtomMessage]:
        if oid == OID_INS_NIA:  # [CDT] 0.2-080: a patient known by a NIA has no access to the DMP
            raise InvalidInput.field("patient.oid", "Patient identifié par un NIA (matricule provisoire) : "
                                                    "l'accès au DMP est interdit.", code="dmp_nia_forbidden")
        def build() -> tuple[bytes, str]:
            env = envelope(action, body, to=url, security=self._security(who, ins, oid, access))
            xml = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
            if attachments is None and action not in (ACTION_ITI43,):
                return xml, f'{SOAP_CT}; charset=UTF-8; action="{action}"'
            return write_mtom(MtomMessage(xml, attachments or {}), action)

        headers: dict[str, str] | None = None
        if who.via_psc:
            if self.psc is None:
                raise Unavailable("Le mode Pro Santé Connect du DMP n'est pas configuré ([dmp] psc_token_url) : "
                                  "insérez la carte CPS.", code="cps_absent")
            headers = self.psc.headers(await self.psc.dmp_token(who))
        data, ctype = await asyncio.to_thread(build)
        answer = await self._post(url, data, ctype, action, headers)
        first = parse_envelope(answer.message.root, transient=self.transient_codes)
        return first, answer.message

    def _submission_set(self, who: Professional, ins: str, oid: str, title: str) -> SubmissionSetSpec:
        stamp = self.clock.now().strftime("%Y%m%d%H%M%S")
        person = xcn(who.national_id, who.family_name, who.given_name)
        return SubmissionSetSpec(entry_uuid=f"urn:uuid:{self.new_uuid()}", unique_id=_new_oid(self.new_uuid()),
                                 source_id=self.defaults.source_id, patient_id=cx(ins, oid), submission_time=stamp,
                                 content_type=self.defaults.content_type, author=Author(person=person), title=title)

    def _ids(self) -> Iterator[str]:
        while True:
            yield f"urn:uuid:{self.new_uuid()}"

    # --- TD2.1 -----------------------------------------------------------------------------------------

    async def submit(self, req: SubmissionRequest) -> SubmissionResult:
        """ITI-41 of one CDA; DuplicateUniqueId when the registry already holds its uniqueId."""
        signer = req.signer or (self.document_signer() if self.document_signer else None)
        if signer is None:
            raise Unavailable("Aucune clé de signature : insérez la carte CPS.", code="cps_absent")
        who = self._who(req.professional)
        # An explicit professional is the order's sender (a secretary, another doctor: [CDT] 2.1-900): the VIHF
        # speaks for them, they author the submission set, and the structure must be an author's organisation.
        # EX_2.1-1140: the structure rule is the indirect mode's; in direct mode the NameID must be an author's.
        structure = "" if self.vihf.mode == MODE_DIRECT else self.vihf.structure_id
        sender = Sender(who, structure) if req.professional is not None else None
        built = await asyncio.to_thread(build_submission, req, signer, self.defaults, self.clock.now(),
                                        self.new_uuid, self.value_sets, sender)
        first, _ = await self._call(self.endpoints.repository, ACTION_ITI41, built.body, who, req.ins, req.ins_oid,
                                    built.attachments, req.access)
        raise_for_registry(first, self.transient_codes)
        log.info("DMP : lot de soumission enregistré")
        return SubmissionResult(built.document_entry_uuid, built.submission_set_entry_uuid,
                                built.signature_entry_uuid, req.document_unique_id, req.submission_set_unique_id)

    # --- TD3.1 -----------------------------------------------------------------------------------------

    async def _query(self, body: etree._Element, who: Professional, ins: str, oid: str,
                     access: Access = NORMAL_ACCESS) -> list[etree._Element]:
        return await self._query_objects(body, who, ins, oid, "ExtrinsicObject", access)

    async def search(self, ins: str, oid: str, criteria: SearchCriteria,
                     professional: Professional | None = None, access: Access = NORMAL_ACCESS) -> list[DocumentEntry]:
        who = self._who(professional)
        found = await self._query(queries.find_documents(cx(ins, oid), criteria), who, ins, oid, access)
        return [entry_from_extrinsic(eo) for eo in found]

    async def find_by_unique_id(self, ins: str, oid: str, unique_id: str,
                                professional: Professional | None = None) -> list[DocumentEntry]:
        """GetDocuments by uniqueId: every version the registry holds (for reconciliation)."""
        who = self._who(professional)
        found = await self._query(queries.get_documents(unique_ids=[unique_id]), who, ins, oid)
        return [entry_from_extrinsic(eo) for eo in found]

    async def documents_since(self, ins: str, oid: str, since: str, professional: Professional | None = None,
                              access: Access = NORMAL_ACCESS) -> list[DocumentEntry]:
        """The documents added since a date (the last visit): FindSubmissionSets, then GetSubmissionSetAndContents
        of each set (the test book's method 2); signatures and superseded versions left out."""
        if not since:
            raise InvalidInput.field("since", "Date de début attendue.")
        who = self._who(professional)
        sets = await self._query_objects(queries.find_submission_sets(cx(ins, oid), since), who, ins, oid,
                                         "RegistryPackage", access)
        found: dict[str, DocumentEntry] = {}
        for package in sets:
            body = queries.submission_set_and_contents(package.get("id", ""))
            for eo in await self._query_objects(body, who, ins, oid, "ExtrinsicObject", access):
                entry = entry_from_extrinsic(eo)
                if entry.format_code not in DSG_FORMATS and entry.status == "approved":
                    found.setdefault(entry.entry_uuid, entry)
        return list(found.values())

    async def _query_objects(self, body: etree._Element, who: Professional, ins: str, oid: str,
                             tag: str, access: Access = NORMAL_ACCESS) -> list[etree._Element]:
        first, _ = await self._call(self.endpoints.registry, ACTION_ITI18, body, who, ins, oid, access=access)
        raise_for_registry(first, self.transient_codes)
        return list(first.iter(rim(tag)))

    async def _get_raw(self, ins: str, oid: str, entry_uuid: str, who: Professional,
                       access: Access = NORMAL_ACCESS) -> etree._Element:
        found = await self._query(queries.get_documents(entry_uuids=[entry_uuid]), who, ins, oid, access)
        for eo in found:
            if eo.get("id") == entry_uuid:
                return eo
        raise NotFound("Document introuvable dans le DMP de ce patient.", code="dmp_document_not_found")

    async def get_entry(self, ins: str, oid: str, entry_uuid: str, professional: Professional | None = None,
                        access: Access = NORMAL_ACCESS) -> DocumentEntry:
        return entry_from_extrinsic(await self._get_raw(ins, oid, entry_uuid, self._who(professional), access))

    async def get_entry_metadata(self, ins: str, oid: str, entry_uuid: str, professional: Professional | None = None,
                                 access: Access = NORMAL_ACCESS) -> tuple[DocumentEntry, etree._Element]:
        """The entry and its registry metadata, to change it (TD3.3) without a second look-up."""
        raw = await self._get_raw(ins, oid, entry_uuid, self._who(professional), access)
        return entry_from_extrinsic(raw), raw

    # --- TD3.2 -----------------------------------------------------------------------------------------

    async def retrieve(self, ins: str, oid: str, entry: DocumentEntry,
                       professional: Professional | None = None, access: Access = NORMAL_ACCESS) -> RetrievedDocument:
        who = self._who(professional)
        body = queries.retrieve_request(entry.repository_unique_id, entry.unique_id)
        first, message = await self._call(self.endpoints.repository, ACTION_ITI43, body, who, ins, oid,
                                          access=access)
        raise_for_registry(first, self.transient_codes)
        for dr in first.iterfind(f"{{{XDSB}}}DocumentResponse"):
            if (dr.findtext(f"{{{XDSB}}}DocumentUniqueId") or "").strip() == entry.unique_id:
                doc = dr.find(f"{{{XDSB}}}Document")
                if doc is None:
                    break
                content = resolve_xop(doc, message.attachments)
                _check_hash(entry, content)
                return RetrievedDocument(entry.unique_id, entry.repository_unique_id,
                                         (dr.findtext(f"{{{XDSB}}}mimeType") or "").strip(), content)
        raise PermanentRemoteError("Le DMP n'a pas renvoyé le document demandé.", service="dmp",
                                   code="dmp_document_missing")

    # --- TD3.3 -----------------------------------------------------------------------------------------

    async def set_visibility(self, ins: str, oid: str, entry_uuid: str, visibility: Visibility,
                             professional: Professional | None = None,
                             metadata: etree._Element | None = None) -> DocumentEntry:
        """TD3.3a/b (ITI-57): a new metadata version; returns it, with its new entryUUID. ``metadata``: the
        entry's registry metadata when the caller just read it (``get_entry_metadata``), so it is not asked twice."""
        who = self._who(professional)
        old = metadata if metadata is not None else await self._get_raw(ins, oid, entry_uuid, who)
        new_uuid = f"urn:uuid:{self.new_uuid()}"
        ss = self._submission_set(who, ins, oid, "Modification de visibilité")
        body = queries.update_visibility(old, visibility, new_uuid, ss, self._ids())
        first, _ = await self._call(self.endpoints.registry, ACTION_ITI57, body, who, ins, oid)
        raise_for_registry(first, self.transient_codes)
        # The new version as the DMP now holds it, without asking: no TD3.1 after a visibility change (CNDA
        # MEMENTO "Recherche de documents", EX_3.1-1090: each search is notified to the patient).
        before = entry_from_extrinsic(old)
        return dataclasses.replace(before, entry_uuid=new_uuid, visibility=visibility,
                                   version=_next_version(before.version))

    async def set_status(self, ins: str, oid: str, entry_uuid: str, *, archived: bool,
                         professional: Professional | None = None) -> None:
        """TD3.3d (ITI-57 availability status): Approved -> Archived, or back (un-archiving). The caller looks the
        document up first in ObjectRef mode (``look_up``): no TD3.1 afterwards either (EX_3.1-1090)."""
        who = self._who(professional)
        old, new = ("approved", "archived") if archived else ("archived", "approved")
        ss = self._submission_set(who, ins, oid, "Archivage" if archived else "Désarchivage")
        body = queries.update_status(entry_uuid, "", old, new, ss, self._ids())
        first, _ = await self._call(self.endpoints.registry, ACTION_ITI57, body, who, ins, oid)
        raise_for_registry(first, self.transient_codes)

    async def delete(self, ins: str, oid: str, entry_uuid: str,
                     professional: Professional | None = None) -> None:
        """TD3.3c: an ITI-57 status change Approved -> Deleted (the DMP takes it from the document's author, with
        the feeding profile only: no consultation right needed)."""
        who = self._who(professional)
        ss = self._submission_set(who, ins, oid, "Suppression")
        body = queries.update_status(entry_uuid, "", "approved", "deleted", ss, self._ids())
        first, _ = await self._call(self.endpoints.registry, ACTION_ITI57, body, who, ins, oid)
        raise_for_registry(first, self.transient_codes)

    async def entry_uuids(self, ins: str, oid: str, unique_ids: list[str],
                          professional: Professional | None = None) -> list[str]:
        """TD3.1b: the entryUUIDs of these uniqueIds by GetDocuments in ObjectRef mode, at most 20 per request."""
        who = self._who(professional)
        found: list[str] = []
        for start in range(0, len(unique_ids), MAX_GET_DOCUMENTS):
            body = queries.get_documents(unique_ids=unique_ids[start:start + MAX_GET_DOCUMENTS],
                                         return_type="ObjectRef")
            found += await self._object_refs(body, who, ins, oid)
        return found

    async def _object_refs(self, body: etree._Element, who: Professional, ins: str, oid: str) -> list[str]:
        first, _ = await self._call(self.endpoints.registry, ACTION_ITI18, body, who, ins, oid)
        raise_for_registry(first, self.transient_codes)
        return [ref.get("id", "") for ref in first.iter(rim("ObjectRef"))]

    async def look_up(self, ins: str, oid: str, reference: str, professional: Professional | None = None) -> str:
        """TD3.1b just before an action on one document (replace, archive, unarchive; [CDT] EX_3.1-1090, RG_3130):
        its entryUUID by GetDocuments in ObjectRef mode, from its entryUUID (``urn:uuid:...``, checked to exist
        for this patient) or its uniqueId. ObjectRef says nothing of status: when a uniqueId has several versions
        (after TD3.3a/b updates) the last the registry lists is taken, the newest in the simulator. NotFound when
        the DMP has none."""
        who = self._who(professional)
        if reference.startswith("urn:uuid:"):
            body = queries.get_documents(entry_uuids=[reference], return_type="ObjectRef")
        else:
            body = queries.get_documents(unique_ids=[reference], return_type="ObjectRef")
        found = [ref for ref in await self._object_refs(body, who, ins, oid) if ref]
        if not found:
            raise NotFound("Document introuvable dans le DMP de ce patient.", code="dmp_document_not_found")
        return reference if reference in found else found[-1]

    async def delete_unique_id(self, ins: str, oid: str, unique_id: str,
                               professional: Professional | None = None) -> None:
        """TD3.3c of a document the practice fed, known by its uniqueId: TD3.1b ObjectRef, then the status change."""
        uuids = await self.entry_uuids(ins, oid, [unique_id], professional)
        if not uuids:
            raise NotFound("Document introuvable dans le DMP de ce patient.", code="dmp_document_not_found")
        # ObjectRef says nothing of status: after TD3.3a/b updates the uniqueId has deprecated versions too, which
        # the DMP refuses to delete; the newest comes last in the simulator, but try each until one is accepted.
        refusal: PermanentRemoteError | None = None
        for entry_uuid in reversed(uuids):
            try:
                await self.delete(ins, oid, entry_uuid, professional)
                return
            except PermanentRemoteError as exc:
                refusal = exc
        assert refusal is not None
        raise refusal

    # --- TD0.2 / TD0.3 (HL7v3 on .../patients) ------------------------------------------------------------

    def _hl7_ids(self) -> hl7v3.MessageIds:
        return hl7v3.MessageIds(self.defaults.source_id, self.vihf.lps_name, self.new_uuid(), self.new_uuid(),
                                self.clock.now())

    async def td02(self, ins: str, oid: str, professional: Professional | None = None) -> PatientDmpStatus:
        """TD0.2 (PRPA_IN201307UV02): does the patient have a DMP, and may this professional use it."""
        who = self._who(professional)
        body = hl7v3.td02_request(ins, oid, self._hl7_ids())
        first, _ = await self._call(self.endpoints.patients, hl7v3.TD02_ACTION, body, who, ins, oid)
        try:
            return hl7v3.read_td02_answer(first)
        except PermanentRemoteError as exc:
            raise transient_if(exc, self.transient_codes) from None

    async def td03(self, ins: str, oid: str, add: bool, professional: Professional | None = None) -> str:
        """TD0.3: add (the patient consented) or remove (consent withdrawn) this professional's authorisation;
        returns the DMP's acknowledgement code (DMPOk)."""
        who = self._who(professional)
        interaction = self.td03_interaction
        body = hl7v3.td03_request(ins, oid, hl7v3.TD03_ADD if add else hl7v3.TD03_REMOVE, self._hl7_ids(),
                                  interaction)
        first, _ = await self._call(self.endpoints.patients, f"urn:hl7-org:v3:{interaction}", body, who, ins, oid)
        try:
            return hl7v3.read_ack(first, "l'ajout de l'autorisation" if add else "le retrait de l'autorisation")
        except PermanentRemoteError as exc:
            raise transient_if(exc, self.transient_codes) from None


def _check_hash(entry: DocumentEntry, content: bytes) -> None:
    if entry.hash and not hmac.compare_digest(hashlib.sha1(content).hexdigest(), entry.hash.lower()):  # noqa: S324
        raise PermanentRemoteError("Le document reçu du DMP ne correspond pas à son empreinte.", service="dmp",
                                   code="dmp_hash_mismatch")


def _next_version(version: str) -> str:
    return str(int(version) + 1) if version.isdigit() else version


def _new_oid(u: str) -> str:
    """A fresh OID under 2.25 (UUID-derived), for the submission sets of updates."""
    return f"2.25.{uuid.UUID(u).int}"

