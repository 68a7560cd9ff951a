"""The routing loop: presence with the practice's peers, then forwarding and mirroring, every round.

Started by the composition root after the peers (``peers.py``), the forwarding (``forwarding.py``) and the peer
API it serves once this workstation is in a practice.
A round runs every ``presence_interval_seconds``, at once on a card event or a peer change, and a lighter pass
(forwarding only) when an order becomes forwardable. The loop survives anything and tries again; it never touches
the local queue's sending.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent.events import EventBus, Subscription
from agent.lifecycle import Lifecycle, cancel_and_wait
from agent.logs import get_logger
from agent.routing import queue_link
from agent.routing.forwarding import Forwarding
from agent.routing.peers import PeerAppFactory, Peers

log = get_logger("routing")


class RoutingService(Lifecycle):
    def __init__(self, *, peers: Peers, forwarding: Forwarding, bus: EventBus, peer_app: PeerAppFactory) -> None:
        self.peers = peers
        self._peer_app = peer_app  # the peer API (agent.api.peer) the listener serves
        self.forwarding = forwarding
        self._bus = bus
        self._next_full = 0.0
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._events: Subscription | None = None

    async def start(self) -> None:
        await self.peers.start()
        self._events = self._bus.subscribe(maxsize=1000)
        self._watcher = asyncio.create_task(self._watch_bus(self._events), name="relais-routing-events")
        self._task = asyncio.create_task(self._run(), name="relais-routing")

    async def stop(self) -> None:
        for task in (self._task, self._watcher):
            await cancel_and_wait(task)
        self._task = self._watcher = None
        if self._events is not None:
            self._events.close()
        await self.peers.stop()

    async def status(self) -> dict[str, Any]:
        return await self.peers.status()

    async def tick(self) -> None:
        """One full round: presence, withdrawals of forwards taken back, then forwarding and mirroring."""
        await self.peers.exchange_presence()
        await self.forwarding.withdraw_pass()
        await self.forwarding.forward_pass()
        await self.forwarding.mirror_pass()

    async def _run(self) -> None:
        full = True
        while True:
            try:
                if full or self.peers.member is None:
                    await self.peers.load(self._peer_app)  # joined, or a new CRL / removal made by the CLI
                    interval = self.peers.settings.presence_interval_seconds
                    self._next_full = asyncio.get_running_loop().time() + interval
                    if self.peers.member is not None:
                        await self.tick()
                else:
                    await self.forwarding.forward_pass()  # a new order: forward it now, not at the next round
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything and try again
                log.exception("routage : erreur pendant un passage")
            full = await self._sleep()

    async def _sleep(self) -> bool:
        """Until the next round (True), or an order to forward (False); a card event or a peer change brings
        the round forward."""
        signals = self.peers.signals
        remaining = self._next_full - asyncio.get_running_loop().time()
        if remaining <= 0:
            return True
        try:
            async with asyncio.timeout(remaining):  # not wait_for: see agent/events.py
                signal = await signals.get()
        except TimeoutError:
            return True
        full = signal == "full"
        while not signals.empty():
            full = signals.get_nowait() == "full" or full
        return full

    async def _watch_bus(self, events: Subscription) -> None:
        async for event in events:
            if event.type in ("card.inserted", "card.removed", "cps.login", "cps.logout"):
                self.peers.wake()
            elif event.type == "order.updated" and event.data.get("state") in queue_link.FORWARDABLE:
                self.peers.signals.put_nowait("forward")
