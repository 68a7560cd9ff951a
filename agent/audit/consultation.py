"""Consulting and managing a patient's DMP, the one way every door does it: policy, call, filter, trace.

The API routes, the Vitale watcher and DICA all come here; none calls the DMP client for a consultation on its
own. Each operation checks the rights first (consent, CONF.21 notice, habilitation: ``DmpRights``), calls the DMP,
keeps only what this professional may read, and records the trace before the answer leaves: a trace that cannot
be written fails the operation (fail closed for DMP reads), and a refusal or a DMP error is traced too.

Without a configured DMP every operation answers 503 ``dmp_disabled``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.audit.access import DmpPresence
from agent.audit.recorder import TraceLog
from agent.audit.rights import DmpRights, access_mode
from agent.clock import parse_rfc3339
from agent.dmp.client import DmpClient
from agent.dmp.models import (
    Access,
    DocumentEntry,
    PatientDmpStatus,
    Professional,
    RetrievedDocument,
    SearchCriteria,
    Visibility,
)
from agent.domain import dmp_rules
from agent.domain.consent import ConsentChange, ConsentRecord, Consultation
from agent.domain.dmp_params import DmpParameters
from agent.domain.policy import Actor, TraceEvent
from agent.errors import AccessRefused, InvalidInput, RelaisError, Unavailable
from agent.store.db import Database
from agent.store.dmp_documents import record_visibility
from agent.store.ins_provenance import insi_oid

VISIBILITY_FLAGS = ("masked_to_ps", "invisible_to_patient", "invisible_to_legal_reps")


@dataclass(frozen=True, slots=True)
class Imported:
    """One document of a multi-select import: its entry and content, or the error that stopped it."""

    entry_uuid: str
    entry: DocumentEntry | None = None
    content: bytes | None = None
    error: RelaisError | None = None


def _created_after(entry: DocumentEntry, limit: dt.datetime) -> bool:
    """Counted as new unless its creation time says otherwise (a time the DMP gave without a zone counts)."""
    try:
        return parse_rfc3339(entry.creation_time) > limit
    except ValueError:
        return True


def _access(actor: Actor) -> Access:
    """The access mode the VIHF carries (PurposeOfUse): normal, bris de glace, centre 15, with its reason. Per
    request and in the name of the professional making it: an emergency mode never outlives the request that
    asked for it (EX_0.2-1040: "ne doit pas être persistant en dehors du temps de la session")."""
    mode = access_mode(actor)
    return Access(mode=mode.value, reason=actor.reason if mode.is_emergency else "")


def professional_of(actor: Actor) -> Professional:
    """The VIHF's professional for an actor: its CPS holder (a DMP call is always in a professional's name)."""
    if not actor.rpps:
        raise Unavailable("Aucune carte CPS : le DMP ne se consulte qu'avec l'identité du professionnel.",
                          code="cps_absent")
    return Professional(rpps=actor.rpps, family_name=actor.family_name, given_name=actor.given_name,
                        profession=actor.profession or "10", specialty=actor.specialty or "",
                        via_psc=actor.via_psc)


class DmpConsultation:
    def __init__(self, dmp: DmpClient | None, rights: DmpRights, traces: TraceLog, db: Database,
                 *, parameters: Callable[[], DmpParameters] = DmpParameters) -> None:
        self._dmp = dmp
        self.parameters = parameters  # the DMP's parameters in force (agent.dmp.params)
        self.rights = rights
        self._traces = traces
        self._db = db

    def _client(self) -> DmpClient:
        if self._dmp is None:
            raise Unavailable("Le DMP n'est pas configuré sur ce poste (section [dmp] du fichier de configuration).",
                              code="dmp_disabled")
        return self._dmp

    async def _trace(self, action: str, actor: Actor, ins: str, obj: str | None = None, outcome: str = "ok",
                     **details: Any) -> None:
        await self._traces.record(TraceEvent(action=action, actor=actor, ins=ins, object=obj, outcome=outcome,
                                             details=details))

    async def insi_oid(self, ins: str) -> str | None:
        """The OID INSi gave with this INS on this workstation; None: not obtained through INSi."""
        return await self._db.read(lambda c: insi_oid(c, ins))

    async def _identity(self, ins: str, oid: str, actor: Actor, operation: str) -> None:
        """EX_GEN-1530 and [CDT] 0.2-080 before any DMP call: an INS obtained through INSi, never a NIA
        (``agent.domain.dmp_rules``); the refusal is traced with its rule."""
        try:
            dmp_rules.check_identity(ins, oid, await self.insi_oid(ins), prefix="")
        except InvalidInput as refused:
            await self._trace("dmp.refused", actor, ins, outcome="refused", rule=refused.extra.get("rule", ""),
                              code=refused.code, operation=operation)
            raise

    async def _allowed(self, ins: str, oid: str, actor: Actor, operation: str) -> DmpClient:
        dmp = self._client()
        await self._identity(ins, oid, actor, operation)
        if access_mode(actor).is_emergency and not actor.reason:
            # Bris de glace and centre 15 are traced with their reason (issue 16, rule 9; [CDT] 3.1-150).
            raise InvalidInput.field("reason", "Indiquez le motif de l'accès en mode bris de glace ou centre 15 : "
                                               "il est enregistré dans les traces.", code="emergency_reason_missing")
        await self.rights.check_consultation(ins, actor)  # refusals are traced there
        await self._open(dmp, ins, oid, actor, operation, need_authorization=not access_mode(actor).is_emergency)
        return dmp

    async def _open(self, dmp: DmpClient, ins: str, oid: str, actor: Actor, operation: str,
                    *, need_authorization: bool) -> PatientDmpStatus:
        """The TD0.2 before every use of the DMP, in this professional's name, never a remembered answer (CNDA
        MEMENTO "TEST d'EXISTENCE"); traced, and refused here when the DMP is absent, closed, blocked for this
        professional or (to consult) not authorised."""
        try:
            status = await dmp.td02(ins, oid, professional_of(actor))
        except RelaisError as exc:
            await self._trace("dmp.td02", actor, ins, outcome=exc.code, operation=operation)
            raise
        await self._trace("dmp.td02", actor, ins, operation=operation, exists=status.exists, active=status.active,
                          authorized=status.authorized, blocked=status.blocked)
        try:
            dmp_rules.check_dmp_open(exists=status.exists, closed=status.exists and not status.active,
                                     blocked=status.blocked, authorized=status.authorized,
                                     need_authorization=need_authorization)
        except RelaisError as refused:
            await self._trace("dmp.refused", actor, ins, outcome="refused", rule=refused.extra.get("rule", ""),
                              code=refused.code, operation=operation)
            raise
        return status

    # --- TD0.3 -------------------------------------------------------------------------------------------

    async def authorize(self, ins: str, oid: str, actor: Actor, *, explicit: bool) -> PatientDmpStatus:
        """TD0.3: add this professional's authorisation, on their explicit request, once the patient's consent
        to the consultation is recorded ([CDT] 0.3-010); then a TD0.2 says what the DMP now holds."""
        dmp = self._client()
        await self._identity(ins, oid, actor, "authorize")
        record = await self.rights.consents.current(ins)
        try:
            dmp_rules.check_authorization_request(
                consent_granted=record is not None and record.dmp_consultation is Consultation.GRANTED,
                explicit=explicit)
        except RelaisError as refused:
            await self._trace("dmp.refused", actor, ins, outcome="refused", rule=refused.extra.get("rule", ""),
                              code=refused.code, operation="authorize")
            raise
        await self._open(dmp, ins, oid, actor, "authorize", need_authorization=False)
        try:
            code = await dmp.td03(ins, oid, add=True, professional=professional_of(actor))
        except RelaisError as exc:
            await self._trace("dmp.td03", actor, ins, outcome=exc.code, add=True)
            raise
        await self._trace("dmp.td03", actor, ins, add=True, ack=code)
        return await self._open(dmp, ins, oid, actor, "authorize", need_authorization=False)

    async def record_consent(self, ins: str, oid: str, change: ConsentChange,
                             actor: Actor) -> tuple[ConsentRecord, dict[str, Any] | None]:
        """Record the patient's consent; when it withdraws a granted consultation, this professional's TD0.3
        authorisation is removed from the DMP at once (issue 16, rule 9). The consent is recorded whatever the
        DMP answers; the second value says what became of the authorisation (None: nothing to do)."""
        before = await self.rights.consents.current(ins)
        record = await self.rights.consents.record(ins, change, actor)
        withdrawn = (before is not None and before.dmp_consultation is Consultation.GRANTED
                     and record.dmp_consultation is not Consultation.GRANTED)
        if not withdrawn or self._dmp is None or not actor.rpps:
            return record, None
        try:
            code = await self.withdraw(ins, oid, actor)
        except RelaisError as exc:
            return record, {"removed": False, "code": exc.code, "message": exc.message}
        return record, {"removed": code is not None}

    async def withdraw(self, ins: str, oid: str, actor: Actor) -> str | None:
        """TD0.3 removal of this professional's authorisation when the patient withdraws consent (rule 9); None
        when there was none to remove (no DMP call beyond the TD0.2)."""
        dmp = self._client()
        await self._identity(ins, oid, actor, "withdraw")
        status = await self._open(dmp, ins, oid, actor, "withdraw", need_authorization=False)
        if not status.authorized:
            return None
        try:
            code = await dmp.td03(ins, oid, add=False, professional=professional_of(actor))
        except RelaisError as exc:
            await self._trace("dmp.td03", actor, ins, outcome=exc.code, add=False)
            raise
        await self._trace("dmp.td03", actor, ins, add=False, ack=code)
        return code

    # --- TD3.1 / TD3.2 -----------------------------------------------------------------------------------

    async def search(self, ins: str, oid: str, criteria: SearchCriteria, actor: Actor) -> list[DocumentEntry]:
        """The documents this professional may read, newest first."""
        dmp = await self._allowed(ins, oid, actor, "search")
        return await self._readable(dmp.search(ins, oid, criteria, access=_access(actor)), ins, actor)

    async def added_since(self, ins: str, oid: str, since: str, actor: Actor) -> list[DocumentEntry]:
        """The documents added to the DMP since a date (FindSubmissionSets), those this professional may read."""
        dmp = await self._allowed(ins, oid, actor, "search")
        return await self._readable(dmp.documents_since(ins, oid, since, access=_access(actor)), ins, actor,
                                    since=since)

    async def _readable(self, found: Awaitable[list[DocumentEntry]], ins: str, actor: Actor,
                        **details: Any) -> list[DocumentEntry]:
        """A search's answer as the professional may see it (filtered, newest first), traced either way."""
        try:
            entries = await found
        except RelaisError as exc:
            await self._trace("dmp.search", actor, ins, outcome=exc.code)
            raise
        readable: list[DocumentEntry] = self.rights.filter_readable(entries, actor)
        await self._trace("dmp.search", actor, ins, count=len(readable), **details)
        readable.sort(key=lambda e: (e.creation_time, e.entry_uuid), reverse=True)
        return readable

    async def _readable_entry(self, dmp: DmpClient, ins: str, oid: str, entry_uuid: str,
                              actor: Actor) -> DocumentEntry:
        entry = await dmp.get_entry(ins, oid, entry_uuid, access=_access(actor))
        if not self.rights.may_read(entry, actor):
            raise AccessRefused("Votre profession ne vous permet pas de lire ce type de document.",
                                code="dmp_document_not_readable")
        return entry

    async def retrieve(self, ins: str, oid: str, entry_uuid: str, actor: Actor,
                       *, purpose: str = "") -> tuple[DocumentEntry, RetrievedDocument]:
        dmp = await self._allowed(ins, oid, actor, "retrieve")
        return await self._retrieve(dmp, ins, oid, entry_uuid, actor, purpose)

    async def _retrieve(self, dmp: DmpClient, ins: str, oid: str, entry_uuid: str, actor: Actor,
                        purpose: str) -> tuple[DocumentEntry, RetrievedDocument]:
        extra = {"purpose": purpose} if purpose else {}
        try:
            entry = await self._readable_entry(dmp, ins, oid, entry_uuid, actor)
            document = await dmp.retrieve(ins, oid, entry, access=_access(actor))
        except RelaisError as exc:
            await self._trace("dmp.retrieve", actor, ins, entry_uuid, outcome=exc.code, **extra)
            raise
        await self._trace("dmp.retrieve", actor, ins, entry.unique_id, **extra)
        return entry, document

    async def import_documents(self, ins: str, oid: str, entry_uuids: Sequence[str], actor: Actor) -> list[Imported]:
        """Several documents for the local record; one that fails does not stop the others."""
        dmp = await self._allowed(ins, oid, actor, "import")
        out: list[Imported] = []
        for entry_uuid in dict.fromkeys(entry_uuids):
            try:
                entry, document = await self._retrieve(dmp, ins, oid, entry_uuid, actor, "import")
            except RelaisError as exc:
                out.append(Imported(entry_uuid, error=exc))
                continue
            out.append(Imported(entry_uuid, entry, document.content))
        return out

    # --- TD3.3 -------------------------------------------------------------------------------------------

    async def set_visibility(self, ins: str, oid: str, entry_uuid: str, flags: dict[str, bool],
                             actor: Actor) -> DocumentEntry:
        dmp = await self._allowed(ins, oid, actor, "visibility")
        try:
            current, metadata = await dmp.get_entry_metadata(ins, oid, entry_uuid, access=_access(actor))
            if not self.rights.may_read(current, actor):
                raise AccessRefused("Votre profession ne vous permet pas de lire ce type de document.",
                                    code="dmp_document_not_readable")
            wanted = Visibility(**{**current.visibility.as_dict(), **flags})
            # Before the ITI-57: never hidden again once visible; never masked and invisible; a note de
            # vaccination never masked (agent.domain.dmp_rules).
            dmp_rules.check_visibility_change(dmp_rules.Flags.of(current.visibility.as_dict()),
                                              dmp_rules.Flags.of(wanted.as_dict()))
            dmp_rules.check_visibility(dmp_rules.Flags.of(wanted.as_dict()), type_code=current.type_code,
                                       allow_masked_and_invisible=self.parameters().allow_masked_and_invisible,
                                       prefix="")
            updated = await dmp.set_visibility(ins, oid, entry_uuid, wanted, metadata=metadata)
        except RelaisError as exc:
            await self._trace("dmp.visibility", actor, ins, entry_uuid, outcome=exc.code,
                              **({"rule": exc.extra["rule"]} if "rule" in exc.extra else {}))
            raise
        # What the patient now sees, for a later replacement of this document (TD2.1b, EX_3.3-1040).
        await self._db.write(lambda c: record_visibility(c, updated.unique_id, wanted.as_dict()))
        await self._trace("dmp.visibility", actor, ins, updated.unique_id, "ok", **wanted.as_dict())
        return updated

    async def set_archived(self, ins: str, oid: str, reference: str, actor: Actor, *, archived: bool) -> str:
        """TD3.3d ([CDT] 3.3-120 archive, 3.3-140 un-archive; the DMP lets a médecin or the document's author do
        it): the document looked up in ObjectRef mode just before (EX_3.1-1090, by entryUUID or uniqueId), then the
        ITI-57 status change; no search after. Returns the entryUUID changed. Traced with the rule either way."""
        operation = "archive" if archived else "unarchive"
        rule = "3.3-120" if archived else "3.3-140"
        dmp = await self._allowed(ins, oid, actor, operation)
        who = professional_of(actor)
        try:
            entry_uuid = await dmp.look_up(ins, oid, reference, who)
            await dmp.set_status(ins, oid, entry_uuid, archived=archived, professional=who)
        except RelaisError as exc:
            await self._trace(f"dmp.{operation}", actor, ins, reference, outcome=exc.code, rule=rule)
            raise
        await self._trace(f"dmp.{operation}", actor, ins, entry_uuid, rule=rule,
                          status="archived" if archived else "approved")
        return entry_uuid

    async def delete(self, ins: str, oid: str, entry_uuid: str, actor: Actor) -> None:
        """TD3.3c of a document this professional fed: the feeding profile suffices, no consultation right is
        needed ([CDT] 3.3-540)."""
        dmp = self._client()
        await self._identity(ins, oid, actor, "delete")
        await self._open(dmp, ins, oid, actor, "delete", need_authorization=False)
        try:
            await dmp.delete(ins, oid, entry_uuid)
        except RelaisError as exc:
            await self._trace("dmp.delete", actor, ins, entry_uuid, outcome=exc.code)
            raise
        await self._trace("dmp.delete", actor, ins, entry_uuid)

    # --- DICA's questions (agent.audit.access.DmpProbe) --------------------------------------------------

    async def dmp_status(self, ins: str, oid: str, actor: Actor) -> DmpPresence:
        """TD0.2 in this professional's name (DICA traces it)."""
        await self._identity(ins, oid, actor, "td02")
        status = await self._client().td02(ins, oid, professional_of(actor))
        return DmpPresence(exists=bool(status.exists and status.active), blocked=bool(status.blocked))

    async def documents_since(self, ins: str, oid: str, since: str | None, actor: Actor) -> list[DocumentEntry]:
        """The documents created since ``since`` (all of them without a date), for DICA's count when a patient's
        file opens (the Vitale insertion counts). This is the one automatic search the test book allows (MEMENTO
        "Recherche de documents", EX_3.1-1090/2030: each search is notified to the patient): a single FindDocuments,
        filtered here by creation time; FindSubmissionSets would cost one search per submission set, so it is kept
        for the explicit request (``added_since``). DICA filters and traces them."""
        await self._identity(ins, oid, actor, "search")
        entries = list(await self._client().search(ins, oid, SearchCriteria(), professional_of(actor),
                                                   access=_access(actor)))
        if not since:
            return entries
        limit = parse_rfc3339(since)
        return [e for e in entries if _created_after(e, limit)]
