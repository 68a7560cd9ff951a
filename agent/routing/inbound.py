"""The holder's side of forwarding, as use cases the peer API calls: accept a forwarded order, cancel one at
its origin's request, tell the origin the states of what it forwarded.

An order that arrives from another workstation gets every check an order from this workstation's LGC gets (the
send-order use cases' ``check_forward``: rules, validation, identity, the patient's opposition recorded here)
before it is stored, and this workstation's minimum delay (``[practice] forwarded_min_delay_seconds``), not only
the origin's deadline; then it is sent by the local queue like any other.
"""

from __future__ import annotations

from typing import Any

from agent.errors import InvalidInput
from agent.queue.service import OrderService
from agent.routing.forwarding import Forwarding
from agent.routing.protocol import Cancel, Forward, same_rpps


class Inbound:
    def __init__(self, *, forwarding: Forwarding, orders: OrderService) -> None:
        self.forwarding = forwarding
        self.orders = orders

    async def accept(self, origin: str, message: Forward) -> dict[str, Any]:
        self.forwarding.check_fresh(message)
        if not same_rpps(str(message.order.get("author_rpps", "")), message.author_rpps):
            raise InvalidInput("L'ordre transmis ne correspond pas à son contenu.", code="forward_mismatch")
        await self.orders.check_forward(message.order, message.payload, origin)
        outcome = await self.forwarding.accept(origin, message)
        return {"status": outcome.status, "state": outcome.state}

    async def cancel(self, origin: str, message: Cancel) -> dict[str, Any]:
        self.forwarding.check_fresh(message)
        if not await self.forwarding.record_cancel(origin, message):
            return {"state": "cancelled", "deliveries": []}
        order = await self.orders.cancel(message.order_id, f"poste:{origin}")
        states = await self.forwarding.states_for(origin, [message.order_id])
        return states.get(message.order_id) or {"state": order.state.value}

    async def states(self, origin: str, order_ids: list[str]) -> dict[str, Any]:
        return await self.forwarding.states_for(origin, order_ids)
