"""Forwarding send-orders to the workstation that holds the author's CPS, and the holder's side of it.

Origin side: orders whose author's CPS a peer holds are claimed (their deliveries become ``forwarded`` and the
intent is on disk before any request leaves), sent to the holder until it acknowledges (it stores an order id
once), then the holder's state is mirrored here. A cancel of a forwarded order is the holder's to decide.

Holder side (called by the send-order use cases, ``agent.queue.service``): a forward is applied once (its nonce
recorded, a replay refused), a cancel from the origin is recorded (a tombstone when the order never arrived), and
the origin may read the states of the orders it forwarded. The checks every order gets on this workstation
(identity, opposition, delay) are the use case's, not this module's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent.clock import Clock, rfc3339
from agent.errors import Conflict, NotFound, RelaisError, Unavailable
from agent.events import EventBus
from agent.logs import get_logger
from agent.queue.events import OrderEvents, QueueWaker
from agent.routing import queue_link
from agent.routing.peers import Peers
from agent.routing.protocol import Cancel, Forward, check_fresh, new_nonce, same_rpps
from agent.store import routing as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database

log = get_logger("routing")
FORWARD_CONCURRENCY = 8  # forwards in flight at once (their stores' commits are grouped)


class Forwarding:
    def __init__(self, *, peers: Peers, db: Database, cipher: ContentCipher, clock: Clock, bus: EventBus,
                 events: OrderEvents, waker: QueueWaker) -> None:
        self.peers = peers
        self.db = db
        self.cipher = cipher
        self.clock = clock
        self.bus = bus
        self.events = events
        self.waker = waker

    # --- origin side -------------------------------------------------------------------------------------

    async def forward_pass(self) -> None:
        local_rpps, _ = self.peers.card_state()
        now = self.clock.now().timestamp()
        await self._recall_stranded(local_rpps, now)
        pending = await self.db.read(queue_link.pending_forwards)
        candidates = await self.db.read(lambda c: queue_link.candidates(c, local_rpps))
        chosen = [(order_id, holder.name) for order_id, author in candidates
                  if (holder := self.peers.holder_of(author)) is not None]
        if chosen:
            def claim_all(conn: Any) -> list[tuple[str, str]]:
                return [(o, h) for o, h in chosen if queue_link.claim(conn, o, h, now)]

            claimed = await self.db.write(claim_all)
            pending.extend(claimed)
            await self._changed([order_id for order_id, _ in claimed])
        slots = asyncio.Semaphore(FORWARD_CONCURRENCY)

        async def send(order_id: str, holder: str) -> None:
            async with slots:
                await self.send_forward(order_id, holder)

        await asyncio.gather(*(send(o, h) for o, h in pending))

    async def _recall_stranded(self, local_rpps: str | None, now: float) -> None:
        """A forward its holder never acknowledged, while that holder does not answer: when the author's CPS is
        here, or at another workstation that answers, the order is taken back (sent from here, or forwarded
        there); the silent holder is told to drop its copy when it comes back."""
        recalled: list[str] = []
        for order_id, holder, author in await self.db.read(queue_link.unacknowledged):
            view = self.peers.peers.get(holder)
            if view is not None and view.reachable:
                continue  # it answers: the forward is simply sent again
            other = self.peers.holder_of(author)
            if not same_rpps(author, local_rpps) and (other is None or other.name == holder):
                continue  # nobody else could sign it: keep waiting for that holder
            if await self.db.write(lambda c, o=order_id: queue_link.recall_unacknowledged(c, o, now)):  # type: ignore[misc]
                log.warning("envoi %s repris au poste « %s », qui n'a jamais accusé réception", order_id, holder)
                recalled.append(order_id)
        if recalled:
            await self._changed(recalled)
            self.waker.wake()

    async def withdraw_pass(self) -> None:
        """Tell each holder that answers again to drop the forwards taken back from it (a cancel: cancelled
        during its delay, or a tombstone if it never got the order)."""
        for order_id, holder in await self.db.read(repo.withdrawals):
            view = self.peers.peers.get(holder)
            if view is None or not view.reachable:
                continue
            message = Cancel(order_id, self.clock.now(), new_nonce())
            try:
                await self.peers.call_peer(holder, "/peer/v1/cancel", message.to_json(), timeout=15)
            except Conflict as error:  # it had already sent it: the queue here asks the service before sending
                log.warning("envoi %s déjà parti du poste « %s » avant son retrait (%s)", order_id, holder,
                            error.code)
            except RelaisError as error:
                log.info("retrait de l'envoi %s auprès de « %s » : nouvel essai plus tard (%s)", order_id, holder,
                         error.code)
                continue
            await self.db.write(lambda c, o=order_id, h=holder: repo.withdrawn(c, o, h))  # type: ignore[misc]

    async def send_forward(self, order_id: str, holder: str) -> str | None:
        view = self.peers.peers.get(holder)
        if view is None or not view.reachable:
            return None
        meta, payload = await self.db.read(lambda c: queue_link.export(c, self.cipher, order_id))
        message = Forward(order_id, self.clock.now(), new_nonce(), str(meta["author_rpps"]), meta, payload)
        try:
            answer = await self.peers.call_peer(holder, "/peer/v1/forward", message.to_json())
        except Conflict as error:
            if error.code == "not_holder":
                await self.db.write(lambda c: queue_link.unclaim(c, order_id, self.clock.now().timestamp()))
                await self._changed([order_id])
            log.warning("envoi %s refusé par « %s » : %s", order_id, holder, error.code)
            return None
        except RelaisError as error:
            log.info("envoi %s : « %s » injoignable, nouvel essai plus tard (%s)", order_id, holder, error.code)
            return None
        remote = str(answer.get("state", "scheduled"))
        now = self.clock.now().timestamp()
        await self.db.write(lambda c: queue_link.forwarded(c, order_id, holder, remote, now))
        log.info("envoi %s transmis au poste « %s »", order_id, holder)
        self.bus.publish("order.forwarded", id=order_id, holder=holder, remote_state=remote)
        await self._changed([order_id])
        return remote

    async def mirror_pass(self) -> None:
        by_holder: dict[str, list[str]] = {}
        for row in await self.db.read(repo.open_outbound):
            by_holder.setdefault(row.holder, []).append(row.order_id)
        for holder, ids in by_holder.items():
            if holder not in self.peers.peers or not self.peers.peers[holder].reachable:
                continue
            try:
                answer = await self.peers.call_peer(holder, "/peer/v1/states", {"order_ids": ids})
            except RelaisError:
                continue
            await self._apply_remote(answer.get("orders") or {})

    async def _apply_remote(self, remote: dict[str, Any]) -> None:
        now = self.clock.now().timestamp()
        changed = await self.db.write(lambda c: queue_link.mirror(c, remote, now))
        for order_id in changed:
            info = remote.get(order_id) or {}
            self.bus.publish("order.forwarded", id=order_id, remote_state=str(info.get("state", "")))
        await self._changed(changed)

    async def annotate(self, data: dict[str, Any]) -> dict[str, Any]:
        """Add to an order's JSON where routing took it: the holder and its state, or the origin."""
        order_id = str(data.get("id", ""))

        def read(conn: Any) -> dict[str, Any] | None:
            row = repo.outbound(conn, order_id)
            if row is not None and row.state != "recalled":
                return {"forwarded_to": row.holder, "remote_state": row.remote_state,
                        "acknowledged": row.state == "forwarded"}
            origin = repo.inbound_origin(conn, order_id)
            return {"received_from": origin} if origin is not None else None

        found = await self.db.read(read)
        return {**data, "routing": found} if found is not None else data

    async def cancel_forwarded(self, order_id: str) -> str:
        """The origin's cancel of an order it forwarded: the holder decides (cancelled while the delay runs;
        409 already_sending / already_sent after); unreachable, nothing is promised (503), unless it never
        acknowledged the forward: then the order is taken back ("recalled") for the caller to cancel here."""
        row = await self.db.read(lambda c: repo.outbound(c, order_id))
        if row is None:
            raise NotFound("Cet envoi n'a pas été transmis à un autre poste.", code="not_forwarded")
        message = Cancel(order_id, self.clock.now(), new_nonce())
        try:
            answer = await self.peers.call_peer(row.holder, "/peer/v1/cancel", message.to_json(), timeout=15)
        except Unavailable as error:
            if row.state == "forwarding":
                # Never acknowledged: the order is taken back and cancelled here (the caller goes on with a
                # local cancel); the holder is told to drop it if it got it after all, as soon as it answers.
                now = self.clock.now().timestamp()
                if await self.db.write(lambda c: queue_link.recall_unacknowledged(c, order_id, now)):
                    log.warning("envoi %s repris au poste injoignable « %s » pour être annulé", order_id,
                                row.holder)
                    return "recalled"
            raise Unavailable(
                f"Le poste « {row.holder} », qui détient la carte CPS, est injoignable : l'annulation n'a pas pu "
                "lui être transmise. Réessayez.", code="peer_unreachable") from error
        now = self.clock.now().timestamp()
        # Acknowledged or not yet, the holder has now answered for this order: mirror what it said.
        await self.db.write(lambda c: queue_link.settle_cancel(c, order_id, row.holder, answer, now))
        await self._changed([order_id])
        return str(answer.get("state", "cancelled"))

    async def _changed(self, order_ids: list[str]) -> None:
        await self.events.changed(order_ids)


    # --- holder side -------------------------------------------------------------------------------------

    def check_fresh(self, message: Forward | Cancel) -> None:
        """A message older than the allowed age (or from a clock too far off) is refused."""
        check_fresh(message.at, self.clock.now(), self.peers.rules)

    async def accept(self, origin: str, message: Forward) -> queue_link.Accepted:
        """Store a forward once (the use case checked it); wakes the queue when it is new here."""
        now_dt = self.clock.now()
        local_rpps, _ = self.peers.card_state()
        now = now_dt.timestamp()
        min_delay = self.peers.settings.forwarded_min_delay_seconds
        outcome = await self.db.write(
            lambda c: queue_link.accept(c, self.cipher, origin, message, local_rpps, now, rfc3339(now_dt),
                                        min_delay=min_delay))
        if outcome.status == "stored":
            log.info("envoi %s reçu du poste « %s »", message.order_id, origin)
            self.bus.publish("order.received", id=message.order_id, origin=origin, author_rpps=message.author_rpps)
            self.waker.wake()
        await self._changed([message.order_id])
        return outcome

    async def record_cancel(self, origin: str, message: Cancel) -> bool:
        """Record the origin's cancel; False when the order never arrived here (a tombstone then refuses its
        forward if it lands later). NotFound when the order is another workstation's."""
        now = self.clock.now().timestamp()

        def record(conn: Any) -> bool:
            repo.record_nonce(conn, message.nonce, origin, now)
            known = repo.inbound_origin(conn, message.order_id)
            if known is None and queue_link.unknown_here(conn, message.order_id):
                repo.add_inbound(conn, message.order_id, origin, message.at.timestamp(), now)
                return False
            if known != origin:
                raise NotFound("Envoi inconnu de ce poste.", code="order_not_found")
            return True

        return await self.db.write(record)

    async def states_for(self, origin: str, order_ids: list[str]) -> dict[str, Any]:
        """The states of the orders ``origin`` forwarded here (others are not its business)."""
        def read(conn: Any) -> dict[str, Any]:
            mine = [i for i in order_ids if repo.inbound_origin(conn, i) == origin]
            return queue_link.states(conn, mine)

        return await self.db.read(read)
