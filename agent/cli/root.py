"""The composition root: ``build(config)`` makes every part of the agent, once, in dependency order, and returns
them as one frozen, concretely typed ``Services``.

Each long-lived part is entered on the caller's ``AsyncExitStack`` as it is built, so the parts start in build
order and stop in the reverse order, once, even when a later part fails to start. Nothing here is optional by
accident: the rights and traces part is always built (there is no allow-all policy), a service that is off is
a part that refuses clearly (``dmp_disabled``), and the simulators come in only through an ``Environment``
(``relais demo``).

Build order (each line uses only what is above it):
store, bus, connectivity -> cards -> INSi, DMP clients -> rights, traces, DMP consultation, DICA -> Vitale watch
-> documents (CDA) -> MSSanté -> queue (events, executor, gateways) -> peers, forwarding -> order use cases ->
peer API, routing loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent import __version__
from agent.api.consent import agent_actor, notices_status
from agent.api.context import Services, StatusProvider
from agent.api.peer import create_peer_app
from agent.api.sessions import UiSessions
from agent.audit.feeding import FeedingGuard
from agent.audit.replacement import ReplacementGuard
from agent.audit.service import RightsPart, build_rights
from agent.audit.vitale import VitaleWatch
from agent.cards.cps import CpsToken
from agent.cards.readers import ReaderBackend
from agent.cards.service import CardService
from agent.cda.kit import installed_kit, kit_root
from agent.cda.service import CdaService
from agent.cda.vaccines import VaccineTable
from agent.cda.validation import CdaValidator
from agent.cda.worker import PoolSettings, ValidationPool
from agent.cli.environment import Environment
from agent.clock import Clock, ClockWatch, SystemClock, elapsed_seconds, rfc3339
from agent.config import Config
from agent.connectivity import ConnectivityTracker
from agent.dmp.client import DmpClient
from agent.dmp.factory import client_for_sandbox, client_from_section
from agent.dmp.gateway import DmpDelivery, sends_without_card
from agent.dmp.models import Professional
from agent.dmp.params import DmpParamsPart, ParamsSettings
from agent.dmp.psc import DmpPscTokens, PscDmpSettings
from agent.dmp.submission import SubmissionDefaults
from agent.dmp.vihf import MODE_DIRECT
from agent.domain.delivery import DeliveryGateway, payload_sender
from agent.domain.dmp_params import DmpParameters, ParameterNames
from agent.domain.habilitation import load_matrix
from agent.domain.policy import Actor, TraceEvent
from agent.domain.signing import Signer
from agent.errors import ConfigError
from agent.events import EventBus
from agent.homologation.journal import FramesJournal, FramesSettings
from agent.ins.client import InsiClient
from agent.ins.factory import build_insi_client
from agent.logs import get_logger
from agent.mss import factory as mss_factory
from agent.mss import orders as mss_orders
from agent.mss.part import MssPart
from agent.mss.service import PscBearer
from agent.platforms import default_pkcs11_module
from agent.psc.client import PscClient, PscSettings, read_secret
from agent.psc.identity import PscIdentity
from agent.psc.service import PscPart, RedirectSettings
from agent.queue.events import OrderEvents, QueueWaker
from agent.queue.executor import QueueExecutor, QueueSettings
from agent.queue.intake import Intake
from agent.queue.service import OrderService
from agent.reference import find_reference
from agent.routing.discovery import ZeroconfDiscovery
from agent.routing.forwarding import Forwarding
from agent.routing.inbound import Inbound
from agent.routing.peers import Peers
from agent.routing.service import RoutingService
from agent.store.crypto import ContentCipher
from agent.store.db import Database
from agent.store.masterkey import load_master_key
from agent.store.orders import Claim

log = get_logger("agent")


@dataclass(frozen=True, kw_only=True)
class Overrides:
    """What ``relais demo``'s options change for this run (nothing is written to the configuration)."""

    delay_seconds: int | None = None
    peer_port: int | None = None
    peers_on_loopback: bool = False


