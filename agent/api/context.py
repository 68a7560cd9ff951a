"""What the API handlers reach: the services the composition root (``agent.cli``) built and wired.

Each later part (cards, queue, DMP...) adds its service here as an optional field; its routes are installed
only when the service is present, so the app runs with whatever parts a configuration enables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.api.sessions import UiSessions
from agent.api.spec import RouteTable
from agent.audit.service import RightsPart
from agent.cards.service import CardService
from agent.cda.service import CdaService
from agent.clock import Clock
from agent.config import Config
from agent.dmp.client import DmpClient
from agent.domain.policy import AccessPolicy, AllowAll, FeedingGate, NoTraces, TraceRecorder
from agent.events import EventBus
from agent.ins.client import InsiClient
from agent.queue.service import OrderService
from agent.routing.service import RoutingService
from agent.store.crypto import ContentCipher
from agent.store.db import Database

StatusProvider = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class Services:
    config: Config
    version: str
    clock: Clock
    db: Database
    bus: EventBus
    cipher: ContentCipher
    master_key_source: str
    started_at: str
    warnings: list[str] = field(default_factory=list)
    status_providers: list[StatusProvider] = field(default_factory=list)
    routes: RouteTable = field(default_factory=RouteTable)
    # Open SSE streams and their handler tasks, cancelled on shutdown so a stop never waits on a client.
    streams: dict[web.StreamResponse, asyncio.Task[object]] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Seams filled by the consent/traces part; permissive until it is wired.
    access_policy: AccessPolicy = field(default_factory=AllowAll)
    feeding_gate: FeedingGate = field(default_factory=AllowAll)
    traces: TraceRecorder = field(default_factory=NoTraces)
    # Dashboard login links and cookie sessions (agent/api/sessions.py).
    ui_sessions: UiSessions | None = None
    # One optional field per part, set by agent.cli.wiring when the part is enabled:
    cards: CardService | None = None  # agent/cards: readers, CPS, Vitale (routes in agent/api/cards.py)
    orders: OrderService | None = None  # agent/queue: send-orders (routes in agent/api/orders.py)
    rights: RightsPart | None = None  # agent/audit: consent, DICA, CONF.21 notice, traces (api/consent.py)
    insi: InsiClient | None = None  # agent/ins: INSi search and verification (routes in agent/api/ins.py)
    cda: CdaService | None = None  # agent/cda: CDA builders and CI-SIS validation (routes in agent/api/cda.py)
    dmp: DmpClient | None = None  # agent/dmp: XDS.b client of the DMP (routes in agent/api/dmp.py)
    mss: Any = None  # agent/mss: MSSanté sender, acknowledgements, directory (agent/cli/mss_wiring.MssPart)
    routing: RoutingService | None = None  # agent/routing: practice peers, forwarding (api/peers.py)


SERVICES: web.AppKey[Services] = web.AppKey("relais_services", Services)
