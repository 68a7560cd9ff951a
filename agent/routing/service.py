"""The routing service: the peer listener, presence, and forwarding orders to the holder of the author's CPS.

Started by the composition root with the store, the bus and two callables (this workstation's CPS, and the
queue's hooks). It stays idle until this workstation is in a practice (`relais practice init` / `join`, made by
the CLI in the same store), then:

- serves the peer listener (``server.py``) on ``[practice] peer_port``, mTLS with the practice's certificates;
- every ``presence_interval_seconds`` (and at once on a card event), tells each known peer which CPS it holds
  and learns theirs; the addresses come from the config (static), the join, peers' gossip and zeroconf: all are
  hints, since only the certificate says who answered;
- forwards orders whose author's CPS a peer holds (``queue_link``): the deliveries are marked ``forwarded``
  and the intent recorded before the request leaves, the same holder is asked again until it acknowledges (it
  stores an order id once), then the holder's state is mirrored;
- applies forwards and cancels from peers: fresh, never replayed, once per order id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from cryptography import x509

from agent.clock import Clock, rfc3339
from agent.config import PracticeSection
from agent.errors import AccessRefused, ConfigError, Conflict, InvalidInput, NotFound, RelaisError, Unavailable
from agent.events import EventBus
from agent.logs import get_logger
from agent.netbind import bind_exclusive, start_sites
from agent.routing import pki, practice, queue_link, tls
from agent.routing.client import PeerClient
from agent.routing.protocol import Cancel, Forward, Freshness, Presence, check_fresh, new_nonce, same_rpps
from agent.routing.server import create_peer_app
from agent.store import routing as repo
from agent.store.crypto import ContentCipher
from agent.store.db import Database

log = get_logger("routing")
ADDRESS_REFRESH_SECONDS = 300.0
FORWARD_CONCURRENCY = 8  # forwards in flight at once (their stores' commits are grouped)
CardState = Callable[[], tuple[str | None, bool]]  # (RPPS of the CPS in this workstation's reader, logged in)


class LocalOrders(Protocol):
    """What routing needs from the queue's service."""

    async def cancel(self, order_id: str, client_name: str = "") -> Any: ...

    async def on_executor_change(self, order_ids: list[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class PeerView:
    name: str
    host: str
    port: int
    rpps: str | None = None
    logged_in: bool = False
    reachable: bool = False
    last_seen: datetime | None = None
    last_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": f"{self.host}:{self.port}", "reachable": self.reachable,
                "cps": {"rpps": self.rpps, "logged_in": self.logged_in} if self.rpps else None,
                "last_seen": rfc3339(self.last_seen) if self.last_seen else None, "last_error": self.last_error}


def split_address(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise InvalidInput.field("peer", f"Adresse de poste invalide « {text} » (HÔTE:PORT attendu).")
    return host.strip("[]"), int(port)


class RoutingService:
    def __init__(self, *, settings: PracticeSection, workstation: str, data_dir: Path, db: Database,
                 cipher: ContentCipher, bus: EventBus, clock: Clock, card_state: CardState,
                 orders: LocalOrders | None = None, wake_queue: Callable[[], None] | None = None,
                 discovery: Callable[[RoutingService], Any] | None = None) -> None:
        self.settings = settings
        self.workstation = workstation
        self.data_dir = data_dir
        self.db = db
        self.cipher = cipher
        self.bus = bus
        self.clock = clock
        self.card_state = card_state
        self.orders = orders
        self.wake_queue = wake_queue or (lambda: None)
        self.discovery_factory = discovery
        self.rules = Freshness(max_age=timedelta(seconds=settings.message_max_age_seconds))
        self.member: repo.Membership | None = None
        self.ca_cert: x509.Certificate | None = None
        self.revoked: frozenset[int] = frozenset()
        self.peers: dict[str, PeerView] = {}
        self.port = 0
        self._own_der = b""
        self._runner: web.AppRunner | None = None
        self._client: PeerClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._signals: asyncio.Queue[str] = asyncio.Queue()
        self._next_full = 0.0
        self._watcher: asyncio.Task[None] | None = None
        self._discovery: Any = None
        self._cards: Any = None
        self._remembered: dict[tuple[str, int], tuple[str, float]] = {}

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        now = self.clock.now().timestamp()

        try:
            static = [split_address(address) for address in self.settings.static_peers]
        except InvalidInput as exc:
            raise ConfigError(exc.message, key="practice.static_peers") from exc

        def seed(conn: Any) -> None:
            for host, port in static:
                repo.remember_address(conn, host, port, "static")
            repo.prune_nonces(conn, now - self.rules.keep_nonces.total_seconds())

        await self.db.write(seed)
        await self._load()
        self._cards = self.bus.subscribe(maxsize=1000)
        self._watcher = asyncio.create_task(self._watch_bus(), name="relais-routing-events")
        self._task = asyncio.create_task(self._run(), name="relais-routing")

    async def stop(self) -> None:
        for task in (self._task, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._watcher = None
        if self._cards is not None:
            self._cards.close()
        if self._discovery is not None:
            with contextlib.suppress(Exception):
                await self._discovery.stop()
            self._discovery = None
        await self._close_links()

    async def _close_links(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    def wake(self) -> None:
        """Run a full round (presence, forwarding, mirroring) now."""
        self._signals.put_nowait("full")

    async def _load(self) -> None:
        member = await self.db.read(repo.membership)
        if member is None:
            return
        self.ca_cert = pki.load_cert(member.ca_pem)
        self.revoked = pki.load_crl(self.ca_cert, member.crl_pem).serials if member.crl_pem else frozenset()
        first = self._runner is None
        self.member = member
        if first:
            self._own_der = pki.cert_der(pki.load_cert(member.cert_pem))
            try:
                await self._open()
            except OSError as exc:
                await self._close_links()
                self.member = None  # tried again at the next round
                log.error("écoute des pairs impossible sur le port %d : %s", self.settings.peer_port, exc)

    async def _open(self) -> None:
        """Start the listener and the client once this workstation is in a practice."""
        assert self.member is not None
        app = create_peer_app(self)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        sockets = bind_exclusive(self.settings.peer_host, self.settings.peer_port)  # OSError: logged by _load
        self.port = await start_sites(self._runner, sockets,
                                      ssl_context=tls.server_context(self.data_dir, self.member.ca_pem))
        self._client = PeerClient(tls.client_context(self.data_dir, self.member.ca_pem), self.identify)
        log.info("poste « %s » du cabinet : écoute des pairs sur le port %d", self.member.workstation, self.port)
        if self.settings.discovery and self.discovery_factory is not None:
            try:
                self._discovery = self.discovery_factory(self)
                await self._discovery.start()
            except Exception as exc:  # discovery is a convenience; static peers still work
                log.warning("découverte des pairs indisponible : %s", exc)
                self._discovery = None

    async def _run(self) -> None:
        full = True
        while True:
            try:
                if full or self.member is None:
                    await self._load()  # joined, or a new CRL / removal made by the CLI
                    self._next_full = asyncio.get_running_loop().time() + self.settings.presence_interval_seconds
                    if self.member is not None:
                        await self.tick()
                elif self.orders is not None:
                    await self.forward_pass()  # a new order: forward it now, not at the next round
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything and try again
                log.exception("routage : erreur pendant un passage")
            full = await self._sleep()

    async def _sleep(self) -> bool:
        """Until the next round (True), or an order to forward (False); a card event or a peer change brings
        the round forward."""
        remaining = self._next_full - asyncio.get_running_loop().time()
        if remaining <= 0:
            return True
        try:
            signal = await asyncio.wait_for(self._signals.get(), remaining)
        except TimeoutError:
            return True
        full = signal == "full"
        while not self._signals.empty():
            full = self._signals.get_nowait() == "full" or full
        return full

    async def _watch_bus(self) -> None:
        assert self._cards is not None
        async for event in self._cards:
            if event.type in ("card.inserted", "card.removed", "cps.login", "cps.logout"):
                self.wake()
            elif event.type == "order.updated" and event.data.get("state") in queue_link.FORWARDABLE:
                self._signals.put_nowait("forward")

    # --- identity ----------------------------------------------------------------------------------------

    def identify(self, der: bytes) -> str:
        """The workstation a peer certificate names, after strict checks; AccessRefused otherwise."""
        if self.ca_cert is None:
            raise AccessRefused("Poste hors cabinet.", code="peer_refused")
        cert = x509.load_der_x509_certificate(der)
        try:
            return pki.verify_workstation(self.ca_cert, cert, self.clock.now(), self.revoked)
        except AccessRefused as error:
            if error.code == "peer_revoked":  # a genuine certificate of ours, removed: drop it from the list
                self.forget(pki.workstation_name(cert))
            raise

    def forget(self, name: str) -> None:
        if self.peers.pop(name, None) is not None:
            self.bus.publish("peer.changed", name=name, reachable=False, rpps=None, logged_in=False, removed=True)

    def own_certificate_der(self) -> bytes:
        return self._own_der

    async def accept_join(self, own_der: bytes, body: dict[str, Any], remote: str) -> dict[str, Any]:
        now = self.clock.now()
        outcome = await self.db.write(lambda c: practice.accept_join(c, self.data_dir, own_der, body, now))
        if not outcome.ok:
            log.warning("adhésion refusée depuis %s", remote)
            raise AccessRefused(outcome.response.get("detail") or "Code d'invitation refusé.",
                                code="pairing_refused")
        log.info("le poste « %s » a rejoint le cabinet", outcome.name)
        return outcome.response

    # --- presence ----------------------------------------------------------------------------------------

    async def my_presence(self) -> Presence:
        rpps, logged_in = self.card_state()
        assert self.member is not None
        known = tuple((p.host, p.port, p.name) for p in self.peers.values() if p.reachable)
        return Presence(self.member.workstation, self.port or self.settings.peer_port, rpps, logged_in,
                        self.member.crl_number, self.member.crl_pem.decode() if self.member.crl_pem else None, known,
                        self.clock.now())

    async def _learn(self, name: str, host: str, theirs: Presence) -> None:
        """Record what a verified peer said about itself; take its CRL when newer (the CA signed it)."""
        if name == self.workstation_name:
            return
        if theirs.crl_pem and self.member is not None and theirs.crl_number > self.member.crl_number:
            assert self.ca_cert is not None
            crl = pki.load_crl(self.ca_cert, theirs.crl_pem.encode())
            if await self.db.write(lambda c: repo.update_crl(c, crl.number, crl.pem)):
                log.info("liste de révocation du cabinet mise à jour (n° %d)", crl.number)
            await self._load()
        now = self.clock.now()
        # Addresses are written when new, or to refresh when they last answered (not at every exchange).
        seen = [(host, theirs.port, name, "peer")] + [
            (h, p, n, "gossip") for h, p, n in theirs.peers if n != self.workstation_name]
        fresh = [a for a in seen if self._remembered.get((a[0], a[1]), ("", 0.0))[0] != a[2]
                 or now.timestamp() - self._remembered[(a[0], a[1])][1] > ADDRESS_REFRESH_SECONDS]
        if fresh:
            def remember(conn: Any) -> None:
                for a_host, a_port, a_name, source in fresh:
                    ok_at = now.timestamp() if source == "peer" else None
                    repo.remember_address(conn, a_host, a_port, source, name=a_name, ok_at=ok_at)

            await self.db.write(remember)
            for a_host, a_port, a_name, _ in fresh:
                self._remembered[(a_host, a_port)] = (a_name, now.timestamp())
        skewed = theirs.at is not None and abs(theirs.at - now) > self.rules.max_skew
        warning = f"Horloge décalée de {abs(theirs.at - now).total_seconds():.0f} s : les envois attendront." \
            if skewed and theirs.at is not None else None
        self._update(PeerView(name, host, theirs.port, theirs.rpps, theirs.logged_in, True, now, warning))

    def _update(self, view: PeerView) -> None:
        old = self.peers.get(view.name)
        self.peers[view.name] = view
        if old is None or (old.rpps, old.logged_in, old.reachable) != (view.rpps, view.logged_in, view.reachable):
            self.bus.publish("peer.changed", name=view.name, reachable=view.reachable,
                             rpps=view.rpps, logged_in=view.logged_in)
            self.wake()

    @property
    def workstation_name(self) -> str:
        return self.member.workstation if self.member else self.workstation

    async def on_presence(self, name: str, host: str, theirs: Presence, der: bytes = b"") -> Presence:
        await self._learn(name, host, theirs)
        if der:
            self.identify(der)  # removed from the practice while we were recording it: refuse and forget
        return await self.my_presence()

    async def tick(self) -> None:
        await self.exchange_presence()
        if self.orders is not None:
            await self.forward_pass()
            await self.mirror_pass()

    async def exchange_presence(self) -> None:
        addresses = await self.db.read(repo.addresses)
        if self._discovery is not None:
            addresses += [(h, p, None, "zeroconf") for h, p in self._discovery.hints()]
        tried: set[str] = set()
        mine = (await self.my_presence()).to_json()
        results = await asyncio.gather(*(self._hello(h, p, n, mine) for h, p, n, _ in addresses
                                         if (h, p) != ("", 0)), return_exceptions=True)
        for result in results:
            if isinstance(result, str):
                tried.add(result)
        stale = self.clock.now() - timedelta(seconds=3 * self.settings.presence_interval_seconds)
        for view in list(self.peers.values()):
            if view.name not in tried and view.reachable and (view.last_seen is None or view.last_seen < stale):
                self._update(replace(view, reachable=False, last_error="injoignable"))

    async def _hello(self, host: str, port: int, name: str | None, mine: dict[str, Any]) -> str | None:
        if self.member is None or (host, port) == self._self_address():
            return None
        try:
            answered_by, data = await self.call(host, port, "/peer/v1/presence", mine, timeout=5)
        except RelaisError as error:
            if name and name in self.peers and self.peers[name].host == host and self.peers[name].port == port:
                self._update(replace(self.peers[name], reachable=False, last_error=error.message))
            return None
        if answered_by == self.workstation_name:
            return None
        await self._learn(answered_by, host, Presence.from_json(data))
        return answered_by

    def _self_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port) if self.settings.peer_host in ("127.0.0.1", "0.0.0.0") else ("", 0)  # noqa: S104

    def holder_of(self, rpps: str) -> PeerView | None:
        """The reachable peer holding this CPS (logged in first)."""
        holders = [p for p in self.peers.values() if p.reachable and same_rpps(p.rpps, rpps)]
        holders.sort(key=lambda p: not p.logged_in)
        return holders[0] if holders else None

    def peers_json(self) -> list[dict[str, Any]]:
        return [p.as_json() for p in sorted(self.peers.values(), key=lambda p: p.name)]

    async def status(self) -> dict[str, Any]:
        return {"peers": self.peers_json()}

    # --- client ------------------------------------------------------------------------------------------

    async def call(self, host: str, port: int, path: str, payload: dict[str, Any], *, timeout: float = 30,
                   expect: str | None = None) -> tuple[str, dict[str, Any]]:
        """POST to a peer over mTLS; returns (the workstation its certificate names, the JSON answer)."""
        if self._client is None:
            raise Unavailable("Poste hors cabinet.", code="not_paired")
        return await self._client.post(host, port, path, payload, timeout=timeout, expect=expect,
                                       revoked=self.revoked)

    async def call_peer(self, name: str, path: str, payload: dict[str, Any], *, timeout: float = 30
                        ) -> dict[str, Any]:
        view = self.peers.get(name)
        if view is None:
            raise Unavailable(f"Le poste « {name} » est inconnu ou injoignable.", code="peer_unreachable")
        return (await self.call(view.host, view.port, path, payload, timeout=timeout, expect=name))[1]

    # --- forwarding: origin side -------------------------------------------------------------------------

    async def forward_pass(self) -> None:
        local_rpps, _ = self.card_state()
        now = self.clock.now().timestamp()
        pending = await self.db.read(queue_link.pending_forwards)
        candidates = await self.db.read(lambda c: queue_link.candidates(c, local_rpps))
        chosen = [(order_id, holder.name) for order_id, author in candidates
                  if (holder := self.holder_of(author)) is not None]
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

    async def send_forward(self, order_id: str, holder: str) -> str | None:
        view = self.peers.get(holder)
        if view is None or not view.reachable:
            return None
        meta, payload = await self.db.read(lambda c: queue_link.export(c, self.cipher, order_id))
        message = Forward(order_id, self.clock.now(), new_nonce(), str(meta["author_rpps"]), meta, payload)
        try:
            answer = await self.call_peer(holder, "/peer/v1/forward", message.to_json())
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
            if holder not in self.peers or not self.peers[holder].reachable:
                continue
            try:
                answer = await self.call_peer(holder, "/peer/v1/states", {"order_ids": ids})
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
        409 already_sending / already_sent after); unreachable, nothing is promised (503)."""
        row = await self.db.read(lambda c: repo.outbound(c, order_id))
        if row is None:
            raise NotFound("Cet envoi n'a pas été transmis à un autre poste.", code="not_forwarded")
        message = Cancel(order_id, self.clock.now(), new_nonce())
        try:
            answer = await self.call_peer(row.holder, "/peer/v1/cancel", message.to_json(), timeout=15)
        except Unavailable as error:
            raise Unavailable(
                f"Le poste « {row.holder} », qui détient la carte CPS, est injoignable : l'annulation n'a pas pu "
                "lui être transmise. Réessayez.", code="peer_unreachable") from error
        now = self.clock.now().timestamp()
        # Acknowledged or not yet, the holder has now answered for this order: mirror what it said.
        await self.db.write(lambda c: queue_link.settle_cancel(c, order_id, row.holder, answer, now))
        await self._changed([order_id])
        return str(answer.get("state", "cancelled"))

    async def _changed(self, order_ids: list[str]) -> None:
        if order_ids and self.orders is not None:
            await self.orders.on_executor_change(order_ids)

    # --- forwarding: holder side -------------------------------------------------------------------------

    async def receive_forward(self, origin: str, message: Forward) -> dict[str, Any]:
        now_dt = self.clock.now()
        check_fresh(message.at, now_dt, self.rules)
        local_rpps, _ = self.card_state()
        now = now_dt.timestamp()
        outcome = await self.db.write(
            lambda c: queue_link.accept(c, self.cipher, origin, message, local_rpps, now, rfc3339(now_dt)))
        if outcome.status == "stored":
            log.info("envoi %s reçu du poste « %s »", message.order_id, origin)
            self.bus.publish("order.received", id=message.order_id, origin=origin, author_rpps=message.author_rpps)
            self.wake_queue()
        await self._changed([message.order_id])
        return {"status": outcome.status, "state": outcome.state}

    async def receive_cancel(self, origin: str, message: Cancel) -> dict[str, Any]:
        now_dt = self.clock.now()
        check_fresh(message.at, now_dt, self.rules)

        def record(conn: Any) -> bool:
            """False when the order never arrived: a tombstone then refuses it if its forward lands later."""
            repo.record_nonce(conn, message.nonce, origin, now_dt.timestamp())
            known = repo.inbound_origin(conn, message.order_id)
            if known is None and queue_link.unknown_here(conn, message.order_id):
                repo.add_inbound(conn, message.order_id, origin, message.at.timestamp(), now_dt.timestamp())
                return False
            if known != origin:
                raise NotFound("Envoi inconnu de ce poste.", code="order_not_found")
            return True

        if not await self.db.write(record):
            return {"state": "cancelled", "deliveries": []}
        assert self.orders is not None
        order = await self.orders.cancel(message.order_id, f"poste:{origin}")
        states = await self.db.read(lambda c: queue_link.states(c, [message.order_id]))
        return states.get(message.order_id) or {"state": getattr(order.state, "value", "cancelled")}

    async def states_for(self, origin: str, order_ids: list[str]) -> dict[str, Any]:
        def read(conn: Any) -> dict[str, Any]:
            mine = [i for i in order_ids if repo.inbound_origin(conn, i) == origin]
            return queue_link.states(conn, mine)

        return await self.db.read(read)


def card_state_from(cards: Any) -> CardState:
    """Adapt the cards service (``cps_holder()`` -> object with rpps, logged_in, or None)."""
    def state() -> tuple[str | None, bool]:
        if cards is None:
            return None, False
        holder = cards.cps_holder()
        if holder is None:
            return None, False
        rpps = getattr(holder, "rpps", None)
        return (str(rpps) if rpps else None), bool(getattr(holder, "logged_in", False))

    return state