async def build(config: Config, stack: AsyncExitStack, *, clock: Clock, env: Environment | None = None,
                overrides: Overrides = Overrides()) -> Services:
    """Every part, started; ``stack`` stops them (in reverse) when the caller closes it."""
    data_dir = config.data_dir
    master = load_master_key(data_dir, config.store.master_key)
    db = Database(data_dir / "relais.db", clock=clock)
    db.open()
    stack.callback(db.close)
    bus = EventBus(clock)
    db.on_fault = _announce_disk(bus, asyncio.get_running_loop())
    cipher = ContentCipher(master.key)
    connectivity = ConnectivityTracker(bus, clock)
    warnings = [master.warning] if master.warning else []
    if env is not None:
        await stack.enter_async_context(env)

    cards = await stack.enter_async_context(_cards(config, bus, clock, env, warnings))
    source = env.card_source() if env is not None else None
    if source is not None and source.after_start is not None:
        await source.after_start()
    insi = _insi(config, clock, env, connectivity)
    if insi is not None:
        stack.push_async_callback(insi.close)
    psc = _psc(config, clock, env, bus)
    if psc is not None:
        await stack.enter_async_context(psc)
    dmp = _dmp(config, clock, env, cards, connectivity, psc)
    if dmp is not None:
        stack.push_async_callback(dmp.close)

    dmp_params = await stack.enter_async_context(_dmp_params(config, clock, env, bus))
    rights = build_rights(db, clock, bus, load_matrix(config.habilitation.matrix or None), cipher, dmp,
                          parameters=dmp_params.current)
    if psc is not None:
        psc.on_login = functools.partial(_trace_psc_login, rights, config.workstation_id)
    cda = _cda(config, clock, env, cards, warnings)
    if cda.pool is not None:
        await stack.enter_async_context(cda.pool)
    mss = await stack.enter_async_context(_mss(config, clock, db, bus, connectivity, env, cards, dmp, psc))
    frames = await stack.enter_async_context(_frames(config, db, cipher, clock, dmp, insi, mss))

    events = OrderEvents(db, bus)
    waker = QueueWaker()
    gateways: dict[str, DeliveryGateway] = {}
    if dmp is not None:
        gateways["dmp"] = FeedingGuard(ReplacementGuard(
            DmpDelivery(dmp, functools.partial(_document_signer, cards, psc, dmp)), db), rights.rights)
    else:
        log.warning("aucun client DMP configuré : les envois au DMP restent en attente")
    if mss.gateway is not None:
        gateways["mss"] = mss.gateway
    settings = _queue_settings(config, overrides)
    # The real clock is compared with the time since boot (asleep included): a wake is no clock change.
    clock_watch = ClockWatch(clock, elapsed=elapsed_seconds if isinstance(clock, SystemClock) else None)
    executor = await stack.enter_async_context(QueueExecutor(
        db, cipher, gateways, settings, clock, events=events, traces=rights.traces, connectivity=connectivity,
        waker=waker, bus=bus, rand=random.random,
        card_check=functools.partial(_author_ready, cards, psc), card_free=functools.partial(_card_free, dmp),
        clock_watch=clock_watch))

    practice = config.practice
    if overrides.peer_port is not None:
        practice = replace(practice, peer_port=overrides.peer_port)
    if overrides.peers_on_loopback:
        practice = replace(practice, peer_host="127.0.0.1")  # demo peers are other agents on this machine
    peers = Peers(settings=practice, workstation=config.workstation_id, data_dir=data_dir, db=db, bus=bus,
                  clock=clock, card_state=cards.holder_state,
                  discovery=ZeroconfDiscovery.factory if practice.discovery else None)
    forwarding = Forwarding(peers=peers, db=db, cipher=cipher, clock=clock, bus=bus, events=events, waker=waker)
    orders = OrderService(
        db=db, cipher=cipher, clock=clock,
        intake=Intake(allow_test_oids=config.allow_test_oids, default_delay=settings.delay_seconds,
                      parameters=dmp_params.current, today=lambda: clock.now().date(),
                      structure_id=dmp.vihf.structure_id if dmp is not None and dmp.vihf.mode != MODE_DIRECT
                      else ""),
        executor=executor, events=events, documents=cda,
        rules=functools.partial(mss_orders.prepare_order, cse_address=config.mss.cse_address), feeding=rights.rights,
        traces=rights.traces, forwarding=forwarding, annotators=(mss.annotate,), workstation=config.workstation_id)
    inbound = Inbound(forwarding=forwarding, orders=orders)
    routing = await stack.enter_async_context(RoutingService(
        peers=peers, forwarding=forwarding, bus=bus, peer_app=functools.partial(create_peer_app, peers, inbound)))

    services = Services(
        config=config, version=__version__, clock=clock, db=db, bus=bus, cipher=cipher,
        master_key_source=master.source, started_at=rfc3339(clock.now()), connectivity=connectivity,
        cards=cards, rights=rights, consultation=rights.consultation, dmp=dmp, insi=insi, cda=cda, mss=mss,
        orders=orders, routing=routing, psc=psc, ui_sessions=UiSessions(clock), warnings=warnings,
        status_providers=(_store_status(db), _clock_status(clock_watch),
                          *_status_providers(cards, dmp, insi, cda, mss, orders, routing, rights, connectivity),
                          frames.status, _params_status(dmp_params)),
        frames=frames, dmp_params=dmp_params,
    )
    # A carte Vitale inserted: DICA and new DMP documents for its insured person, pushed as `dmp.access`.
    await stack.enter_async_context(VitaleWatch(
        bus, rights.dica, functools.partial(agent_actor, services), cards.vitale_beneficiaries,
        insi_oid=rights.consultation.insi_oid))
    return services


