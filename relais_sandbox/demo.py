"""The sandbox as the agent's ``Environment`` under ``relais demo``: where the simulators listen, the virtual
readers with the demo doctor's CPS and the demo carte Vitale, the demo professional and practice, the
``/_sandbox`` control routes.

Two ways to reach the simulators, same environment: in process (the default), or a ``relais sandbox`` process
given by ``--sandbox URL`` (``GET /_sandbox/endpoints`` says where each simulator listens and where its state
is), so a test can kill the agent without losing what the simulated DMP received.

This module is only ever imported by the command line: the product (``agent/``) never depends on the sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from agent.api.app import RouteRegistrar
from agent.cli.environment import CardSource
from agent.config import Config
from agent.dmp.models import Professional
from relais_sandbox.cards import SimulatedReaders, VirtualCards
from relais_sandbox.directory import DirectorySimulator
from relais_sandbox.dmp import DmpSimulator
from relais_sandbox.host import SandboxContext, SandboxHost, Simulator
from relais_sandbox.insi import InsiSimulator
from relais_sandbox.mss import MssSimulator
from relais_sandbox.pki import SandboxPki
from relais_sandbox.psc import PscSimulator

# The demo doctor named by the VIHF when no CPS is in a reader, and the practice named as author organisation
# when the LGC names none (fictitious identifiers).
DEMO_PROFESSIONAL = Professional(rpps="10001234567", family_name="DEMO", given_name="Alice")
DEMO_PRACTICE: dict[str, Any] = {"id": "1750803447", "name": "Cabinet médical du Dr MULLER (démonstration)",
                                 "address": {"postal_code": "75008", "city": "PARIS"}}


def build_simulators() -> list[Simulator]:
    """The simulators of the sandbox, in start order."""
    psc = PscSimulator()
    return [InsiSimulator(), psc, DmpSimulator(psc=psc), MssSimulator(psc=psc), DirectorySimulator()]


async def describe_remote(url: str) -> dict[str, Any]:
    """What a ``relais sandbox`` process says about itself: its simulators' endpoints and its state folder."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
            http.get(f"{url.rstrip('/')}/_sandbox/endpoints") as response:
        response.raise_for_status()
        described = await response.json()
    return described if isinstance(described, dict) else {}


class DemoEnvironment:
    """``relais demo``'s world: started with the agent (``async with``), stopped after it."""

    def __init__(self, config: Config, *, cards: str = "both") -> None:
        self._config = config
        self._cards = cards
        self.state_dir = config.data_dir / "sandbox"
        self._host: SandboxHost | None = None
        self._endpoints: dict[str, Any] = {}
        self._source: CardSource | None = None
        self._virtual: VirtualCards | None = None

    async def __aenter__(self) -> DemoEnvironment:
        section = self._config.sandbox
        if section.state_dir:
            self.state_dir = Path(section.state_dir)
        if section.url:
            described = await describe_remote(section.url)
            self._endpoints = dict(described.get("endpoints") or {})
            if described.get("state_dir") and not section.state_dir:
                self.state_dir = Path(described["state_dir"])  # same machine: its test CA issues our cards
        else:
            self._host = SandboxHost(SandboxContext(self.state_dir, SandboxPki(self.state_dir)), build_simulators())
            await self._host.start()
            self._endpoints = self._host.endpoints
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._host is not None:
            await self._host.stop()
            self._host = None

    def endpoint(self, name: str) -> Mapping[str, Any] | None:
        found = self._endpoints.get(name)
        return dict(found) if isinstance(found, dict) else None

    def card_source(self) -> CardSource:
        """The simulated readers (built once): the card service reads them through the same APDUs as PC/SC."""
        if self._source is None:
            readers = SimulatedReaders()
            virtual = VirtualCards(readers, SandboxPki(self.state_dir))
            self._virtual = virtual

            async def insert() -> None:
                await asyncio.to_thread(virtual.apply, self._cards)

            self._source = CardSource(backend=readers, token_factory=readers.token_for, after_start=insert)
        return self._source

    def professional(self) -> Professional:
        return DEMO_PROFESSIONAL

    def organisation(self) -> dict[str, Any]:
        return DEMO_PRACTICE

    @property
    def routes(self) -> Sequence[RouteRegistrar]:
        routes: list[RouteRegistrar] = []
        if self._host is not None:
            routes.append(self._host.register_routes)
        self.card_source()
        if self._virtual is not None:
            routes.append(self._virtual.register_routes)
        return routes
