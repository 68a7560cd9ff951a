"""What the queue tells the rest of the agent when orders change, and how others wake it.

``OrderEvents`` publishes ``order.updated`` (ids, states, the French reason of a failure; never patient data) for
every change, whoever made it: the API, the executor, the forwarding to another workstation. ``QueueWaker`` is the
one signal the executor waits on between its passes; anything that changes orders in the store pokes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from agent.domain.orders import DeliveryState
from agent.events import EventBus
from agent.logs import redact
from agent.store import orders as repo
from agent.store.db import Database


class QueueWaker:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()


class OrderEvents:
    def __init__(self, db: Database, bus: EventBus) -> None:
        self._db = db
        self._bus = bus

    def publish(self, order: repo.OrderView) -> None:
        # The French reason of a failure is for the doctor's notification; it names no patient.
        reason = next((d.last_error for d in order.deliveries if d.state is DeliveryState.FAILED and d.last_error),
                      None)
        self._bus.publish("order.updated", id=order.id, state=order.state.value, type_code=order.type_code,
                          deliveries=[{"destination": d.destination, "state": d.state.value}
                                      for d in order.deliveries],
                          **({"reason": redact(reason)} if reason else {}))

    def publish_raw(self, event: str, **data: Any) -> None:
        self._bus.publish(event, **data)

    async def changed(self, order_ids: Iterable[str]) -> None:
        """Publish the current state of each order (read once from the store)."""
        ids = list(dict.fromkeys(order_ids))
        if not ids:
            return

        def load(conn: Any) -> list[repo.OrderView]:
            return [o for o in (repo.load_order(conn, i) for i in ids) if o is not None]

        for order in await self._db.read(load):
            self.publish(order)
