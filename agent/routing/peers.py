"""The practice's peers: membership, the peer listener, presence, and calls to other workstations.

Idle until this workstation is in a practice (`relais practice init` / `join`, made by the CLI in the same store),
then it serves the peer API (``agent.api.peer``) on ``[practice] peer_port`` over mTLS with the practice's
certificates, and tells each known peer which CPS it holds (presence) while learning theirs. Addresses come from
the configuration (static), the join, peers' gossip and zeroconf: all are hints, since only the certificate says
who answered. A change that matters (a peer's CPS, reachability) wakes the routing loop (``signals``), which
also opens the listener with the peer API it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509

from agent.clock import Clock, rfc3339
from agent.config import PracticeSection
from agent.errors import AccessRefused, ConfigError, InvalidInput, RelaisError, Unavailable
from agent.events import EventBus
from agent.lifecycle import Lifecycle
from agent.logs import get_logger
from agent.netbind import bind_exclusive, start_sites
from agent.routing import pki, practice, tls
from agent.routing.client import PeerClient
from agent.routing.protocol import Freshness, Presence, same_rpps
from agent.store import routing as repo
from agent.store.db import Database

log = get_logger("routing")
ADDRESS_REFRESH_SECONDS = 300.0
CardState = Callable[[], tuple[str | None, bool]]  # (RPPS of the CPS in this workstation's reader, logged in)
PeerAppFactory = Callable[[], web.Application]  # the peer API (agent.api.peer), made anew for each listener
Discovery = Callable[["Peers"], Any]


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
    if not sep or not (port.isascii() and port.isdigit()) or not host or not 0 < int(port) < 65536:
        raise InvalidInput.field("peer", f"Adresse de poste invalide « {text} » (HÔTE:PORT attendu).")
    return host.strip("[]"), int(port)


class Peers(Lifecycle):
    def __init__(self, *, settings: PracticeSection, workstation: str, data_dir: Path, db: Database, bus: EventBus,
                 clock: Clock, card_state: CardState, discovery: Discovery | None = None) -> None:
        self.settings = settings
        self.workstation = workstation
        self.data_dir = data_dir
        self.db = db
        self.bus = bus
        self.clock = clock
        self.card_state = card_state
        self.discovery_factory = discovery
        self.rules = Freshness(max_age=timedelta(seconds=settings.message_max_age_seconds))
        self.member: repo.Membership | None = None
        self.ca_cert: x509.Certificate | None = None
        self.revoked: frozenset[int] = frozenset()
        self._serials: dict[str, int] = {}  # workstation -> serial of the certificate it last presented
        self.refused = 0  # peer connections refused since the start (removed or foreign workstations)
        self.peers: dict[str, PeerView] = {}
        self.port = 0
        self.signals: asyncio.Queue[str] = asyncio.Queue()  # "full": a round of presence and forwarding now
        self._own_der = b""
        self._runner: web.AppRunner | None = None
        self._client: PeerClient | None = None
        self._discovery: Any = None
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

    async def stop(self) -> None:
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
        """Ask the routing loop for a full round (presence, forwarding, mirroring) now."""
        self.signals.put_nowait("full")

    async def load(self, peer_app: PeerAppFactory | None = None) -> None:
        """Read the membership (joined, or a new CRL / removal made by the CLI); with ``peer_app`` (the routing
        loop's), open the listener serving it and the client, once."""
        member = await self.db.read(repo.membership)
        if member is None:
            return
        self.ca_cert = pki.load_cert(member.ca_pem)
        self.revoked = pki.load_crl(self.ca_cert, member.crl_pem).serials if member.crl_pem else frozenset()
        for name, serial in list(self._serials.items()):  # removed since it last spoke: gone now, not next round
            if serial in self.revoked:
                self.forget(name)
        first = self._runner is None
        self.member = member
        if first and peer_app is not None:
            self._own_der = pki.cert_der(pki.load_cert(member.cert_pem))
            try:
                await self._open(peer_app)
            except OSError as exc:
                await self._close_links()
                self.member = None  # tried again at the next round
                log.error("écoute des pairs impossible sur le port %d : %s", self.settings.peer_port, exc)

    async def _open(self, peer_app: PeerAppFactory) -> None:
        """Start the listener and the client once this workstation is in a practice."""
        assert self.member is not None
        app = peer_app()
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0,
                                     keepalive_timeout=self.settings.peer_idle_timeout_seconds)
        await self._runner.setup()
        sockets = bind_exclusive(self.settings.peer_host, self.settings.peer_port)  # OSError: logged by load()
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

    def identify(self, der: bytes) -> str:
        """The workstation a peer certificate names, after strict checks; AccessRefused otherwise."""
        if self.ca_cert is None:
            raise AccessRefused("Poste hors cabinet.", code="peer_refused")
        cert = x509.load_der_x509_certificate(der)
        try:
            name = pki.verify_workstation(self.ca_cert, cert, self.clock.now(), self.revoked)
        except AccessRefused as error:
            self.refused += 1
            if error.code == "peer_revoked":  # a genuine certificate of ours, removed: drop it from the list
                self.forget(pki.workstation_name(cert))
            raise
        self._serials[name] = cert.serial_number
        return name

    def forget(self, name: str) -> None:
        self._serials.pop(name, None)
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
            await self.load()
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

    async def exchange_presence(self) -> None:
        addresses = await self.db.read(repo.addresses)
        if self._discovery is not None:
            addresses += [(h, p, None, "zeroconf") for h, p in self._discovery.hints()]
        tried: set[str] = set()
        mine = (await self.my_presence()).to_json()
        results = await asyncio.gather(*(self._hello(h, p, n, mine, source) for h, p, n, source in addresses
                                         if (h, p) != ("", 0)), return_exceptions=True)
        for result in results:
            if isinstance(result, str):
                tried.add(result)
        stale = self.clock.now() - timedelta(seconds=3 * self.settings.presence_interval_seconds)
        for view in list(self.peers.values()):
            if view.name not in tried and view.reachable and (view.last_seen is None or view.last_seen < stale):
                self._update(replace(view, reachable=False, last_error="injoignable"))

    async def _hello(self, host: str, port: int, name: str | None, mine: dict[str, Any],
                     source: str = "peer") -> str | None:
        if self.member is None or (host, port) == self._self_address():
            return None
        try:
            answered_by, data = await self.call(host, port, "/peer/v1/presence", mine, timeout=5)
        except RelaisError as error:
            if name and name in self.peers and self.peers[name].host == host and self.peers[name].port == port:
                self._update(replace(self.peers[name], reachable=False, last_error=error.message))
            if source == "gossip":  # only a hint from another member: tried once, not at every round
                await self.db.write(lambda c: repo.forget_address(c, host, port))
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
        return {"peers": self.peers_json(), "routing": {"refused_connections": self.refused}}

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
