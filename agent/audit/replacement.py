"""A DMP replacement (TD2.1b), checked again when it leaves (MEMENTO "MASQUAGE", EX_3.3-1040/1045).

``OrderService.submit`` refuses a replacement that would hide from the patient or the legal representatives a version
they see. The previous version may be made visible afterwards, by TD3.3b during the order's cancellation delay or
while it waits for a card: ``ReplacementGuard`` wraps the DMP's ``DeliveryGateway`` so that the visibility TD3.3a/b
last set from this workstation (``agent.store.dmp_documents``) is compared again at the moment of sending. A
replacement that would now hide it fails with ``already_visible`` (permanent, traced by the queue) and nothing
reaches the DMP.
"""

from __future__ import annotations

import sqlite3

from agent.domain import dmp_rules
from agent.domain.delivery import DeliveryGateway, DeliveryJob, Lookup, Receipt
from agent.errors import Conflict, RefusedBeforeSending
from agent.store import orders as repo
from agent.store.db import Database
from agent.store.dmp_documents import last_visibility


class ReplacementGuard:
    def __init__(self, gateway: DeliveryGateway, db: Database) -> None:
        self._gateway = gateway
        self._db = db

    async def deliver(self, job: DeliveryJob) -> Receipt:
        if job.replaces:
            changed = await self._db.read(lambda c: _changed_since(c, job.replaces))
            if changed is not None:
                try:
                    dmp_rules.check_visibility_change(dmp_rules.Flags.of(changed), dmp_rules.Flags.of(job.visibility),
                                                      prefix="visibility.")
                except Conflict as hidden:
                    raise RefusedBeforeSending(hidden.message, service="dmp", code=hidden.code) from hidden
        return await self._gateway.deliver(job)

    async def find(self, lookup: Lookup) -> Receipt | None:
        return await self._gateway.find(lookup)


def _changed_since(conn: sqlite3.Connection, reference: str) -> dict[str, bool] | None:
    """The visibility TD3.3a/b last set here for the replaced version (named by its uniqueId or entryUUID)."""
    found = repo.fed_version(conn, reference)
    return last_visibility(conn, found[0].document_unique_id if found is not None else reference)
