"""The reader seam: where cards come and go, and how to talk to one.

Two backends: PC/SC (``cards/pcsc.py``, real readers and vpcd in tests) and the in-process simulated reader of
the sandbox (``relais_sandbox/cards.py``, demo and unit tests). The card service listens to either the same way
and reads the cards through ``transaction``, so the demo runs the very identification and Vitale code a real
reader does.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from agent.cards.cps import Transmit
from agent.errors import Unavailable
from agent.platforms import pcsc_service


class ReaderListener(Protocol):
    """Callbacks from the backend's own thread; they must return quickly and never raise."""

    def service_changed(self, up: bool, detail: str = "") -> None: ...

    def readers_changed(self, readers: list[str]) -> None: ...

    def card_inserted(self, reader: str, atr: bytes) -> None: ...

    def card_removed(self, reader: str) -> None: ...


class ReaderBackend(Protocol):
    name: str

    def start(self, listener: ReaderListener) -> None: ...

    def stop(self) -> None: ...

    def transaction(self, reader: str) -> AbstractContextManager[Transmit]:
        """Exclusive use of the card for a few APDUs (shared mode, released at exit)."""
        ...


def service_down() -> Unavailable:
    service = pcsc_service()
    return Unavailable(f"Le service PC/SC des lecteurs de cartes ({service.name}) ne répond pas : "
                       f"{service.start_hint}.", code="pcsc_unavailable")


def reader_busy() -> Unavailable:
    return Unavailable("Le lecteur de cartes est occupé par un autre logiciel : réessayez dans un instant.",
                       code="reader_busy")


def card_gone() -> Unavailable:
    return Unavailable("La carte a été retirée pendant sa lecture : réinsérez-la.", code="card_removed")