# --- the parts -------------------------------------------------------------------------------------------------


def _cards(config: Config, bus: EventBus, clock: Clock, env: Environment | None, warnings: list[str]) -> CardService:
    """The card service: the environment's virtual readers, else PC/SC and the CPS's PKCS#11 module."""
    section = config.cards
    timeout = section.session_timeout_minutes * 60.0
    source = env.card_source() if env is not None else None
    if source is not None:
        return CardService(bus, clock, backend=source.backend, token_factory=source.token_factory,
                           session_timeout=timeout)
    backend: ReaderBackend | None = None
    if section.pcsc:
        try:
            from agent.cards.pcsc import PcscBackend  # optional: the [cards] extra (pyscard)

            backend = PcscBackend()
        except ImportError:
            warnings.append("Lecteurs de cartes indisponibles : le module pyscard n'est pas installé "
                            "(paquet relais[cards]).")
    module = section.pkcs11_module or default_pkcs11_module()  # the Cryptolib CPS where it is installed
    if not module:
        return CardService(bus, clock, backend=backend, session_timeout=timeout)
    try:
        from agent.cards.pkcs11 import KeyLabels, Pkcs11CpsToken  # optional: the [cards] extra (python-pkcs11)
    except ImportError:
        warnings.append("Carte CPS indisponible : le module python-pkcs11 n'est pas installé (paquet relais[cards]).")
        return CardService(bus, clock, backend=backend, session_timeout=timeout)
    labels = KeyLabels(authentication=section.auth_key_label, signature=section.sign_key_label)

    def token(reader: str) -> CpsToken | None:
        return Pkcs11CpsToken(module, token_label=section.token_label, labels=labels,
                              algorithm=section.signature_algorithm)

    def present() -> bool:
        return Pkcs11CpsToken.present(module, section.token_label)

    return CardService(bus, clock, backend=backend, token_factory=token, token_present=present,
                       session_timeout=timeout)


