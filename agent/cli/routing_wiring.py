"""Wiring of the routing part: the practice's peers, presence, forwarding of send-orders (agent/routing)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent.api.app import RouteRegistrar
from agent.api.context import Services
from agent.routing.service import RoutingService, card_state_from


async def start_routing(services: Services, registrars: list[RouteRegistrar], *, peer_port: int | None = None,
                        demo: bool = False) -> RoutingService:
    """After the queue: routing forwards the queue's orders and cancels through it."""
    from agent.api import peers as peers_api

    settings = services.config.practice
    if peer_port is not None:
        settings = replace(settings, peer_port=peer_port)
    if demo:
        settings = replace(settings, peer_host="127.0.0.1")  # demo peers are other agents on this machine
    orders = services.orders
    executor = getattr(orders, "executor", None)
    discovery: Any = None
    if settings.discovery:
        from agent.routing.discovery import ZeroconfDiscovery

        discovery = ZeroconfDiscovery.factory
    service = RoutingService(
        settings=settings, workstation=services.config.workstation_id, data_dir=services.config.data_dir,
        db=services.db, cipher=services.cipher, bus=services.bus, clock=services.clock,
        card_state=card_state_from(services.cards), orders=orders,
        wake_queue=executor.wake if executor is not None else None, discovery=discovery,
    )
    if orders is not None:
        orders.forwarded_cancel = service.cancel_forwarded
    services.routing = service
    services.status_providers.append(service.status)
    registrars.append(peers_api.register)
    await service.start()
    return service


async def stop_routing(services: Services) -> None:
    if services.routing is not None:
        await services.routing.stop()
