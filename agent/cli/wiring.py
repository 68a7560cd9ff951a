"""The composition root: builds every service from the configuration, wires them, runs the agent.

This is the only module that knows all the parts. Each part gets what it needs passed in (clock, store, bus,
clients); none reaches for another on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from agent import __version__
from agent.api.app import GUARD_KEY, RouteRegistrar, create_app
from agent.api.context import Services
from agent.clock import Clock, SystemClock, rfc3339
from agent.config import Config
from agent.errors import NotFound
from agent.events import EventBus
from agent.logs import get_logger, setup_logging
from agent.platforms import install_stop_handlers
from agent.sandbox.host import SandboxContext, SandboxHost, Simulator
from agent.sandbox.pki import SandboxPki
from agent.store.crypto import ContentCipher
from agent.store.db import Database
from agent.store.lock import DataDirLock
from agent.store.masterkey import load_master_key
from agent.store.tokens import create_token, revoke_token

log = get_logger("agent")
RUNTIME_FILE = "agent.json"


@dataclass(frozen=True)
class DemoOptions:
    token_file: Path | None = None
    cards: str = "both"
    sandbox_url: str = ""
    delay: int | None = None
    peer_port: int | None = None
    tray: bool = True


def build_simulators() -> list[Simulator]:
    """The simulators of the sandbox, in start order. Each part adds its own here."""
    from agent.sandbox.directory import DirectorySimulator
    from agent.sandbox.dmp import DmpSimulator
    from agent.sandbox.insi import InsiSimulator
    from agent.sandbox.mss import MssSimulator

    return [InsiSimulator(), DmpSimulator(), MssSimulator(), DirectorySimulator()]


async def install_insi(services: Services, registrars: list[RouteRegistrar], sandbox: SandboxHost | None) -> None:
    """INSi: the client on ``services.insi`` and the identity routes; under the demo, the simulator's endpoint."""
    from dataclasses import replace

    from agent.api import ins as ins_api
    from agent.ins.client import InsiClient, InsiSettings
    from agent.ins.soap import LpsInfo

    config = services.config
    section = config.insi
    settings = InsiSettings(
        url=section.url, ca_file=section.ca_file, client_cert=section.client_cert, client_key=section.client_key,
        connect_timeout=section.connect_timeout_seconds, timeout=section.timeout_seconds,
        allow_test_oids=section.allow_test_oids, structure_id=section.structure_id,
        lps=LpsInfo(idam=section.idam, name="relais", version=__version__,
                    instance=section.instance_id or config.workstation_id))
    endpoint = await sandbox_endpoint(config, sandbox, "insi")
    if endpoint:
        settings = replace(settings, url=endpoint["url"], ca_file=endpoint["ca_file"],
                           client_cert=endpoint["client_cert"], client_key=endpoint["client_key"],
                           allow_test_oids=True)
    registrars.append(ins_api.register)
    if not settings.url:
        return  # the routes answer 503 insi_unreachable, naming the missing configuration
    structure_signer = None
    if section.structure_cert:
        from agent.softkey import SoftwareSigner

        structure_signer = SoftwareSigner.from_files(Path(section.structure_cert),
                                                    Path(section.structure_key or section.structure_cert))
    services.insi = InsiClient(settings, services.clock, structure_signer=structure_signer,
                               on_connectivity=lambda up: services.bus.publish("connectivity.changed",
                                                                               service="insi", reachable=up))


def dmp_professional(services: Services) -> Any:
    """Who the VIHF names: the CPS holder, else the configured demo professional (demo and tests only)."""
    from agent.dmp.models import Professional

    section = services.config.dmp

    def professional() -> Professional | None:
        cards = services.cards
        holder = cards.cps_holder() if cards is not None else None
        if holder is not None and getattr(holder, "rpps", None):
            return Professional(rpps=str(holder.rpps), family_name=str(holder.family_name or ""),
                                given_name=str(holder.given_name or ""),
                                profession=str(getattr(holder, "profession", "") or "10"),
                                specialty=str(getattr(holder, "specialty", "") or ""))
        if section.demo_rpps:
            return Professional(rpps=section.demo_rpps, family_name=section.demo_family_name,
                                given_name=section.demo_given_name)
        if services.config.sandbox.enabled:
            return Professional(rpps="10001234567", family_name="DEMO", given_name="Alice")
        return None

    return professional


