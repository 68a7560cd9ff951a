"""The patient's opposition, asked again when a DMP delivery leaves (issue 16, rule 9).

``OrderService.submit`` refuses a DMP order for a patient who opposed feeding; a patient may also oppose after the
order was accepted, during its cancellation delay or while it waits for a card. ``FeedingGuard`` wraps the DMP's
``DeliveryGateway`` so that the opposition recorded at the moment of sending stops it: the delivery fails with
``feeding_opposed`` (permanent: the queue records and traces it) and nothing reaches the DMP.
"""

from __future__ import annotations

from agent.domain.delivery import DeliveryGateway, DeliveryJob, Lookup, Receipt
from agent.domain.policy import FeedingGate
from agent.errors import InvalidInput, RefusedBeforeSending


class FeedingGuard:
    def __init__(self, gateway: DeliveryGateway, gate: FeedingGate) -> None:
        self._gateway = gateway
        self._gate = gate

    async def deliver(self, job: DeliveryJob) -> Receipt:
        try:
            await self._gate.check_feeding(job.lookup.ins)
        except InvalidInput as opposed:
            raise RefusedBeforeSending(opposed.message, service="dmp", code="feeding_opposed") from opposed
        return await self._gateway.deliver(job)

    async def find(self, lookup: Lookup) -> Receipt | None:
        return await self._gateway.find(lookup)
