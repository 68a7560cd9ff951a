"""The rights the law ties to every DMP access, enforced: consent, CONF.21 notice, habilitation, feeding gate.

``DmpRights`` is the ``AccessPolicy`` and the ``FeedingGate`` of ``agent.domain.policy``: the DMP routes call
``check_consultation`` before TD3.1/TD3.2 and ``filter_readable`` on what comes back; the queue calls
``check_feeding`` before a DMP delivery. ``Notices`` keeps the CONF.21 acknowledgements; ``ConsentBook`` records
consent changes (each one traced). The emergency modes (bris de glace, centre 15) pass the consent check, are
traced as such and announced on the bus (``dmp.emergency_access``) so the tray can show them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from agent.clock import Clock, parse_rfc3339, rfc3339
from agent.domain import notices as conf21
from agent.domain.consent import (
    AccessMode,
    ConsentChange,
    ConsentRecord,
    Consultation,
    apply_change,
    may_consult,
    may_feed,
)
from agent.domain.habilitation import HabilitationMatrix
from agent.domain.policy import Actor, TraceEvent, TraceRecorder
from agent.errors import AccessRefused, FieldError, InvalidInput, NotFound, Unavailable
from agent.events import EventBus
from agent.store import consent as book
from agent.store.db import Database

ANNOUNCE_INTERVAL = 600.0  # seconds between two notice.due events for the same professional


def access_mode(actor: Actor) -> AccessMode:
    try:
        return AccessMode(actor.mode)
    except ValueError:
        raise AccessRefused(f"Mode d'accès inconnu : {actor.mode!r}.", code="mode_unknown") from None


class Notices:
    """CONF.21: per professional (RPPS), the notice is due every 180 days until acknowledged."""

    def __init__(self, db: Database, clock: Clock, bus: EventBus, traces: TraceRecorder) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._traces = traces
        self._announced: dict[str, float] = {}  # rpps -> monotonic time of the last notice.due

    async def state(self, rpps: str) -> conf21.NoticeState:
        text = await self._db.read(
            lambda conn: book.last_ack(conn, rpps, conf21.NOTICE_ID, conf21.NOTICE_VERSION))
        return conf21.state(rpps, parse_rfc3339(text) if text else None, self._clock.now())

    async def due_for(self, rpps: str) -> bool:
        """Whether the notice is due; if so, ``notice.due`` is announced (again after a quiet interval only,
        so repeated checks do not flood the tray)."""
        due = (await self.state(rpps)).due
        now = self._clock.monotonic()
        if due and now - self._announced.get(rpps, -ANNOUNCE_INTERVAL) >= ANNOUNCE_INTERVAL:
            self._announced[rpps] = now
            self._bus.publish("notice.due", notice_id=conf21.NOTICE_ID, rpps=rpps)
        return due

    async def acknowledge(self, notice_id: str, actor: Actor, *, authenticated: bool) -> conf21.NoticeState:
        """The professional's own statement: only the holder of the CPS whose session is open (PIN verified)
        acknowledges, in their name; a card merely inserted is not its holder at the keyboard."""
        if notice_id != conf21.NOTICE_ID:
            raise NotFound(f"Aucune information « {notice_id} » à valider.", code="notice_not_found")
        if not actor.rpps:
            raise Unavailable("Insérez votre carte CPS : l'information est validée au nom de son porteur.",
                              code="cps_absent")
        if not authenticated:
            raise Unavailable("Saisissez le code PIN de votre carte CPS (onglet Cartes) : l'information est "
                              "validée en votre nom, par vous seul.", code="cps_not_logged_in")
        rpps = actor.rpps
        at = rfc3339(self._clock.now())
        await self._db.write(lambda conn: book.add_ack(conn, rpps, notice_id, conf21.NOTICE_VERSION, at,
                                                       actor.workstation))
        # Acknowledging is the professional's own statement: traced with the client that showed the notice.
        self._announced.pop(rpps, None)
        await self._traces.record(TraceEvent("notice.acknowledged", actor, object=notice_id,
                                             details={"version": conf21.NOTICE_VERSION}))
        return await self.state(rpps)


class ConsentBook:
    """Reads and records the patient's consent; every change is traced (``consent.changed``)."""

    def __init__(self, db: Database, clock: Clock, traces: TraceRecorder) -> None:
        self._db = db
        self._clock = clock
        self._traces = traces

    async def current(self, ins: str) -> ConsentRecord | None:
        return await self._db.read(lambda conn: book.current(conn, ins))

    async def history(self, ins: str, limit: int = 100) -> list[ConsentRecord]:
        return await self._db.read(lambda conn: book.history(conn, ins, limit))

    async def record(self, ins: str, change: ConsentChange, actor: Actor) -> ConsentRecord:
        at = rfc3339(self._clock.now())

        def write(conn: sqlite3.Connection) -> ConsentRecord:
            record = apply_change(book.current(conn, ins), change, ins=ins, recorded_by=actor.rpps,
                                  workstation=actor.workstation, client=actor.client, recorded_at=at)
            book.add_record(conn, record)
            return record

        record = await self._db.write(write)
        await self._traces.record(TraceEvent(
            "consent.changed", actor, ins=ins, object=change.episode or None,
            details={"informed": record.informed, "dmp_consultation": record.dmp_consultation.value,
                     "dmp_feeding": record.dmp_feeding.value}))
        return record