async def install_dmp(services: Services, registrars: list[RouteRegistrar], sandbox: SandboxHost | None) -> None:
    """DMP: the XDS.b client on ``services.dmp`` and the consultation routes; under the demo, the simulator."""
    from agent.api import dmp as dmp_api
    from agent.dmp.client import DmpClient, DmpEndpoints
    from agent.dmp.factory import client_for_sandbox
    from agent.dmp.submission import CABINET, SubmissionDefaults
    from agent.dmp.transport import TlsSettings, Transport
    from agent.dmp.valuesets import ValueSets
    from agent.dmp.vihf import VihfSettings
    from agent.errors import ConfigError
    from agent.softkey import SoftwareSigner

    section = services.config.dmp
    registrars.append(dmp_api.register)
    cards = services.cards
    document_signer = cards.require_signer if cards is not None and hasattr(cards, "require_signer") else None
    reference = Path(section.reference_dir) if section.reference_dir else None
    professional = dmp_professional(services)
    endpoint = await sandbox_endpoint(services.config, sandbox, "dmp")
    if endpoint:
        if reference is None:
            from agent.sandbox.dmp import find_reference_dir

            reference = find_reference_dir()
        client = client_for_sandbox(endpoint, services.clock, professional, document_signer=document_signer,
                                    reference_dir=reference, total_timeout=section.timeout_seconds)
    elif section.url:
        missing = [k for k in ("ca_file", "client_cert", "client_key", "structure_cert", "structure_id", "source_id")
                   if not getattr(section, k)]
        if missing:
            raise ConfigError(f"clés requises avec [dmp] url : {', '.join(missing)}", key=f"dmp.{missing[0]}",
                              path=services.config.source)
        code, _, scheme = section.sector.partition("^")
        tls = TlsSettings(Path(section.ca_file), Path(section.client_cert), Path(section.client_key))
        client = DmpClient(
            DmpEndpoints(section.url),
            Transport(tls, connect_timeout=section.connect_timeout_seconds, total_timeout=section.timeout_seconds),
            clock=services.clock,
            vihf=VihfSettings(structure_id=section.structure_id, sector=section.sector, lps_version=__version__,
                              lps_homologation=section.homologation_id),
            structure_signer=SoftwareSigner.from_files(Path(section.structure_cert),
                                                      Path(section.structure_key or section.structure_cert)),
            defaults=SubmissionDefaults(source_id=section.source_id,
                                        facility_type=CABINET if code == CABINET.code else
                                        type(CABINET)(code, scheme or CABINET.scheme)),
            professional=professional, document_signer=document_signer,
            value_sets=ValueSets.load(reference) if reference is not None else None)
    else:
        return  # the routes answer 503 dmp_disabled
    def connectivity(up: bool) -> None:
        services.bus.publish("connectivity.changed", service="dmp", reachable=up)

    client.on_connectivity = connectivity

    async def status() -> dict[str, Any]:
        return {"connectivity": {"dmp": client.status()}}

    services.status_providers.append(status)
    services.dmp = client


