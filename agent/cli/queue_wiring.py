"""Wiring of the send-order queue: the service, its executor, and the adapters to the DMP client and cards.

Part of the composition root (``agent.cli``): the only place where the queue meets the DMP client. The
adapter maps the client's errors to what the queue understands: a failure to connect at all becomes
``ServiceUnreachable`` (wait for the network), everything else passes through.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from agent.api.context import Services
from agent.errors import ServiceUnreachable, TransientRemoteError
from agent.logs import get_logger
from agent.queue.executor import QueueExecutor, QueueSettings
from agent.queue.gateway import DeliveryGateway, DeliveryJob, Lookup, Receipt
from agent.queue.intake import Intake
from agent.queue.service import OrderService

log = get_logger("queue")

# Exception class names (aiohttp, asyncio, OS) that mean "no connection", not "the service failed".
_UNREACHABLE = frozenset({"ClientConnectorError", "ClientConnectorDNSError", "ServerDisconnectedError",
                          "ClientOSError", "ConnectionRefusedError", "ConnectionResetError", "gaierror",
                          "ClientConnectionResetError"})


# Failures before any byte of the request left: the service cannot have received it.
_NEVER_CONNECTED = frozenset({"ClientConnectorError", "ClientConnectorDNSError", "ConnectionRefusedError",
                              "gaierror", "ClientConnectorCertificateError"})


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def unreachable(error: TransientRemoteError) -> ServiceUnreachable:
    never = any(type(e).__name__ in _NEVER_CONNECTED for e in _chain(error))
    return ServiceUnreachable(error.message, service="dmp", maybe_delivered=not never)


def is_unreachable(error: BaseException) -> bool:
    if getattr(error, "code", "") == "dmp_unreachable":  # the DMP transport's "no connection" code
        return True
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _UNREACHABLE:
            return True
        current = current.__cause__ or current.__context__
    return False


class DmpDelivery:
    """``DeliveryGateway`` over ``agent.dmp.client.DmpClient`` (ITI-41 submit, TD3.1 find by uniqueId)."""

    def __init__(self, client: Any, signer: Callable[[], Any] | None = None) -> None:
        self._client = client
        self._signer = signer

    async def deliver(self, job: DeliveryJob) -> Receipt:
        from agent.dmp.models import SubmissionRequest, Visibility

        request = SubmissionRequest(
            cda=job.cda, submission_set_unique_id=job.lookup.submission_set_unique_id,
            document_unique_id=job.lookup.document_unique_id, ins=job.lookup.ins, ins_oid=job.lookup.ins_oid,
            visibility=Visibility(**job.visibility),
            signer=self._signer() if self._signer is not None else None,
        )
        try:
            result = await self._client.submit(request)
        except TransientRemoteError as exc:
            if is_unreachable(exc):
                raise unreachable(exc) from exc
            raise
        return Receipt(result.entry_uuid)

    async def find(self, lookup: Lookup) -> Receipt | None:
        try:
            entries = await self._client.find_by_unique_id(lookup.ins, lookup.ins_oid, lookup.document_unique_id)
        except TransientRemoteError as exc:
            if is_unreachable(exc):
                raise unreachable(exc) from exc
            raise
        return Receipt(entries[0].entry_uuid) if entries else None


def _same_rpps(a: str, b: str) -> bool:
    return a[-11:] == b[-11:]


def card_check(cards: Any) -> Callable[[str], str | None]:
    """Why the author's CPS cannot sign here (French), or None. Without a cards service (a server with a
    software signer) every author is accepted; the routing part will forward orders whose author's CPS is on
    another workstation (``waiting_card`` is its seam)."""
    if cards is None:
        return lambda rpps: None

    def problem(rpps: str) -> str | None:
        holder = cards.cps_holder()
        holder_rpps = str(getattr(holder, "rpps", "") or "") if holder is not None else ""
        if not holder_rpps or not _same_rpps(holder_rpps, rpps):
            return "La carte CPS de l'auteur n'est pas sur ce poste : l'envoi attend sa carte."
        if getattr(holder, "logged_in", True) is False:
            return "La carte CPS de l'auteur attend son code PIN : l'envoi partira après la saisie du code."
        return None

    return problem


def queue_settings(services: Services, delay_override: int | None = None) -> QueueSettings:
    q = services.config.queue
    return QueueSettings(
        delay_seconds=q.delay_seconds if delay_override is None else delay_override,
        max_attempts=q.max_attempts, backoff_base_seconds=q.backoff_base_seconds,
        backoff_cap_seconds=q.backoff_cap_seconds, probe_interval_seconds=q.probe_interval_seconds,
        concurrency=q.concurrency, attempt_timeout_seconds=q.attempt_timeout_seconds,
        retention_days=services.config.store.retention_days, workstation=services.config.workstation_id,
    )


def gateways_for(services: Services) -> dict[str, DeliveryGateway]:
    gateways: dict[str, DeliveryGateway] = {}
    dmp = getattr(services, "dmp", None)
    if dmp is not None:
        cards = getattr(services, "cards", None)
        signer = cards.require_signer if cards is not None and hasattr(cards, "require_signer") else None
        gateways["dmp"] = DmpDelivery(dmp, signer)
    mss = getattr(services, "mss", None)
    if mss is not None and mss.gateway is not None:
        gateways["mss"] = mss.gateway  # agent.cli.mss_wiring.MssDelivery
    return gateways


async def start_queue(services: Services, *, delay_override: int | None = None,
                      gateways: dict[str, DeliveryGateway] | None = None) -> OrderService:
    """Build the order service and start its executor (which first recovers interrupted sends)."""
    settings = queue_settings(services, delay_override)
    intake = Intake(allow_test_oids=services.config.allow_test_oids,
                    default_delay=settings.delay_seconds)
    service = OrderService(services.db, services.cipher, services.bus, services.clock, intake,
                           feeding_gate=services.feeding_gate, traces=services.traces,
                           workstation=services.config.workstation_id,
                           document_builder=services.cda.order_document if services.cda is not None else None)
    chosen = gateways_for(services) if gateways is None else gateways
    if "dmp" not in chosen:
        log.warning("aucun client DMP configuré : les envois au DMP restent en attente")

    def connectivity(kind: str, up: bool) -> None:
        services.bus.publish("connectivity.changed", service=kind, reachable=up)

    executor = QueueExecutor(services.db, services.cipher, chosen, settings, services.clock, rand=random.random,
                             card_check=card_check(getattr(services, "cards", None)),
                             on_change=service.on_executor_change, traces=services.traces,
                             on_connectivity=connectivity)
    service.executor = executor
    services.orders = service
    services.status_providers.append(service.status)
    await executor.start()
    service.card_watch = asyncio.create_task(_wake_on_cards(services, executor), name="relais-queue-cards")
    return service


async def _wake_on_cards(services: Services, executor: QueueExecutor) -> None:
    """A CPS inserted or logged in may release orders waiting for it: look at once, not at the next recheck."""
    subscription = services.bus.subscribe()
    try:
        async for event in subscription:
            if event.type in ("card.inserted", "cps.login"):
                executor.cards_changed()
    finally:
        subscription.close()

