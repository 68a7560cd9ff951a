"""The simulated DMP's protocol logic: check a request (schema, VIHF, DSG) and answer it as a registry does.

No sockets: ``DmpService.handle`` takes the request's envelope and MTOM attachments and returns the answer
(XML, attachments). ``relais_sandbox/dmp.py`` puts it behind TLS.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree

from agent.dmp import ebrim, hl7v3, soap
from agent.dmp.ebrim import (
    DE_AUTHOR,
    DE_CLASS,
    DE_CONFIDENTIALITY,
    DE_FORMAT,
    DE_PATIENT_ID,
    DE_TYPE,
    DE_UNIQUE_ID,
    DSG_FORMATS,
    HAS_MEMBER,
    LCM,
    QUERY,
    RIM,
    SS_PATIENT_ID,
    SS_UNIQUE_ID,
    XDSB,
    classifications,
    coded,
    external_id,
    rim,
    slot_value,
)
from agent.dmp.models import STATUS_APPROVED, STATUS_DELETED, STATUS_DEPRECATED, STATUS_URNS
from agent.dmp.queries import (
    FIND_DOCUMENTS,
    FIND_SUBMISSION_SETS,
    GET_DOCUMENTS,
    GET_SUBMISSION_SET_AND_CONTENTS,
    UPDATE_STATUS,
)
from agent.dmp.soap import RegistryError
from agent.dmp.vihf import SAML, read_assertion
from agent.errors import RelaisError
from agent.xml.signing import SignatureInvalid, verify_enveloped, verify_xades_detached
from relais_sandbox.dmp_patients import DmpPatients
from relais_sandbox.dmp_registry import REPOSITORY_UNIQUE_ID, Registry, Stored, author_id_of

ERR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
REQUIRED_CLASSIFICATIONS = {DE_CLASS: "classCode", DE_TYPE: "typeCode", DE_FORMAT: "formatCode",
                            DE_CONFIDENTIALITY: "confidentialityCode"}


class Refused(Exception):
    """The request is refused with registry errors (answered in a RegistryResponse, not a fault)."""

    def __init__(self, *errors: RegistryError) -> None:
        super().__init__(errors[0].context if errors else "")
        self.errors = list(errors)


def _err(code: str, context: str, location: str = "") -> RegistryError:
    return RegistryError(code, context, ERR, location)


@dataclass
class Caller:
    """Who the verified VIHF says acts."""

    national_id: str
    patient_cx: str
    attributes: dict[str, list[str]]


@dataclass
class Answer:
    action: str
    body: etree._Element
    attachments: dict[str, bytes] = field(default_factory=dict)


class DmpService:
    def __init__(self, registry: Registry, trusted: Sequence[x509.Certificate], schema: etree.XMLSchema | None,
                 now: dt.datetime | None = None, without_dmp: set[str] | None = None,
                 patients: DmpPatients | None = None) -> None:
        self.patients = patients or DmpPatients()
        for patient_cx in without_dmp or ():
            self.patients.without_dmp(patient_cx.split("^")[0])
        self.registry = registry
        self.trusted = list(trusted)
        self.schema = schema
        self._now = now
        # Requests are handled in worker threads: one at a time touches the registry (one SQLite connection).
        self._lock = threading.Lock()
        self.calls: list[dict[str, str]] = []  # every request received, in order (GET /_sandbox/dmp/calls)

    def now(self) -> dt.datetime:
        return self._now or dt.datetime.now(dt.UTC)

    # --- entry point ---------------------------------------------------------------------------------------

    def verify_vihf(self, env: etree._Element) -> Caller:
        assertions = env.findall(f"{{{soap.SOAP12}}}Header/{{{soap.WSSE}}}Security/{{{SAML}}}Assertion")
        if len(assertions) != 1:
            raise SignatureInvalid("Jeton VIHF absent de l'en-tête WS-Security.")
        return self.caller_of(assertions[0])

    def caller_of(self, assertion: etree._Element) -> Caller:
        verified = verify_enveloped(assertion, self.trusted, self.now(), id_attribute="ID")
        attrs = read_assertion(verified.signed)  # only what the signature covers
        missing = [n for n in ("VIHF_Version", "Authentification_Mode", "Identifiant_Structure",
                               "urn:oasis:names:tc:xacml:2.0:resource:resource-id",
                               "urn:oasis:names:tc:xacml:2.0:subject:role") if not attrs.get(n)]
        if missing or not attrs.get("NameID", [""])[0]:
            raise SignatureInvalid(f"Attributs VIHF manquants : {', '.join(missing) or 'NameID'}.")
        return Caller(attrs["NameID"][0], attrs["urn:oasis:names:tc:xacml:2.0:resource:resource-id"][0], attrs)

    def handle(self, action: str, env: etree._Element, attachments: dict[str, bytes], raw: bytes,
               content_type: str = "", refusal: tuple[str, str, str] | None = None) -> Answer:
        """``refusal`` (the fault mode "refuse"): (transaction or "", code, text) the DMP answers instead."""
        caller = self.verify_vihf(env)
        with self._lock:
            call = describe_call(action, env, caller, raw, content_type)
            self.calls.append(call)
            if refusal is not None and refusal[0] in ("", call["transaction"]):
                return self._refuse(action, env, refusal[1], refusal[2])
            return self._handle(action, env, attachments, raw, caller)

    def _refuse(self, action: str, env: etree._Element, code: str, text: str) -> Answer:
        """The DMP's refusal in the transaction's own shape: an HL7v3 acknowledgement AE, or a registry error."""
        body = env.find(f"{{{soap.SOAP12}}}Body")
        request = body[0] if body is not None and len(body) else None
        if request is not None and etree.QName(request).namespace == hl7v3.HL7:
            ids = hl7v3.MessageIds(hl7v3.DMP_DEVICE, "DMP", str(uuid.uuid4()), "", self.now())
            answer = hl7v3.TD02_ANSWER if hl7v3.interaction_of(request) == hl7v3.TD02_INTERACTION \
                else hl7v3.ACK_INTERACTION
            return Answer(f"urn:hl7-org:v3:{answer}", hl7v3.refusal_answer(request, ids, answer, code, text))
        errors = [_err(code, text)]
        response_action = soap.ACTIONS_RESPONSE.get(action, action + "Response")
        if action == soap.ACTION_ITI18:
            resp = etree.Element(f"{{{QUERY}}}AdhocQueryResponse", nsmap={"query": QUERY, "rs": ebrim.RS},
                                 status=soap.RESPONSE_FAILURE)
            errs = soap.registry_response(errors).find(f"{{{ebrim.RS}}}RegistryErrorList")
            if errs is not None:
                resp.append(errs)
            return Answer(response_action, resp)
        return Answer(response_action, soap.registry_response(errors))

    def _handle(self, action: str, env: etree._Element, attachments: dict[str, bytes], raw: bytes,
                caller: Caller) -> Answer:
        body = env.find(f"{{{soap.SOAP12}}}Body")
        request = body[0] if body is not None and len(body) else None
        if request is None:
            raise ValueError("corps SOAP vide")
        if etree.QName(request).namespace == hl7v3.HL7:
            return self.patients_request(action, request, caller)
        response_action = soap.ACTIONS_RESPONSE.get(action, action + "Response")
        try:
            if self.schema is not None:
                from agent.dmp.schemas import validate

                problems = validate(self.schema, request)
                if problems:
                    raise Refused(_err("XDSRegistryMetadataError", "Schéma XDS.b : " + " ; ".join(problems)))
            if action == soap.ACTION_ITI41 and request.tag == f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest":
                return Answer(response_action, self.provide_and_register(request, attachments, caller, raw))
            if action == soap.ACTION_ITI18 and request.tag == f"{{{QUERY}}}AdhocQueryRequest":
                return Answer(response_action, self.stored_query(request, caller))
            if action == soap.ACTION_ITI43 and request.tag == f"{{{XDSB}}}RetrieveDocumentSetRequest":
                body_el, atts = self.retrieve(request, caller)
                return Answer(response_action, body_el, atts)
            if action == soap.ACTION_ITI57 and request.tag == f"{{{LCM}}}SubmitObjectsRequest":
                return Answer(response_action, self.update(request, caller))
            raise Refused(_err("XDSRegistryError", f"Action {action} inconnue pour {etree.QName(request).localname}."))
        except Refused as exc:
            if action == soap.ACTION_ITI18:
                resp = etree.Element(f"{{{QUERY}}}AdhocQueryResponse", nsmap={"query": QUERY, "rs": ebrim.RS},
                                     status=soap.RESPONSE_FAILURE)
                errs = soap.registry_response(exc.errors).find(f"{{{ebrim.RS}}}RegistryErrorList")
                if errs is not None:
                    resp.append(errs)
                return Answer(response_action, resp)
            return Answer(response_action, soap.registry_response(exc.errors))

    # --- TD0.2 / TD0.3 (HL7v3) ------------------------------------------------------------------------------

    def patients_request(self, action: str, request: etree._Element, caller: Caller) -> Answer:
        interaction = hl7v3.interaction_of(request)
        if etree.QName(request).localname != interaction or action != f"urn:hl7-org:v3:{interaction}":
            raise ValueError(f"interaction HL7v3 {interaction or '?'} et action SOAP {action} incohérentes")
        ins, oid = hl7v3.request_patient(request)
        ids = hl7v3.MessageIds(hl7v3.DMP_DEVICE, "DMP", str(uuid.uuid4()), "", self.now())
        if ebrim.cx(ins, oid) != caller.patient_cx:
            return Answer(f"urn:hl7-org:v3:{hl7v3.ACK_INTERACTION}",
                          hl7v3.ack_answer(request, ids, False, "DMPPatientMismatch"))
        if interaction == hl7v3.TD02_INTERACTION:
            if hl7v3.reason_of(request) != hl7v3.TEST_EXISTENCE:
                raise ValueError("reasonCode TEST_EXST attendu pour un test d'existence")
            state = self.patients.state(ins, caller.national_id)
            return Answer(f"urn:hl7-org:v3:{hl7v3.TD02_ANSWER}",
                          hl7v3.td02_answer(request, ins, oid, state, ids))
        reason = hl7v3.reason_of(request)
        if reason not in (hl7v3.TD03_ADD, hl7v3.TD03_REMOVE):
            raise ValueError(f"TD0.3 : action {reason or '?'} inconnue")
        ok, code = self.patients.td03(ins, caller.national_id, reason == hl7v3.TD03_ADD)
        return Answer(f"urn:hl7-org:v3:{hl7v3.ACK_INTERACTION}", hl7v3.ack_answer(request, ids, ok, code))

    # --- ITI-41 ------------------------------------------------------------------------------------------

    def provide_and_register(self, request: etree._Element, attachments: dict[str, bytes], caller: Caller,
                             raw: bytes) -> etree._Element:
        sor = request.find(f"{{{LCM}}}SubmitObjectsRequest")
        assert sor is not None  # the schema requires it
        rol = sor.find(rim("RegistryObjectList"))
        objects = list(rol) if rol is not None else []
        entries = [o for o in objects if o.tag == rim("ExtrinsicObject")]
        packages = [o for o in objects if o.tag == rim("RegistryPackage")]
        associations = [o for o in objects if o.tag == rim("Association")]
        if len(packages) != 1 or not entries:
            raise Refused(_err("XDSRegistryMetadataError", "Un lot de soumission et au moins un document attendus."))
        ss = packages[0]
        ss_uid = external_id(ss, SS_UNIQUE_ID)
        ss_patient = external_id(ss, SS_PATIENT_ID)
        contents: dict[str, bytes] = {}
        for doc in request.iterfind(f"{{{XDSB}}}Document"):
            try:
                contents[doc.get("id", "")] = soap.resolve_xop(doc, attachments)
            except RelaisError as exc:
                raise Refused(_err("XDSMissingDocument", exc.message)) from exc
        errors: list[RegistryError] = []
        if not ss_uid:
            errors.append(_err("XDSRegistryMetadataError", "uniqueId du lot de soumission absent."))
        elif self.registry.unique_id_known(ss_uid):
            errors.append(_err("XDSDuplicateUniqueIdInRegistry", f"Lot de soumission {ss_uid} déjà reçu.", ss_uid))
        patient_file = self.patients.file(ss_patient.split("^")[0])
        if not patient_file.exists or patient_file.closed_on:
            errors.append(_err("XDSUnknownPatientId", "Ce patient n'a pas de DMP actif."))
        if ss_patient != caller.patient_cx:
            errors.append(_err("XDSPatientIdDoesNotMatch", "Le patient du lot ne correspond pas au jeton VIHF."))
        members = {a.get("targetObject") for a in associations if a.get("associationType") == HAS_MEMBER
                   and a.get("sourceObject") == ss.get("id")}
        by_uid: dict[str, bytes] = {}
        for eo in entries:
            errors += self._check_entry(eo, contents, ss_patient, members)
            uid = external_id(eo, DE_UNIQUE_ID)
            by_uid[uid] = contents.get(eo.get("id", ""), b"")
        if errors:
            raise Refused(*errors)
        self._check_signature(entries, by_uid, contents, ss_uid)
        replaced = self._replacements(associations, entries)
        with self.registry.transaction():
            for eo in entries:
                self.registry.insert(eo, contents[eo.get("id", "")])
            for old in replaced:
                self.registry.set_status(old.entry_uuid, STATUS_DEPRECATED)
            docs = [{"unique_id": external_id(eo, DE_UNIQUE_ID),
                     "cda_base64": base64.b64encode(contents[eo.get("id", "")]).decode()}
                    for eo in entries if (coded(eo, DE_FORMAT) or ebrim.Coded("", "")).code not in DSG_FORMATS]
            self.registry.record_submission(self.now().isoformat().replace("+00:00", "Z"), ss_uid, raw, docs)
            self.registry.insert_package(ss, ss_patient, slot_value(ss, "submissionTime"),
                                         sorted(m for m in members if m))
        return soap.registry_response()

    def _check_entry(self, eo: etree._Element, contents: dict[str, bytes], ss_patient: str,
                     members: set[str | None]) -> list[RegistryError]:
        errors: list[RegistryError] = []
        eid = eo.get("id", "")
        uid = external_id(eo, DE_UNIQUE_ID)
        content = contents.get(eid)
        if eid not in members:
            errors.append(_err("XDSRegistryMetadataError", f"Document {eid} hors du lot (HasMember absent).", eid))
        if content is None:
            return [*errors, _err("XDSMissingDocument", f"Contenu absent pour {eid}.", eid)]
        if not uid:
            errors.append(_err("XDSRegistryMetadataError", "uniqueId absent.", eid))
        elif self.registry.unique_id_known(uid):
            errors.append(_err("XDSDuplicateUniqueIdInRegistry", f"Le document {uid} existe déjà.", uid))
        if external_id(eo, DE_PATIENT_ID) != ss_patient:
            errors.append(_err("XDSPatientIdDoesNotMatch", "Le patient du document diffère de celui du lot.", uid))
        declared_hash = slot_value(eo, "hash").lower()
        if declared_hash and not hmac.compare_digest(declared_hash, hashlib.sha1(content).hexdigest()):  # noqa: S324
            errors.append(_err("XDSNonIdenticalHash", "L'empreinte déclarée ne correspond pas au document reçu.", uid))
        size = slot_value(eo, "size")
        if size and size != str(len(content)):
            errors.append(_err("XDSNonIdenticalSize", "La taille déclarée ne correspond pas au document reçu.", uid))
        for scheme, name in REQUIRED_CLASSIFICATIONS.items():
            if not classifications(eo, scheme):
                errors.append(_err("XDSRegistryMetadataError", f"{name} absent.", uid))
        if not classifications(eo, DE_AUTHOR):
            errors.append(_err("XDSRegistryMetadataError", "Auteur absent.", uid))
        if not slot_value(eo, "creationTime"):
            errors.append(_err("XDSRegistryMetadataError", "creationTime absent.", uid))
        return errors

    def _check_signature(self, entries: list[etree._Element], by_uid: dict[str, bytes], contents: dict[str, bytes],
                         ss_uid: str) -> None:
        sigs = [eo for eo in entries if (coded(eo, DE_FORMAT) or ebrim.Coded("", "")).code in DSG_FORMATS]
        if len(sigs) != 1:
            raise Refused(_err("XDSRegistryMetadataError", "Signature du lot de soumission (IHE DSG) absente."))
        sig_eo = sigs[0]
        sig_uid = external_id(sig_eo, DE_UNIQUE_ID)
        try:
            from agent.xml.safe import parse

            signature = parse(contents[sig_eo.get("id", "")], what="signature DSG")
            # IHE DSG manifest: documents by ``urn:oid:<uniqueId>`` and digest, the submission set by name.
            covered: dict[str, bytes | None] = {f"urn:oid:{uid}": data for uid, data in by_uid.items()
                                                if uid != sig_uid}
            covered[f"urn:oid:{ss_uid}"] = None
            verify_xades_detached(signature, covered, self.trusted, self.now())
        except RelaisError as exc:
            raise Refused(_err("XDSRegistryMetadataError", f"Signature du lot invalide : {exc.message}",
                               sig_uid)) from exc

    def _replacements(self, associations: list[etree._Element], entries: list[etree._Element]) -> list[Stored]:
        out = []
        for a in associations:
            if a.get("associationType") == ebrim.RPLC:
                old = self.registry.by_uuid(a.get("targetObject", ""))
                if old is None or old.status != STATUS_APPROVED:
                    raise Refused(_err("XDSUnknownDocument", "Le document à remplacer est absent ou n'est plus "
                                                             "la version en vigueur."))
                new_patient = next((external_id(eo, DE_PATIENT_ID) for eo in entries
                                    if eo.get("id") == a.get("sourceObject")), "")
                if new_patient != old.patient_id:
                    raise Refused(_err("XDSPatientIdDoesNotMatch", "Le remplacement change de patient."))
                out.append(old)
        return out

    # --- ITI-18 ------------------------------------------------------------------------------------------

    def stored_query(self, request: etree._Element, caller: Caller) -> etree._Element:
        aq = request.find(rim("AdhocQuery"))
        assert aq is not None
        params = {s.get("name", ""): [(v.text or "").strip() for v in s.iter(rim("Value"))]
                  for s in aq.iterfind(rim("Slot"))}
        qid = aq.get("id")
        option = request.find(f"{{{QUERY}}}ResponseOption")
        object_ref = option is not None and option.get("returnType") == "ObjectRef"
        if not object_ref:
            self._require_consultation(caller)
        if qid == FIND_DOCUMENTS:
            found = self._find(params, caller)
        elif qid == GET_DOCUMENTS:
            uids = _list(params.get("$XDSDocumentEntryUniqueId"))
            uuids = _list(params.get("$XDSDocumentEntryEntryUUID"))
            candidates = [s for uid in uids for s in self.registry.by_unique_id(uid)]
            candidates += [s for u in uuids if (s := self.registry.by_uuid(u)) is not None]
            seen: set[str] = set()
            found = []
            for s in candidates:
                if s.entry_uuid not in seen and s.patient_id == caller.patient_cx and self._readable(s, caller):
                    seen.add(s.entry_uuid)
                    found.append(s)
        elif qid == FIND_SUBMISSION_SETS:
            return self._find_submission_sets(params, caller)
        elif qid == GET_SUBMISSION_SET_AND_CONTENTS:
            return self._submission_set_and_contents(params, caller)
        else:
            raise Refused(_err("XDSUnknownStoredQuery", f"Requête {qid} non prise en charge."))
        resp = etree.Element(f"{{{QUERY}}}AdhocQueryResponse", nsmap={"query": QUERY, "rim": RIM},
                             status=soap.RESPONSE_SUCCESS)
        rol = etree.SubElement(resp, rim("RegistryObjectList"))
        for stored in found:
            if object_ref:
                etree.SubElement(rol, rim("ObjectRef"), id=stored.entry_uuid)
            else:
                rol.append(stored.metadata)
        return resp

    def _answer(self, objects: list[etree._Element]) -> etree._Element:
        resp = etree.Element(f"{{{QUERY}}}AdhocQueryResponse", nsmap={"query": QUERY, "rim": RIM},
                             status=soap.RESPONSE_SUCCESS)
        rol = etree.SubElement(resp, rim("RegistryObjectList"))
        for obj in objects:
            rol.append(obj)
        return resp

    def _find_submission_sets(self, params: dict[str, list[str]], caller: Caller) -> etree._Element:
        if _list(params.get("$XDSSubmissionSetPatientId")) != [caller.patient_cx]:
            raise Refused(_err("XDSPatientIdDoesNotMatch", "Le patient de la requête diffère du jeton VIHF."))
        t_from = _one(params.get("$XDSSubmissionSetSubmissionTimeFrom"))
        t_to = _one(params.get("$XDSSubmissionSetSubmissionTimeTo"))
        found = [rp for _, stamp, rp, _ in self.registry.packages(caller.patient_cx)
                 if (not t_from or _padded(stamp) >= _padded(t_from)) and (not t_to or _padded(stamp) < _padded(t_to))]
        return self._answer(found)

    def _submission_set_and_contents(self, params: dict[str, list[str]], caller: Caller) -> etree._Element:
        wanted = set(_list(params.get("$XDSSubmissionSetEntryUUID")))
        objects: list[etree._Element] = []
        for uuid_, _, rp, members in self.registry.packages(caller.patient_cx):
            if uuid_ not in wanted:
                continue
            objects.append(rp)
            for member in members:
                stored = self.registry.by_uuid(member)
                if stored is not None and self._readable(stored, caller):
                    objects.append(stored.metadata)
                    objects.append(etree.Element(rim("Association"), id=f"urn:uuid:{uuid.uuid4()}",
                                                 associationType=HAS_MEMBER, sourceObject=uuid_,
                                                 targetObject=member))
        return self._answer(objects)

    def _require_consultation(self, caller: Caller) -> None:
        """LeafClass answers and documents need the professional's authorisation on this DMP (TD0.3), or an
        access mode other than normal (bris de glace, centre 15). The refusal code is the simulator's own: the
        DMP's error table is not public."""
        ins = caller.patient_cx.split("^")[0]
        purpose = caller.attributes.get("urn:oasis:names:tc:xspa:1.0:subject:purposeofuse", ["normal"])[0]
        if purpose == "normal" and not self.patients.authorized(ins, caller.national_id):
            raise Refused(_err("DMPAccessDenied", "Professionnel non autorisé sur ce DMP (TD0.3 préalable)."))

    def _readable(self, stored: Stored, caller: Caller) -> bool:
        """A document masked to professionals is visible to its author only."""
        return "MASQUE_PS" not in stored.masked_codes or same_person(stored.author_id, caller.national_id)

    def _find(self, params: dict[str, list[str]], caller: Caller) -> list[Stored]:
        patient = _list(params.get("$XDSDocumentEntryPatientId"))
        if patient != [caller.patient_cx]:
            raise Refused(_err("XDSPatientIdDoesNotMatch", "Le patient de la requête diffère du jeton VIHF."))
        statuses = set(_list(params.get("$XDSDocumentEntryStatus"))) or {STATUS_APPROVED}
        types = set(_list(params.get("$XDSDocumentEntryTypeCode")))
        classes = set(_list(params.get("$XDSDocumentEntryClassCode")))
        formats = set(_list(params.get("$XDSDocumentEntryFormatCode")))
        authors = _list(params.get("$XDSDocumentEntryAuthorPerson"))
        conf = {c.split("^")[0] for c in _list(params.get("$XDSDocumentEntryConfidentialityCode"))}
        c_from = _one(params.get("$XDSDocumentEntryCreationTimeFrom"))
        c_to = _one(params.get("$XDSDocumentEntryCreationTimeTo"))
        s_from = _one(params.get("$XDSDocumentEntryServiceStartTimeFrom"))
        s_to = _one(params.get("$XDSDocumentEntryServiceStopTimeTo"))
        out = []
        for s in self.registry.by_patient(caller.patient_cx):
            eo = s.metadata
            if s.status not in statuses or not self._readable(s, caller):
                continue
            if (coded(eo, DE_FORMAT) or ebrim.Coded("", "")).code in DSG_FORMATS:
                continue  # signatures are found by GetDocuments, not listed with the documents
            if (types and not _code_in(eo, DE_TYPE, types)) or (classes and not _code_in(eo, DE_CLASS, classes)):
                continue
            if formats and not _code_in(eo, DE_FORMAT, formats):
                continue
            if conf and not conf & s.masked_codes:
                continue
            if authors and not any(_like(a, slot_value(c, "authorPerson"))
                                   for a in authors for c in classifications(eo, DE_AUTHOR)):
                continue
            created = slot_value(eo, "creationTime")
            if (c_from and created < c_from) or (c_to and created >= c_to):
                continue
            start, stop = slot_value(eo, "serviceStartTime"), slot_value(eo, "serviceStopTime")
            if (s_from and (not start or start < s_from)) or (s_to and (not stop or stop >= s_to)):
                continue
            out.append(s)
        return out

    # --- ITI-43 ------------------------------------------------------------------------------------------

    def retrieve(self, request: etree._Element, caller: Caller) -> tuple[etree._Element, dict[str, bytes]]:
        self._require_consultation(caller)
        resp = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB})
        attachments: dict[str, bytes] = {}
        errors: list[RegistryError] = []
        responses = []
        for i, dr in enumerate(request.iterfind(f"{{{XDSB}}}DocumentRequest")):
            repo = (dr.findtext(f"{{{XDSB}}}RepositoryUniqueId") or "").strip()
            uid = (dr.findtext(f"{{{XDSB}}}DocumentUniqueId") or "").strip()
            found = [s for s in self.registry.by_unique_id(uid)
                     if s.patient_id == caller.patient_cx and s.status != STATUS_DEPRECATED and s.content is not None
                     and self._readable(s, caller)]
            if repo != REPOSITORY_UNIQUE_ID or not found:
                errors.append(_err("XDSDocumentUniqueIdError", f"Document {uid} introuvable.", uid))
                continue
            cid = f"doc{i}@dmp.sandbox"
            attachments[cid] = found[-1].content or b""
            responses.append((repo, uid, found[-1].metadata.get("mimeType", "text/xml"), cid))
        resp.append(soap.registry_response(errors if errors and not responses else None))
        for repo, uid, mime, cid in responses:
            dr_el = etree.SubElement(resp, f"{{{XDSB}}}DocumentResponse")
            etree.SubElement(dr_el, f"{{{XDSB}}}RepositoryUniqueId").text = repo
            etree.SubElement(dr_el, f"{{{XDSB}}}DocumentUniqueId").text = uid
            etree.SubElement(dr_el, f"{{{XDSB}}}mimeType").text = mime
            soap.xop_include(etree.SubElement(dr_el, f"{{{XDSB}}}Document"), cid)
        return resp, attachments

    # --- ITI-57 / ITI-62 ---------------------------------------------------------------------------------

    def update(self, request: etree._Element, caller: Caller) -> etree._Element:
        rol = request.find(rim("RegistryObjectList"))
        objects = list(rol) if rol is not None else []
        entries = [o for o in objects if o.tag == rim("ExtrinsicObject")]
        associations = [o for o in objects if o.tag == rim("Association")]
        packages = [o for o in objects if o.tag == rim("RegistryPackage")]
        with self.registry.transaction():
            for ss in packages:  # kept, so that FindSubmissionSets answers with the updates' submission sets too
                members = {a.get("targetObject", "") for a in associations if a.get("sourceObject") == ss.get("id")
                           and a.get("associationType") in (HAS_MEMBER, UPDATE_STATUS)}
                self.registry.insert_package(ss, external_id(ss, SS_PATIENT_ID), slot_value(ss, "submissionTime"),
                                             sorted(m for m in members if m))
            for a in associations:
                if a.get("associationType") == UPDATE_STATUS:
                    target = self._own_patient(a.get("targetObject", ""), caller)
                    original, new = slot_value(a, "OriginalStatus"), slot_value(a, "NewStatus")
                    if original != _status_urn(target.status):
                        raise Refused(_err("XDSMetadataUpdateError", "Statut d'origine inexact."))
                    if new == STATUS_DELETED:
                        if not same_person(target.author_id, caller.national_id):
                            raise Refused(_err("XDSRegistryError", "Seul l'auteur du document peut le supprimer "
                                                                   "du DMP.", target.entry_uuid))
                        self.registry.delete_lid(target.lid)
                        continue
                    if new not in (STATUS_URNS["archived"], STATUS_URNS["approved"]):
                        raise Refused(_err("XDSMetadataUpdateError", f"Statut {new} refusé."))
                    if not (self._physician(caller) or same_person(target.author_id, caller.national_id)):
                        raise Refused(_err("XDSRegistryError", "Seul un médecin ou l'auteur du document peut "
                                                               "l'archiver ou le désarchiver.", target.entry_uuid))
                    self.registry.set_status(target.entry_uuid, new)
            for eo in entries:
                lid = eo.get("lid", "")
                current = [s for s in self.registry.by_patient(caller.patient_cx)
                           if s.lid == lid and s.status == STATUS_APPROVED]
                if not current:
                    raise Refused(_err("XDSMetadataUpdateError", "Aucune version en vigueur pour ce document."))
                old = current[-1]
                if external_id(eo, DE_UNIQUE_ID) != old.unique_id or external_id(eo, DE_PATIENT_ID) != old.patient_id:
                    raise Refused(_err("XDSMetadataUpdateError", "uniqueId ou patient modifié par la mise à jour."))
                if author_id_of(eo) != old.author_id:
                    raise Refused(_err("XDSMetadataUpdateError", "L'auteur d'un document ne peut être modifié."))
                self.registry.set_status(old.entry_uuid, STATUS_DEPRECATED)
                self.registry.insert(eo, None, version=old.version + 1, lid=lid)
        return soap.registry_response()

    @staticmethod
    def _physician(caller: Caller) -> bool:
        """[CDT] 3.3-120/140: archiving is for a médecin (profession 10, the VIHF's subject:role) or the author."""
        return "10" in caller.attributes.get("urn:oasis:names:tc:xacml:2.0:subject:role", [])

    def _own_patient(self, entry_uuid: str, caller: Caller) -> Stored:
        target = self.registry.by_uuid(entry_uuid)
        if target is None or target.patient_id != caller.patient_cx:
            raise Refused(_err("XDSUnknownDocument", f"Document {entry_uuid} introuvable pour ce patient."))
        return target


