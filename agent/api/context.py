"""What the API handlers reach: the agent's parts, as the composition root (``agent.cli.root.build``) made them.

Every part is here, concretely typed, whatever the configuration: a service that is off is represented by a part
that refuses with a clear code (the DMP consultation answers ``dmp_disabled`` without a ``[dmp]`` section; the
queue keeps DMP deliveries waiting), never by a missing attribute. Only the INSi client may be absent
(``insi``): its routes then answer ``insi_unreachable`` naming the missing configuration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.api.sessions import UiSessions
from agent.api.spec import RouteTable
from agent.audit.consultation import DmpConsultation
from agent.audit.service import RightsPart
from agent.cards.service import CardService
from agent.cda.service import CdaService
from agent.clock import Clock
from agent.config import Config
from agent.connectivity import ConnectivityTracker
from agent.dmp.client import DmpClient
from agent.dmp.params import DmpParamsPart
from agent.events import EventBus
from agent.homologation.journal import FramesJournal
from agent.ins.client import InsiClient
from agent.mss.part import MssPart
from agent.psc.service import PscPart
from agent.queue.service import OrderService
from agent.routing.service import RoutingService
from agent.store.crypto import ContentCipher
from agent.store.db import Database

StatusProvider = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, kw_only=True)
class Services:
    config: Config
    version: str
    clock: Clock
    db: Database
    bus: EventBus
    cipher: ContentCipher
    master_key_source: str
    started_at: str
    connectivity: ConnectivityTracker
    cards: CardService  # readers, CPS, Vitale (routes in agent/api/cards.py)
    rights: RightsPart  # consent, DICA, CONF.21 notice, traces (routes in agent/api/consent.py)
    consultation: DmpConsultation  # the DMP consultation use case (routes in agent/api/dmp.py)
    dmp: DmpClient | None  # the XDS.b client, None without [dmp]: consultation refuses, DMP deliveries wait
    insi: InsiClient | None  # INSi search and verification (routes in agent/api/ins.py)
    cda: CdaService  # CDA builders and CI-SIS validation (routes in agent/api/cda.py)
    mss: MssPart  # MSSanté sender, acknowledgements, directory (routes in agent/api/mss.py)
    orders: OrderService  # send-orders (routes in agent/api/orders.py)
    routing: RoutingService  # practice peers, forwarding (routes in agent/api/peers.py)
    psc: PscPart | None  # Pro Santé Connect (e-CPS) login, None without [psc] (routes in agent/api/psc.py)
    ui_sessions: UiSessions  # dashboard login links and cookie sessions (agent/api/sessions.py)
    warnings: list[str] = field(default_factory=list)
    frames: FramesJournal | None = None  # the homologation's frames journal (relais frames; off unless enabled)
    dmp_params: DmpParamsPart | None = None  # the DMP's parameters file (routes in agent/api/dmp_params.py)
    status_providers: tuple[StatusProvider, ...] = ()
    routes: RouteTable = field(default_factory=RouteTable)
    # Open SSE streams and their handler tasks, cancelled on shutdown so a stop never waits on a client.
    streams: dict[web.StreamResponse, asyncio.Task[object]] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


SERVICES: web.AppKey[Services] = web.AppKey("relais_services", Services)