def _insi(config: Config, clock: Clock, env: Environment | None,
          connectivity: ConnectivityTracker) -> InsiClient | None:
    """The INSi client; None without a URL (its routes then answer 503, naming the missing configuration)."""
    return build_insi_client(config.insi, clock, version=__version__, instance=config.workstation_id,
                             endpoint=env.endpoint("insi") if env is not None else None,
                             on_connectivity=connectivity.reporter("insi"))


def _psc(config: Config, clock: Clock, env: Environment | None, bus: EventBus) -> PscPart | None:
    """Pro Santé Connect: the sandbox's simulated provider under the demo, else ``[psc]`` (None without issuer)."""
    section = config.psc
    endpoint = env.endpoint("psc") if env is not None else None
    issuer = str(endpoint["issuer"]) if endpoint else section.issuer
    client_id = str(endpoint["client_id"]) if endpoint else section.client_id
    if not issuer:
        return None
    if not client_id:
        raise ConfigError("clé requise avec [psc] issuer : client_id", key="psc.client_id", path=config.source)
    settings = PscSettings(issuer=issuer, client_id=client_id,
                           client_secret="" if endpoint else read_secret(section.client_secret_file),
                           scopes=section.scopes, acr_values=section.acr_values,
                           authorization_endpoint="" if endpoint else section.authorization_endpoint,
                           ca_file="" if endpoint else section.ca_file, timeout_seconds=section.timeout_seconds)
    return PscPart(PscClient(settings, clock), bus, clock,
                   RedirectSettings(port=section.redirect_port, path=section.redirect_path,
                                    login_timeout_seconds=section.login_timeout_seconds))


async def _trace_psc_login(rights: RightsPart, workstation: str, identity: PscIdentity) -> None:
    """Every PSC login is traced with the professional's RPPS (never a token)."""
    await rights.traces.record(TraceEvent(action="psc.login", actor=Actor(
        rpps=identity.rpps, workstation=workstation, client="psc", profession=identity.profession or None)))


def _author_ready(cards: CardService, psc: PscPart | None, rpps: str) -> str | None:
    """Why the author cannot send from here now (the order waits), or None: their CPS is here with its PIN
    entered, or they are connected through Pro Santé Connect (session alive)."""
    if psc is not None and psc.ready(rpps):
        return None
    reason = cards.author_ready(rpps)
    if reason is not None and psc is not None:
        return reason.rstrip(".") + " ou une connexion Pro Santé Connect (e-CPS) du professionnel."
    return reason


def _card_free(dmp: DmpClient | None, claim: Claim) -> bool:
    """A delivery that waits for no CPS: a document a delegate sends to the DMP in indirect authentication
    ([CDT] 2.1-900; agent/dmp/gateway.py signs it with the structure's certificate)."""
    return (claim.destination == "dmp" and dmp is not None
            and sends_without_card(dmp, payload_sender(claim.payload), claim.author_rpps))


def _document_signer(cards: CardService, psc: PscPart | None, dmp: DmpClient) -> Signer:
    """Who signs the documents sent to the DMP: the CPS; with Pro Santé Connect and no card in a reader, the
    structure's certificate (cachet), as in indirect authentication (a choice: no public source says how the DMP
    wants a PSC-only feed signed)."""
    if cards.cps_holder() is None and psc is not None and psc.identity() is not None:
        return dmp.structure_signer
    return cards.require_signer()


