"""The MSSanté part as the agent runs it: the sender and the queue's gateway over it, the acknowledgement
poller (DSN and MDN read from the mailbox onto their orders; a failed DSN fails its delivery with the reason in
French), the Annuaire santé directory, and what the order
answers show about MSSanté deliveries (Message-IDs, acknowledgements, the catalogue's correspondent proposal).

Never reads or logs a mail's content beyond the report fields; publishes ids only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agent.clock import Clock
from agent.connectivity import ConnectivityTracker
from agent.domain import catalogue
from agent.domain.ins import IdentityStatus
from agent.errors import RelaisError
from agent.events import EventBus
from agent.lifecycle import Lifecycle, cancel_and_wait
from agent.logs import get_logger
from agent.mss.acks import AckKind, AckOutcome, failure_reason
from agent.mss.directory import DirectoryClient
from agent.mss.gateway import MssDelivery
from agent.mss.orders import NOT_QUALIFIED_NOTE
from agent.mss.service import MssSender, autoconfig_status
from agent.store import mss_acks
from agent.store.db import Database

log = get_logger("mss")
INBOX = "INBOX"


class MssPart(Lifecycle):
    def __init__(self, *, db: Database, clock: Clock, bus: EventBus, connectivity: ConnectivityTracker,
                 sender: MssSender | None, interval: float, directory: DirectoryClient | None = None,
                 cse_address: str = catalogue.CSE_MSS_ADDRESS) -> None:
        self._db = db
        self.cse_address = cse_address
        self._clock = clock
        self._bus = bus
        self._connectivity = connectivity
        self.sender = sender  # None: MSSanté not configured (the directory may still be)
        self.gateway = MssDelivery(sender, on_sent=self.poll_soon) if sender is not None else None
        self.interval = interval
        self.directory = directory
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def status(self) -> dict[str, Any]:
        """``connectivity.mss`` of /v1/status: configured, sender, and the last mailbox reading's outcome."""
        sender = self.sender
        return {"connectivity": {"mss": {
            "configured": sender is not None, "sender": sender.settings.sender if sender is not None else None,
            "autoconfig": autoconfig_status(sender) if sender is not None else None,
            **self._connectivity.reading("mss").as_dict(), "directory": self.directory is not None}}}

    async def start(self) -> None:
        if self.sender is not None:
            self._task = asyncio.create_task(self._run(), name="mss-acks")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def poll_soon(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        first = True
        while True:
            if not first:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):  # not wait_for: see agent/events.py
                        await self._wake.wait()
                self._wake.clear()
                await asyncio.sleep(1.0)  # let the operator's reports for the message just sent arrive together
            first = False
            try:
                await self.poll_once()
            except RelaisError as exc:
                log.warning("lecture des accusés MSSanté impossible : %s", exc.code)
                self._connectivity.report("mss", False)
            except Exception:
                log.exception("lecture des accusés MSSanté")
                self._connectivity.report("mss", False)
            else:
                self._connectivity.report("mss", True)

    async def poll_once(self) -> int:
        """Read new reports, record them against their Message-IDs, announce the orders they concern."""
        if self.sender is None:
            return 0
        uidvalidity, last_uid = await self._db.read(lambda c: mss_acks.mailbox_position(c, INBOX))
        batch = await self.sender.read_acks(uidvalidity, last_uid)
        now = self._clock.now().timestamp()

        def save(conn: Any) -> list[str]:
            fresh: set[str] = set()
            for ack in batch.acks:
                row = mss_acks.AckRow(ack.original_message_id, ack.kind.value, ack.outcome.value, ack.status, ack.at)
                key = f"{ack.ack_message_id}|{ack.original_message_id}|{ack.kind.value}|{ack.recipient.lower()}"
                if ack.original_message_id and mss_acks.record_ack(conn, row, key, now):
                    fresh.add(ack.original_message_id)
                    if ack.kind is AckKind.DSN and ack.outcome is AckOutcome.ERROR:
                        mss_acks.mark_bounced(conn, ack.original_message_id, failure_reason(ack.status), now)
            mss_acks.set_mailbox_position(conn, INBOX, batch.uidvalidity, batch.last_uid)
            return mss_acks.orders_for_message_ids(conn, fresh)

        orders = await self._db.write(save)
        for order_id in orders:
            self._bus.publish("order.updated", order_id=order_id, acknowledgement=True)
        return len(orders)

    async def annotate(self, order: dict[str, Any]) -> dict[str, Any]:
        """Add each MSS delivery's Message-ID and acknowledgements to an order's JSON, and the catalogue's
        proposal when the document is one it sends to the médecin traitant / adresseur and no one is named."""
        suggestion = mss_suggestion(order, self.cse_address)
        if suggestion:
            order["mss_suggestion"] = suggestion
        sender = self.sender
        deliveries = [d for d in order.get("deliveries", []) if str(d.get("destination", "")).startswith("mss:")
                      or d.get("destination") == "patient_mss"]
        if deliveries and (order.get("patient") or {}).get("identity_status") != IdentityStatus.QUAL.value:
            order["mss_identity"] = NOT_QUALIFIED_NOTE  # INS/va1.53: no INS in the document or the message
        if sender is None:
            if deliveries:
                order["mss_warning"] = ("MSSanté n'est pas configurée sur cet agent (section [mss]) : les envois "
                                        "par messagerie attendront sa configuration.")
            return order
        order_id = str(order.get("id", ""))
        ids = {id(d): sender.message_id(order_id, str(d["destination"])) for d in deliveries}
        found = await self._db.read(lambda c: mss_acks.acks_for(c, ids.values()))
        for d in deliveries:
            rows = found.get(ids[id(d)], [])
            d["message_id"] = ids[id(d)]
            d["acknowledgements"] = [r.as_dict() for r in rows]
            d["acknowledgement"] = mss_acks.summary(rows)
        return order


def mss_suggestion(order: dict[str, Any], cse_address: str = catalogue.CSE_MSS_ADDRESS) -> str | None:
    """French advice when the Ségur catalogue sends this document type by MSSanté (M) and the order names no
    correspondent (the CSE platform does not count)."""
    document = catalogue.by_type_code(str((order.get("document") or {}).get("type_code", "")))
    if document is None or not catalogue.default_destinations(document, catalogue.Profession.MEDECIN).mss:
        return None
    named = [d for d in order.get("deliveries", []) if str(d.get("destination", "")).startswith("mss:")
             and d["destination"] != f"mss:{cse_address}"]
    if named:
        return None
    return (f"« {document.title} » est prévu pour le médecin traitant ou l'adresseur par MSSanté : "
            "ajoutez son adresse (recherche : GET /v1/directory?name=).")
