"""What the agent is run against: the real world (``relais run``), or the sandbox (``relais demo``).

The composition root asks an ``Environment`` where each national service is and which card readers to use. In
production there is none: everything comes from the configuration. ``relais demo`` hands over the sandbox's
(``relais_sandbox.demo``): the simulators' endpoints, the virtual readers (a fake at the card boundary: the card
service reads them through the same APDUs as PC/SC), and the ``/_sandbox`` control routes. Only the command line
imports the sandbox; the product never does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.api.app import RouteRegistrar
from agent.cards.readers import ReaderBackend
from agent.cards.service import TokenFactory
from agent.dmp.models import Professional


@dataclass(frozen=True, slots=True)
class CardSource:
    """The readers to watch, the CPS tokens they hold, and what to do once the card service runs."""

    backend: ReaderBackend
    token_factory: TokenFactory
    after_start: Callable[[], Awaitable[None]] | None = None  # e.g. insert the demo cards


class Environment(Protocol):
    state_dir: Path  # where the sandbox keeps its state (its test CA issues the virtual cards)

    async def __aenter__(self) -> Environment: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def endpoint(self, name: str) -> Mapping[str, Any] | None:
        """How to reach a simulated service ("dmp", "insi", "mss", "directory"): URLs and credentials."""
        ...

    def card_source(self) -> CardSource | None:
        """Virtual readers, or None for the real ones of the configuration."""
        ...

    def professional(self) -> Professional | None:
        """Who the DMP's VIHF names when no CPS is in a reader (the sandbox's demo professional)."""
        ...

    def organisation(self) -> dict[str, Any] | None:
        """The demo practice, as author organisation of the documents built when the LGC names none."""
        ...

    @property
    def routes(self) -> Sequence[RouteRegistrar]:
        """The sandbox's control routes (``/_sandbox/...``), served by the agent under its token."""
        ...
