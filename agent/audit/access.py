"""DICA without a click (SC.DMP/CONF.16, UX.13): gathers the facts and lets ``agent.domain.dica`` decide.

The DMP's existence comes from TD0.2 through ``DmpProbe``, a protocol the composition root adapts the DMP client
to; without one, or without a CPS, the existence is reported unknown with a French reason, never guessed. Each
TD0.2 call is traced. ``new_documents`` counts the documents this professional may read that were created since
the patient's DMP was last consulted from this agent (the traces say when).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.audit.recorder import TraceLog
from agent.audit.rights import DmpRights, access_mode
from agent.domain import dica
from agent.domain.consent import Consultation, Feeding
from agent.domain.ins import IdentityStatus
from agent.domain.policy import Actor, TraceEvent
from agent.errors import RelaisError

DECLARED_MAX = 1000


@dataclass(frozen=True, slots=True)
class DmpPresence:
    """What TD0.2 says for DICA: an active DMP, and whether the patient blocked this professional."""

    exists: bool
    blocked: bool = False


class DmpProbe(Protocol):
    async def dmp_status(self, ins: str, oid: str, actor: Actor) -> DmpPresence:
        """TD0.2 for this professional; raises a RelaisError when the DMP cannot say."""
        ...

    async def documents_since(self, ins: str, oid: str, since: str | None, actor: Actor) -> Sequence[Any]:
        """TD3.1 entries (with ``type_code`` / ``class_code``) created since ``since`` (all when None)."""
        ...


@dataclass(frozen=True, slots=True)
class Access:
    status: dica.DicaStatus
    new_documents: int | None
    last_consultation: str | None

    def as_dict(self) -> dict[str, Any]:
        return {**self.status.as_dict(), "new_documents": self.new_documents,
                "last_consultation": self.last_consultation}


class DicaService:
    def __init__(self, rights: DmpRights, traces: TraceLog, probe: DmpProbe | None) -> None:
        self.rights = rights
        self.traces = traces
        self.probe = probe
        # The identity status the LGC last declared per INS, in memory only, bounded.
        self._declared: OrderedDict[str, str] = OrderedDict()

    def declare_status(self, ins: str, status: str) -> None:
        self._declared[ins] = status
        self._declared.move_to_end(ins)
        while len(self._declared) > DECLARED_MAX:
            self._declared.popitem(last=False)

    def declared_status(self, ins: str) -> str | None:
        return self._declared.get(ins)

    async def evaluate(self, ins: str, oid: str, identity_status: str | None, actor: Actor,
                       *, count_new: bool = False) -> Access:
        mode = access_mode(actor)
        if identity_status is not None:
            self.declare_status(ins, identity_status)
        cps_present = bool(actor.rpps)
        presence, unknown_reason = await self._dmp_status(ins, oid, actor, cps_present)
        record = await self.rights.consents.current(ins)
        habilitation = (None if not actor.profession else
                        self.rights.matrix.column_for(actor.profession, actor.specialty) is not None)
        notice_ok = None if not actor.rpps else not await self.rights.notices.due_for(actor.rpps)
        facts = dica.DicaFacts(
            ins=ins, cps_present=cps_present, dmp_exists=presence.exists if presence else None,
            dmp_blocked=presence.blocked if presence else False, dmp_unknown_reason=unknown_reason,
            ins_qualified=None if identity_status is None else identity_status == IdentityStatus.QUAL,
            consultation=record.dmp_consultation if record else Consultation.UNKNOWN,
            feeding=record.dmp_feeding if record else Feeding.NON_OPPOSITION,
            mode=mode, habilitation=habilitation, notice_acknowledged=notice_ok,
        )
        status = dica.evaluate(facts)
        last = await self.traces.last_consultation(ins)
        new: int | None = None
        if count_new and status.can_read and self.probe is not None:
            new = await self._count_new(ins, oid, last, actor)
        return Access(status, new, last)

    async def _dmp_status(self, ins: str, oid: str, actor: Actor,
                          cps_present: bool) -> tuple[DmpPresence | None, str]:
        if self.probe is None:
            return None, "Le service DMP n'est pas disponible sur cet agent : existence du DMP non vérifiée."
        if not cps_present:
            return None, "L'existence du DMP ne peut être vérifiée sans carte CPS."
        if not actor.authenticated:
            # Never a DMP call in a professional's name before they entered their PIN (at start-up the cards
            # are read before anyone is at the keyboard); the watcher asks again at cps.login.
            return None, ("Saisissez le code PIN de votre carte CPS : le DMP n'est interrogé qu'au nom d'un "
                          "professionnel authentifié.")
        try:
            presence = await self.probe.dmp_status(ins, oid, actor)
        except RelaisError as error:
            await self.traces.record(TraceEvent("dmp.td02", actor, ins=ins, outcome="error",
                                                details={"code": error.code}))
            return None, f"Le DMP n'a pas pu répondre : {error.message}"
        await self.traces.record(TraceEvent("dmp.td02", actor, ins=ins,
                                            details={"exists": presence.exists, "blocked": presence.blocked}))
        return presence, ""

    async def _count_new(self, ins: str, oid: str, since: str | None, actor: Actor) -> int | None:
        assert self.probe is not None
        try:
            entries = await self.probe.documents_since(ins, oid, since, actor)
        except RelaisError as error:
            await self.traces.record(TraceEvent("dmp.new_documents", actor, ins=ins, outcome="error",
                                                details={"code": error.code, "purpose": "new_documents"}))
            return None
        readable = self.rights.filter_readable(entries, actor)
        await self.traces.record(TraceEvent("dmp.new_documents", actor, ins=ins,
                                            details={"purpose": "new_documents", "count": len(readable)}))
        return len(readable)