async def _describe_sandbox(url: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
            http.get(f"{url.rstrip('/')}/_sandbox/endpoints") as response:
        response.raise_for_status()
        described = await response.json()
    return described if isinstance(described, dict) else {}


async def sandbox_endpoint(config: Config, sandbox: SandboxHost | None, name: str) -> dict[str, Any] | None:
    """Where a simulator listens: the in-process sandbox, or a `relais sandbox` process (``--sandbox URL``)."""
    if sandbox is not None:
        found = sandbox.endpoints.get(name)
        return dict(found) if isinstance(found, dict) else None
    if not (config.sandbox.enabled and config.sandbox.url):
        return None
    found = (await _describe_sandbox(config.sandbox.url)).get("endpoints", {}).get(name)
    return dict(found) if isinstance(found, dict) else None


async def sandbox_state_dir(config: Config, data_dir: Path) -> Path:
    """The sandbox's state folder, whose test CA issues the virtual cards: the configured one, else that of the
    `relais sandbox` given by --sandbox URL (same machine), else the agent's own."""
    if config.sandbox.state_dir:
        return Path(config.sandbox.state_dir)
    if config.sandbox.url:
        described = await _describe_sandbox(config.sandbox.url)
        if described.get("state_dir"):
            return Path(described["state_dir"])
    return data_dir / "sandbox"


def install_rights(services: Services, registrars: list[RouteRegistrar]) -> None:
    """Consent, DICA, CONF.21 notice and traces: the real AccessPolicy, FeedingGate and TraceRecorder."""
    from agent.api import consent as consent_api
    from agent.audit.service import build_rights
    from agent.audit.vitale import VitaleWatch
    from agent.domain.habilitation import load_matrix
    from agent.domain.ins import OID_INS_NIR, OID_INS_NIR_TEST

    matrix = load_matrix(services.config.habilitation.matrix or None)
    part = build_rights(services.db, services.clock, services.bus, matrix, probe=_DmpProbe(services),
                        cipher=services.cipher)
    services.rights = part
    services.access_policy = part.rights
    services.feeding_gate = part.rights
    services.traces = part.traces
    services.status_providers.append(consent_api.notices_status(services))
    registrars.append(consent_api.register)
    # A carte Vitale inserted: DICA and new DMP documents for its insured person, pushed as `dmp.access`.
    watch = VitaleWatch(services.bus, part.dica, lambda: consent_api.agent_actor(services),
                        lambda: _vitale_beneficiaries(services),
                        oid=OID_INS_NIR_TEST if services.config.sandbox.enabled else OID_INS_NIR)
    watch.start()
    part.watches.append(watch)


def _vitale_beneficiaries(services: Services) -> list[Any]:
    cards = getattr(services, "cards", None)
    return list(cards.vitale_beneficiaries()) if cards is not None else []


class _DmpProbe:
    """DICA's view of the DMP client (TD0.2, TD3.1), looked up at call time: the DMP part may be wired later."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def _client(self) -> tuple[Any, Any]:
        from agent.api.consent import cps_holder
        from agent.dmp.models import Professional
        from agent.errors import Unavailable

        dmp = getattr(self._services, "dmp", None)
        if dmp is None:
            raise Unavailable("le service DMP n'est pas configuré sur cet agent", code="dmp_disabled")
        holder = await cps_holder(self._services)
        if holder is None:
            raise Unavailable("aucune carte CPS", code="cps_absent")
        professional = Professional(rpps=holder.rpps, family_name=holder.family_name, given_name=holder.given_name,
                                    profession=holder.profession or "10", specialty=holder.specialty or "")
        return dmp, professional

    async def dmp_status(self, ins: str, oid: str, actor: Any) -> Any:
        from agent.audit.access import DmpPresence

        dmp, professional = await self._client()
        status = await dmp.td02(ins, oid, professional)
        return DmpPresence(exists=bool(status.exists and status.active), blocked=bool(status.blocked))

    async def documents_since(self, ins: str, oid: str, since: str | None, actor: Any) -> list[Any]:
        from agent.dmp.models import SearchCriteria

        dmp, professional = await self._client()
        return list(await dmp.search(ins, oid, SearchCriteria(created_from=since or ""), professional))


@dataclass
class Agent:
    config: Config
    demo: DemoOptions | None = None
    clock: Clock = field(default_factory=SystemClock)
    services: Services | None = None
    runner: web.AppRunner | None = None
    sandbox: SandboxHost | None = None
    port: int = 0
    _lock: DataDirLock | None = None

    async def start(self) -> None:
        config = self.config
        data_dir = config.data_dir
        self._lock = DataDirLock(data_dir)
        self._lock.acquire(port=config.api.port, started_at=rfc3339(self.clock.now()))
        try:
            await self._start_services(data_dir)
        except BaseException:
            await self.stop()
            raise

    async def _start_services(self, data_dir: Path) -> None:
        config = self.config
        master = load_master_key(data_dir, config.store.master_key)
        db = Database(data_dir / "relais.db")
        db.open()
        services = Services(
            config=config,
            version=__version__,
            clock=self.clock,
            db=db,
            bus=EventBus(self.clock),
            cipher=ContentCipher(master.key),
            master_key_source=master.source,
            started_at=rfc3339(self.clock.now()),
            warnings=[master.warning] if master.warning else [],
        )
        self.services = services
        registrars: list[RouteRegistrar] = []
        # First, so every part built after it traces and checks rights through the real implementations.
        install_rights(services, registrars)
        if config.sandbox.enabled and not config.sandbox.url:
            state_dir = await sandbox_state_dir(config, data_dir)
            self.sandbox = SandboxHost(SandboxContext(state_dir, SandboxPki(state_dir)), build_simulators())
            await self.sandbox.start()
            registrars.append(self.sandbox.register_routes)
        from agent.cli.cards_wiring import start_cards

        await start_cards(services, registrars, demo_cards=self.demo.cards if self.demo else None,
                          data_dir=data_dir)
        await install_insi(services, registrars, self.sandbox)
        await install_dmp(services, registrars, self.sandbox)

        from agent.cli.cda_wiring import install_cda

        install_cda(services, registrars)
        from agent.cli.mss_wiring import install_mss

        await install_mss(services, registrars, self.sandbox)
        # The send-order queue, after the services it sends through (DMP client, cards) are wired.
        from agent.api import orders as orders_api
        from agent.cli.queue_wiring import start_queue

        await start_queue(services, delay_override=self.demo.delay if self.demo else None)
        registrars.append(orders_api.register)
        # Routing between the practice's workstations, after the queue whose orders it forwards.
        from agent.cli.routing_wiring import start_routing

        await start_routing(services, registrars, peer_port=self.demo.peer_port if self.demo else None,
                            demo=self.demo is not None)
        app = create_app(services, registrars)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10.0, access_log=None)
        await self.runner.setup()
        from agent.netbind import bind_first_free, start_sites

        # An exclusive port; when another session's agent has it (shared Remote Desktop server), the next free one.
        sockets = bind_first_free(config.api.host, config.api.port, search=config.api.port_search,
                                  skip=(config.practice.peer_port,))
        self.port = await start_sites(self.runner, sockets)
        if config.api.port and self.port != config.api.port:
            services.warnings.append(f"Port {config.api.port} déjà pris (agent d'une autre session ?) : l'agent "
                                     f"écoute sur le port {self.port}, annoncé dans le fichier de session.")
        app[GUARD_KEY].port = self.port
        if self._lock is not None:
            self._lock.update(port=self.port, started_at=services.started_at)
        self._write_runtime(data_dir)
        log.info("agent Relais %s prêt sur http://%s:%d%s", __version__, config.api.host, self.port,
                 " (mode démonstration)" if config.sandbox.enabled else "")

    def _write_runtime(self, data_dir: Path) -> None:
        info = {"pid": os.getpid(), "port": self.port, "url": f"http://127.0.0.1:{self.port}",
                "version": __version__, "sandbox": self.config.sandbox.enabled}
        _atomic_write(data_dir / RUNTIME_FILE, json.dumps(info).encode(), mode=0o644)

    async def stop(self) -> None:
        """Stop serving, let in-flight requests and writes finish, close the store. Safe to call twice."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        services = self.services
        if services is not None:
            # Parts stop in the reverse order of their dependencies: nothing sends once the store closes.
            from agent.cli.cards_wiring import stop_cards
            from agent.cli.routing_wiring import stop_routing

            if services.rights is not None:
                await services.rights.close()
            await stop_routing(services)
            if services.orders is not None:
                await services.orders.stop()  # sends in flight finish or stay "sending" (reconciled at start)
            if services.mss is not None:
                await services.mss.stop()
            await stop_cards(services)
        if self.sandbox is not None:
            await self.sandbox.stop()
            self.sandbox = None
        if services is not None:
            if services.insi is not None:
                await services.insi.close()
            if services.dmp is not None:
                await services.dmp.close()
            services.db.close()
            self.services = None
        if self._lock is not None:
            try:
                (self.config.data_dir / RUNTIME_FILE).unlink(missing_ok=True)
            finally:
                self._lock.release()
                self._lock = None


def _atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


async def issue_demo_token(services: Services, token_file: Path | None) -> str:
    """A fresh token named "demo" at every demo start: the previous one is revoked (only hashes are kept)."""
    now = rfc3339(services.clock.now())

    def rotate(conn: Any) -> str:
        with contextlib.suppress(NotFound):  # the first demo start has no previous token
            revoke_token(conn, "demo", now)
        return create_token(conn, "demo", now)

    token = await services.db.write(rotate)
    if token_file is not None:
        _atomic_write(token_file, (token + "\n").encode(), mode=0o600)
    return token


def start_tray(config: Config) -> subprocess.Popen[bytes] | None:
    """The demo's tray icon, as its own process, when this session has a desktop and pystray is installed."""
    desktop = sys.platform != "linux" or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not desktop or importlib.util.find_spec("pystray") is None:
        log.info("icône de notification non lancée (pas de bureau, ou extra [desktop] absent)")
        return None
    args = [sys.executable, "-m", "agent.cli", "tray", "--data-dir", str(config.data_dir)]
    if config.source and config.source != "(valeurs par défaut)":
        args += ["--config", config.source]
    return subprocess.Popen(args)


async def serve(config: Config, demo: DemoOptions | None = None) -> int:
    setup_logging(config.agent.log_level, config.log_dir, max_bytes=config.agent.log_max_bytes,
                  backups=config.agent.log_backups)
    agent = Agent(config, demo)
    stop = asyncio.Event()
    install_stop_handlers(stop.set)
    await agent.start()
    from agent import locator

    session = locator.announce(config, agent.port, agent.services.started_at if agent.services else "")
    tray: subprocess.Popen[bytes] | None = None
    try:
        if demo is not None and agent.services is not None:
            token = await issue_demo_token(agent.services, demo.token_file)
            if demo.token_file is None:
                print(f"Jeton d'API de démonstration : {token}", flush=True)
            print(f"Relais (démonstration) : http://127.0.0.1:{agent.port}/v1/status", flush=True)
            if demo.tray:
                tray = start_tray(config)
        await stop.wait()
        log.info("arrêt demandé : fin des écritures en cours")
    finally:
        if tray is not None and tray.poll() is None:
            tray.terminate()
        locator.withdraw(session)
        await agent.stop()
    log.info("agent arrêté proprement")
    return 0
