"""The consent, rights and traces part as one bundle the composition root builds: the trace log, the consent
book, the CONF.21 notices, the rights (access policy and feeding gate), the DMP consultation use case and DICA."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.audit.access import DicaService
from agent.audit.consultation import DmpConsultation
from agent.audit.recorder import TraceLog
from agent.audit.rights import ConsentBook, DmpRights, Notices
from agent.clock import Clock
from agent.dmp.client import DmpClient
from agent.domain.dmp_params import DmpParameters
from agent.domain.habilitation import HabilitationMatrix
from agent.events import EventBus
from agent.store.crypto import ContentCipher
from agent.store.db import Database


@dataclass(frozen=True, slots=True)
class RightsPart:
    traces: TraceLog
    consents: ConsentBook
    notices: Notices
    rights: DmpRights
    consultation: DmpConsultation
    dica: DicaService


def build_rights(db: Database, clock: Clock, bus: EventBus, matrix: HabilitationMatrix, cipher: ContentCipher,
                 dmp: DmpClient | None, *, parameters: Callable[[], DmpParameters] = DmpParameters
                 ) -> RightsPart:
    traces = TraceLog(db, clock, cipher)
    consents = ConsentBook(db, clock, traces)
    notices = Notices(db, clock, bus, traces)
    rights = DmpRights(consents, notices, matrix, traces, bus)
    consultation = DmpConsultation(dmp, rights, traces, db, parameters=parameters)
    return RightsPart(traces, consents, notices, rights, consultation, DicaService(rights, traces, consultation))
