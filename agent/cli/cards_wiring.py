"""Building the card service from the configuration (part of the composition root).

- ``relais demo`` (sandbox enabled): the in-process simulated reader with the demo doctor's CPS and the demo carte
  Vitale (``--cards both|cps|vitale|none``), and the ``/_sandbox/cards/...`` routes.
- ``relais run``: PC/SC readers when ``cards.pcsc`` (and pyscard) are there; the CPS through the PKCS#11 module of
  ``cards.pkcs11_module``; without PC/SC, the PKCS#11 token's presence is the CPS's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.api.app import RouteRegistrar
from agent.api.context import Services
from agent.cards.cps import CpsToken
from agent.cards.readers import ReaderBackend
from agent.cards.service import CardService
from agent.logs import get_logger
from agent.platforms import default_pkcs11_module

log = get_logger("cards")


async def start_cards(services: Services, registrars: list[RouteRegistrar], *, demo_cards: str | None,
                      data_dir: Path) -> CardService:
    from agent.api import cards as cards_api

    config = services.config
    section = config.cards
    timeout = section.session_timeout_minutes * 60.0
    registrars.append(cards_api.register)
    if config.sandbox.enabled:
        from agent.cli.wiring import sandbox_state_dir
        from agent.sandbox.cards import SimulatedReaders, VirtualCards
        from agent.sandbox.pki import SandboxPki

        state_dir = await sandbox_state_dir(config, data_dir)
        readers = SimulatedReaders()
        virtual = VirtualCards(readers, SandboxPki(state_dir))
        service = CardService(services.bus, services.clock, backend=readers, token_factory=readers.token_for,
                              session_timeout=timeout)
        await service.start()
        await asyncio.to_thread(virtual.apply, demo_cards or "both")
        registrars.append(virtual.register_routes)
    else:
        backend: ReaderBackend | None = None
        if section.pcsc:
            try:
                from agent.cards.pcsc import PcscBackend

                backend = PcscBackend()
            except ImportError:
                services.warnings.append("Lecteurs de cartes indisponibles : le module pyscard n'est pas installé "
                                         "(paquet relais[cards]).")
        token_factory: Any = None
        token_present: Any = None
        module = section.pkcs11_module or default_pkcs11_module()  # the Cryptolib CPS where it is installed
        if module:
            token_factory, token_present = _pkcs11(services, module)
        service = CardService(services.bus, services.clock, backend=backend, token_factory=token_factory,
                              token_present=token_present, session_timeout=timeout)
        await service.start()
    services.cards = service
    services.status_providers.append(service.status)
    return service


def _pkcs11(services: Services, module: str) -> tuple[Any, Any]:
    section = services.config.cards
    try:
        from agent.cards.pkcs11 import KeyLabels, Pkcs11CpsToken
    except ImportError:
        services.warnings.append("Carte CPS indisponible : le module python-pkcs11 n'est pas installé "
                                 "(paquet relais[cards]).")
        return None, None
    labels = KeyLabels(authentication=section.auth_key_label, signature=section.sign_key_label)

    def factory(reader: str) -> CpsToken | None:
        return Pkcs11CpsToken(module, token_label=section.token_label, labels=labels,
                              algorithm=section.signature_algorithm)

    def present() -> bool:
        return Pkcs11CpsToken.present(module, section.token_label)

    return factory, present


async def stop_cards(services: Services) -> None:
    if services.cards is not None:
        await services.cards.stop()