TRANSACTIONS = {soap.ACTION_ITI41: "TD2.1", soap.ACTION_ITI18: "TD3.1", soap.ACTION_ITI43: "TD3.2",
                soap.ACTION_ITI57: "TD3.3", hl7v3.TD02_ACTION: "TD0.2"}
STORED_QUERIES = {FIND_DOCUMENTS: "FindDocuments", GET_DOCUMENTS: "GetDocuments",
                  FIND_SUBMISSION_SETS: "FindSubmissionSets",
                  GET_SUBMISSION_SET_AND_CONTENTS: "GetSubmissionSetAndContents"}


def describe_call(action: str, env: etree._Element, caller: Caller, raw: bytes,
                  content_type: str = "") -> dict[str, str]:
    """One line of the call log: transaction, SOAP action, HL7v3 interaction or stored query, who, the raw bytes."""
    body = env.find(f"{{{soap.SOAP12}}}Body")
    request = body[0] if body is not None and len(body) else None
    query, return_type, interaction = "", "", ""
    if request is not None and request.tag == f"{{{QUERY}}}AdhocQueryRequest":
        aq = request.find(rim("AdhocQuery"))
        qid = aq.get("id", "") if aq is not None else ""
        query = STORED_QUERIES.get(qid, qid)
        option = request.find(f"{{{QUERY}}}ResponseOption")
        return_type = option.get("returnType", "") if option is not None else ""
    elif request is not None and etree.QName(request).namespace == hl7v3.HL7:
        interaction = hl7v3.interaction_of(request)
    transaction = TRANSACTIONS.get(action, "TD0.3" if interaction else action)
    return {"transaction": transaction, "action": action, "interaction": interaction, "stored_query": query,
            "return_type": return_type, "professional": caller.national_id, "content_type": content_type,
            "request_base64": base64.b64encode(raw).decode()}