def _dmp(config: Config, clock: Clock, env: Environment | None, cards: CardService,
         connectivity: ConnectivityTracker, psc: PscPart | None) -> DmpClient | None:
    """The DMP client: the sandbox's under the demo, else ``[dmp]`` (None without a URL)."""
    section = config.dmp
    endpoint = env.endpoint("dmp") if env is not None else None

    def professional() -> Professional | None:
        """Who the VIHF names: the CPS holder, else the configured or sandbox demo professional."""
        holder = cards.cps_holder()
        if holder is not None and holder.rpps:
            return Professional(rpps=holder.rpps, family_name=holder.family_name, given_name=holder.given_name,
                                profession=holder.profession or "10", specialty=holder.specialty)
        identity = psc.identity() if psc is not None else None
        if identity is not None:  # no card: the professional connected through Pro Santé Connect
            return Professional(rpps=identity.rpps, family_name=identity.family_name,
                                given_name=identity.given_name, profession=identity.profession or "10",
                                specialty=identity.specialty, via_psc=True)
        if section.demo_rpps:
            return Professional(rpps=section.demo_rpps, family_name=section.demo_family_name,
                                given_name=section.demo_given_name)
        return env.professional() if env is not None else None

    if endpoint:
        reference = find_reference(section.reference_dir, marker="ihe")
        client = client_for_sandbox(endpoint, clock, professional, document_signer=cards.require_signer,
                                    reference_dir=reference, total_timeout=section.timeout_seconds)
        # What no public source gives is configuration in the sandbox too (agent/dmp/vihf.py VihfSettings).
        client.vihf = dataclasses.replace(client.vihf, reason_attribute=section.vihf_reason_attribute,
                                          pharmacist_role_scheme=section.pharmacist_role_scheme)
        client.on_connectivity = connectivity.reporter("dmp")
        client.transient_codes = frozenset(section.transient_error_codes)
        if psc is not None and endpoint.get("psc_token_url"):
            client.psc = DmpPscTokens(PscDmpSettings(str(endpoint["psc_token_url"])), client.transport,
                                      psc.access_token, clock)
        return client
    configured = client_from_section(section, clock, professional, cards.require_signer, version=__version__,
                                     on_connectivity=connectivity.reporter("dmp"), source=config.source)
    if configured is None:
        return None
    client = configured
    if psc is not None and section.psc_token_url:
        client.psc = DmpPscTokens(PscDmpSettings(
            section.psc_token_url, header=section.psc_token_header, scheme=section.psc_token_scheme,
            vihf_mode=section.psc_vihf_mode, authn_context=section.psc_authn_context), client.transport,
            psc.access_token, clock)
    return client


def _cda(config: Config, clock: Clock, env: Environment | None, cards: CardService,
         warnings: list[str]) -> CdaService:
    """The documents part: builders, and the CI-SIS validator on the configured kit (the reference's under
    the demo)."""
    section = config.cda
    kit = Path(section.kit_dir) if section.kit_dir else None
    if kit is None:
        # The documented rule of cda.kit_dir: the kit `relais kit install` put in the data folder; under the demo,
        # $RELAIS_REFERENCE/ci-sis first (scripts/demo.sh sets it).
        installed = kit_root(config.data_dir) if installed_kit(config.data_dir) is not None else None
        reference = find_reference(beside_checkout=False, installed=installed) if env is not None else installed
        kit = reference / "ci-sis" if reference is not None else None
    # The sandbox sends only to the simulators: without a kit it keeps accepting (with the warning below).
    allow_unvalidated = section.allow_unvalidated or (kit is None and env is not None)
    validator: CdaValidator | None = None
    pool: ValidationPool | None = None
    if kit is not None:
        cache = Path(section.cache_dir) if section.cache_dir else config.data_dir / "cache" / "cda"
        # The validator stays idle here (nothing compiled in the agent's process); the pool's workers validate
        # and, with warm_up, compile the schematrons in their own background.
        validator = CdaValidator(kit, cache)
        pool = ValidationPool(kit, cache, PoolSettings(
            workers=section.validation_workers, max_bytes=int(section.max_document_mb * 1024 * 1024),
            timeout_seconds=section.validation_timeout_seconds, warm_up=section.warm_up))
    else:
        warnings.append("Kit CI-SIS non configuré (cda.kit_dir) : " + (
            "les documents CDA sont envoyés SANS validation (cda.allow_unvalidated)." if allow_unvalidated
            else "aucun document CDA n'est accepté."))
    organisation: dict[str, Any] | None = None
    if section.organisation_id and section.organisation_name:
        organisation = {"id": section.organisation_id, "name": section.organisation_name,
                        "address": {"postal_code": section.organisation_postal_code, "city": section.organisation_city}}
    elif env is not None:
        organisation = env.organisation()  # the demo doctor's practice: an LGC may name the author by RPPS alone
    return CdaService(clock=clock, validator=validator,
                      vaccines=VaccineTable.load(Path(section.vaccines_file) if section.vaccines_file else None),
                      allow_test_oids=config.allow_test_oids, allow_unvalidated=allow_unvalidated,
                      organisation=organisation, cps_holder=cards.cps_holder, cse_address=config.mss.cse_address,
                      pool=pool)


