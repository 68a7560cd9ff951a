"""The queue's view of MSSanté: ``DeliveryGateway`` (agent.domain.delivery) over ``MssSender``.

The receipt's id is the Message-ID fixed when the order was created; ``find`` reconciles by that Message-ID in the
sent folder, and with no delivery named (the queue's connectivity probe) only checks that the operator answers.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.domain.delivery import DeliveryJob, Lookup, Receipt
from agent.mss.service import MssSender, Outgoing


class MssDelivery:
    def __init__(self, sender: MssSender, on_sent: Callable[[], None] | None = None) -> None:
        self.sender = sender
        self._on_sent = on_sent  # a mail left: read its acknowledgements soon

    async def deliver(self, job: DeliveryJob) -> Receipt:
        lookup = job.lookup
        message_id = await self.sender.send(Outgoing(
            order_id=job.order_id, destination=job.destination, cda=job.cda, ins=lookup.ins, ins_oid=lookup.ins_oid,
            document_unique_id=lookup.document_unique_id, submission_set_unique_id=lookup.submission_set_unique_id,
            visibility=job.visibility, author_rpps=job.author_rpps, message=job.mss_message,
            cda_header=job.cda_header, identity_status=str(job.patient.get("identity_status", ""))))
        if self._on_sent is not None:
            self._on_sent()
        return Receipt(message_id)

    async def find(self, lookup: Lookup) -> Receipt | None:
        if not lookup.order_id or not lookup.destination:  # the queue's connectivity probe
            await self.sender.probe()
            return None
        found = await self.sender.find(lookup.order_id, lookup.destination)
        return Receipt(found) if found else None