def same_person(a: str, b: str) -> bool:
    """The same professional whether written as the RPPS (11 digits) or the national id (8 + RPPS)."""
    return bool(a) and a[-11:] == b[-11:]


def _status_urn(status: str) -> str:
    return status


def _list(values: list[str] | None) -> list[str]:
    """An ITI-18 list parameter ('a','b') or (…) over several Value elements -> the items."""
    out: list[str] = []
    for value in values or []:
        v = value.strip()
        if v.startswith("(") and v.endswith(")"):
            v = v[1:-1]
        for item in v.split(","):
            item = item.strip().strip("'")
            if item:
                out.append(item)
    return out


def _padded(stamp: str) -> str:
    """An XDS time to 14 digits, so that 2025052609 and 20250526090000 compare as the same instant."""
    return (stamp + "00000000000000")[:14]


def _one(values: list[str] | None) -> str:
    return (values or [""])[0].strip().strip("'")


def _code_in(eo: etree._Element, scheme: str, wanted: set[str]) -> bool:
    c = coded(eo, scheme)
    if c is None:
        return False
    return c.code in wanted or any(w.split("^")[0] == c.code for w in wanted)


def _like(pattern: str, value: str) -> bool:
    """XDS AuthorPerson matching: SQL-like % wildcards, else containment."""
    parts = pattern.split("%")
    if len(parts) == 1:
        return pattern in value
    pos = 0
    for part in parts:
        idx = value.find(part, pos)
        if idx < 0:
            return False
        pos = idx + len(part)
    return True