def _mss_bearer(psc: PscPart | None) -> PscBearer | None:
    """The PSC token that opens a personal mailbox: of the order's author for a send, of the professional
    connected now ("") for the mailbox's reports; None without a session (the caller waits for them)."""
    if psc is None:
        return None
    part = psc

    async def bearer(rpps: str) -> str | None:
        if not rpps:
            identity = part.identity()
            if identity is None:
                return None
            rpps = identity.rpps
        return await part.access_token(rpps)

    return bearer


def _mss(config: Config, clock: Clock, db: Database, bus: EventBus, connectivity: ConnectivityTracker,
         env: Environment | None, cards: CardService, dmp: DmpClient | None, psc: PscPart | None) -> MssPart:
    """The MSSanté part: the sender (``[mss]`` or the sandbox operator), its acknowledgement poller, the
    directory; the XDM's metadata come from the DMP's own builder (signed as a DMP feed would be: by the CPS, or
    by the structure for a professional connected through PSC with no card)."""
    defaults = dmp.defaults if dmp is not None else SubmissionDefaults(source_id=config.dmp.source_id)
    client = dmp
    document_signer: Callable[[], Signer] = cards.require_signer if client is None else \
        (lambda: _document_signer(cards, psc, client))
    packager = mss_factory.dmp_packager(now=clock.now, defaults=defaults, signer=document_signer,
                                        value_sets=dmp.value_sets if dmp is not None else None)
    sender = mss_factory.sender_for(config, env.endpoint("mss") if env is not None else None, packager, clock,
                                    _mss_bearer(psc))
    directory = mss_factory.directory_for(config, env.endpoint("directory") if env is not None else None)
    return MssPart(db=db, clock=clock, bus=bus, connectivity=connectivity, sender=sender,
                   interval=config.mss.ack_poll_seconds, directory=directory, cse_address=config.mss.cse_address)


def _frames(config: Config, db: Database, cipher: ContentCipher, clock: Clock, dmp: DmpClient | None,
            insi: InsiClient | None, mss: MssPart) -> FramesJournal:
    """The homologation's frames journal, tapped into each transport (it keeps nothing while it is off)."""
    section = config.homologation
    journal = FramesJournal(db, cipher, clock, FramesSettings(
        enabled=section.frames, retention_days=section.frames_retention_days, test_code=section.test_code))
    if dmp is not None:
        dmp.transport.frames = journal
    if insi is not None:
        insi.frames = journal
    if mss.sender is not None:
        settings = mss.sender.settings
        mss.sender.settings = replace(settings, smtp=replace(settings.smtp, frames=journal),
                                      imap=None if settings.imap is None else replace(settings.imap, frames=journal))
    return journal