class DmpRights:
    """AccessPolicy and FeedingGate over the consent book, the notices and the habilitation matrix."""

    def __init__(self, consents: ConsentBook, notices: Notices, matrix: HabilitationMatrix,
                 traces: TraceRecorder, bus: EventBus) -> None:
        self.consents = consents
        self.notices = notices
        self.matrix = matrix
        self._traces = traces
        self._bus = bus

    async def check_consultation(self, ins: str, actor: Actor) -> None:
        mode = access_mode(actor)
        try:
            await self._check(ins, actor, mode)
        except AccessRefused as refused:
            await self._traces.record(TraceEvent("dmp.access_refused", actor, ins=ins, outcome="refused",
                                                 details={"reason": refused.code}))
            raise
        if mode.is_emergency:
            await self._traces.record(TraceEvent("dmp.emergency_access", actor, ins=ins,
                                                 details={"mode": mode.value, "reason": actor.reason}))
            # No INS on the bus (events never carry patient data): the trace has it.
            self._bus.publish("dmp.emergency_access", mode=mode.value, rpps=actor.rpps,
                              workstation=actor.workstation)

    async def _check(self, ins: str, actor: Actor, mode: AccessMode) -> None:
        if not actor.rpps:
            raise AccessRefused("Aucune carte CPS : le DMP ne se consulte qu'avec l'identité du professionnel.",
                                code="cps_absent")
        if await self.notices.due_for(actor.rpps):
            raise AccessRefused(
                "Lisez et validez l'information sur la traçabilité des accès au DMP (« J'ai compris ») avant de "
                "consulter un DMP.", code="notice_due")
        record = await self.consents.current(ins)
        if not may_consult(record, mode):
            if record is not None and record.dmp_consultation is Consultation.REFUSED:
                raise AccessRefused("Le patient a refusé la consultation de son DMP.", code="consent_refused")
            raise AccessRefused("Le consentement du patient à la consultation de son DMP n'est pas enregistré.",
                                code="consent_missing")
        if self.matrix.column_for(actor.profession, actor.specialty) is None:
            raise AccessRefused(
                "La matrice d'habilitation ne permet pas à votre profession de consulter le DMP."
                if actor.profession else
                "La profession du porteur de la CPS est inconnue : la matrice d'habilitation ne peut être appliquée.",
                code="habilitation_denied")

    def filter_readable(self, entries: Sequence[Any], actor: Actor) -> list[Any]:
        return self.matrix.filter(entries, actor.profession, actor.specialty)

    def may_read(self, entry: Any, actor: Actor) -> bool:
        """For a single retrieval: the same rule as the search filter."""
        return bool(self.matrix.filter([entry], actor.profession, actor.specialty))

    async def check_feeding(self, ins: str) -> None:
        if not may_feed(await self.consents.current(ins)):
            message = "Le patient s'est opposé à l'alimentation de son DMP : le document n'y sera pas envoyé."
            raise InvalidInput(message, errors=[FieldError("destinations.dmp", message)], code="feeding_opposed")
