"""The consent, rights and traces part as one bundle the composition root builds and installs on Services."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.audit.access import DicaService, DmpProbe
from agent.audit.recorder import TraceLog
from agent.audit.rights import ConsentBook, DmpRights, Notices
from agent.audit.vitale import VitaleWatch
from agent.clock import Clock
from agent.domain.habilitation import HabilitationMatrix
from agent.events import EventBus
from agent.store.crypto import ContentCipher
from agent.store.db import Database


@dataclass
class RightsPart:
    traces: TraceLog
    consents: ConsentBook
    notices: Notices
    rights: DmpRights
    dica: DicaService
    watches: list[VitaleWatch] = field(default_factory=list)

    async def close(self) -> None:
        for watch in self.watches:
            await watch.stop()
        self.watches.clear()


def build_rights(db: Database, clock: Clock, bus: EventBus, matrix: HabilitationMatrix,
                 probe: DmpProbe | None = None, cipher: ContentCipher | None = None) -> RightsPart:
    traces = TraceLog(db, clock, cipher)
    consents = ConsentBook(db, clock, traces)
    notices = Notices(db, clock, bus, traces)
    rights = DmpRights(consents, notices, matrix, traces, bus)
    return RightsPart(traces, consents, notices, rights, DicaService(rights, traces, probe))