def _queue_settings(config: Config, overrides: Overrides) -> QueueSettings:
    q = config.queue
    return QueueSettings(
        delay_seconds=q.delay_seconds if overrides.delay_seconds is None else overrides.delay_seconds,
        max_attempts=q.max_attempts, backoff_base_seconds=q.backoff_base_seconds,
        backoff_cap_seconds=q.backoff_cap_seconds, probe_interval_seconds=q.probe_interval_seconds,
        concurrency=q.concurrency, attempt_timeout_seconds=q.attempt_timeout_seconds,
        retention_days=config.store.retention_days, workstation=config.workstation_id)


def _announce_disk(bus: EventBus, loop: asyncio.AbstractEventLoop) -> Any:
    """``store.fault`` on the bus when the disk starts or stops refusing writes (the tray and the LGC's stream
    hear it at once); called from the store's writer thread."""

    def announce(fault: Any) -> None:
        data = ({"writable": True} if fault is None else
                {"writable": False, "code": fault.code, "message": fault.message})
        loop.call_soon_threadsafe(functools.partial(bus.publish, "store.fault", **data))

    return announce


def _dmp_params(config: Config, clock: Clock, env: Environment | None, bus: EventBus) -> DmpParamsPart:
    """The DMP's parameters file ([dmp] params_url; under the demo, the simulator's): the values the rules use."""
    section = config.dmp
    endpoint = env.endpoint("dmp") if env is not None else None
    url, ca_file = section.params_url, section.params_ca_file
    if not url and endpoint and endpoint.get("params_url"):
        url, ca_file = str(endpoint["params_url"]), str(endpoint.get("ca_file", ""))
    settings = ParamsSettings(
        url=url, cache_dir=config.data_dir / "cache", ca_file=ca_file,
        names=ParameterNames(majority_age=section.params_name_majority_age,
                             minors_management=section.params_name_minors_management,
                             allow_masked_and_invisible=section.params_name_masked_and_invisible,
                             production=section.params_name_production),
        fallback=DmpParameters(majority_age=section.majority_age, minors_management=section.minors_management,
                               allow_masked_and_invisible=section.allow_masked_and_invisible),
        refresh_hours=section.params_refresh_hours, retry_minutes=section.params_retry_minutes)
    return DmpParamsPart(settings, clock,
                         on_change=lambda p: bus.publish("dmp.parameters", source=p.source, **p.as_dict()))


def _params_status(part: DmpParamsPart) -> StatusProvider:
    async def parameters() -> dict[str, Any]:
        return {"dmp_parameters": part.status()}

    return parameters


def _store_status(db: Database) -> StatusProvider:
    async def store() -> dict[str, Any]:
        return {"store": db.health()}

    return store


def _clock_status(watch: ClockWatch) -> StatusProvider:
    async def clock() -> dict[str, Any]:
        return {"clock": watch.status()}

    return clock


def _status_providers(cards: CardService, dmp: DmpClient | None, insi: InsiClient | None, cda: CdaService,
                      mss: MssPart, orders: OrderService, routing: RoutingService, rights: RightsPart,
                      connectivity: ConnectivityTracker) -> tuple[StatusProvider, ...]:
    """What each part adds to ``/v1/status``; connectivity comes from the one tracker."""

    async def services_connectivity() -> dict[str, Any]:
        dmp_state = {"configured": dmp is not None, **connectivity.reading("dmp").as_dict()}
        if dmp is not None:
            dmp_state["url"] = dmp.endpoints.base_url
        insi_state = {"configured": insi is not None, **connectivity.reading("insi").as_dict()}
        return {"connectivity": {"dmp": dmp_state, "insi": insi_state}}

    async def documents() -> dict[str, Any]:
        state: dict[str, Any] = {"validation": cda.validator is not None, "vaccines": len(cda.context.vaccines),
                                 "unvalidated_accepted": cda.validator is None and cda.allow_unvalidated}
        if cda.pool is not None:
            state["workers"] = cda.pool.status()
        return {"cda": state}

    return (cards.status, services_connectivity, documents, mss.status, orders.status, routing.status,
            notices_status(rights, cards))
