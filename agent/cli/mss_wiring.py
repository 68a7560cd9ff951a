"""Wiring of the MSSanté part: the sender and its settings, the queue's gateway, the DMP's metadata for the XDM,
the acknowledgement poller, the directory. Part of the composition root: the one place where the MSS code meets
the DMP's metadata builder, the cards' signer, the store and the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import uuid
from pathlib import Path
from typing import Any

from agent.api.context import Services
from agent.config import Config, MssSection
from agent.errors import ConfigError, RelaisError, Unavailable
from agent.logs import get_logger
from agent.mss import imap, smtp, xdm
from agent.mss.service import MssSender, MssSettings, Outgoing, Packager
from agent.queue.gateway import DeliveryJob, Lookup, Receipt
from agent.store import mss_acks

log = get_logger("mss")
INBOX = "INBOX"


def _context_factory(ca_file: str, cert: str, key: str) -> Any:
    def make() -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert:
            context.load_cert_chain(cert, key or cert)
        return context

    return make


def settings_from(section: MssSection, endpoint: dict[str, Any] | None) -> MssSettings | None:
    """The sender's settings: the sandbox operator under the demo, else the [mss] section (None when off)."""
    if endpoint:
        factory = _context_factory(endpoint["ca"], endpoint["client_cert"], endpoint["client_key"])
        sender = str(endpoint["sender"])
        return MssSettings(
            sender=sender, sender_name=section.sender_name or "Cabinet de démonstration Relais",
            smtp=smtp.SmtpSettings(host=endpoint["smtp"]["host"], port=int(endpoint["smtp"]["port"]),
                                   security=endpoint["smtp"].get("security", "tls"), context=factory,
                                   timeout=section.timeout_seconds),
            imap=imap.ImapSettings(host=endpoint["imap"]["host"], port=int(endpoint["imap"]["port"]),
                                   context=factory, username=sender, timeout=section.timeout_seconds,
                                   sent=section.sent_folder),
            patient_no_reply=section.patient_no_reply, read_receipt=section.read_receipt)
    if not section.enabled:
        return None
    _check(section)
    password = ""
    if section.auth == "password":
        path = Path(section.password_file)
        try:
            password = path.read_text(encoding="utf-8").strip()
            if os.name == "posix" and path.stat().st_mode & 0o077:
                log.warning("mss.password_file est lisible par d'autres comptes : chmod 600 %s", path)
        except OSError as exc:
            raise ConfigError(f"fichier de mot de passe illisible : {exc.strerror}", key="mss.password_file") from exc
    cert = section.client_cert if section.auth == "certificate" else ""
    factory = _context_factory(section.ca_file, cert, section.client_key)
    username = section.username if section.auth == "password" else ""
    return MssSettings(
        sender=section.sender_address, sender_name=section.sender_name, message_id_domain=section.message_id_domain,
        smtp=smtp.SmtpSettings(host=section.smtp_host, port=section.smtp_port, security=section.smtp_security,
                               context=factory, username=username, password=password,
                               timeout=section.timeout_seconds),
        imap=imap.ImapSettings(host=section.imap_host, port=section.imap_port, context=factory,
                               username=section.username or section.sender_address, password=password,
                               timeout=section.timeout_seconds, sent=section.sent_folder)
        if section.imap_host else None,
        patient_no_reply=section.patient_no_reply, read_receipt=section.read_receipt)


def _check(section: MssSection) -> None:
    """What an enabled [mss] section needs, each missing key named (the agent refuses to start without it)."""
    needed = {"mss.sender_address": section.sender_address, "mss.smtp_host": section.smtp_host}
    if section.auth == "certificate":
        needed["mss.client_cert"] = section.client_cert
    else:
        needed["mss.username"] = section.username
        needed["mss.password_file"] = section.password_file
    for key, value in needed.items():
        if not value:
            raise ConfigError("valeur obligatoire quand mss.enabled = true", key=key)
    if "@" not in section.sender_address:
        raise ConfigError("adresse MSSanté attendue (nom@domaine.mssante.fr)", key="mss.sender_address")
    for key, port in (("mss.smtp_port", section.smtp_port), ("mss.imap_port", section.imap_port)):
        if not 0 < port < 65536:
            raise ConfigError("port hors de la plage 1-65535", key=key)
    if section.timeout_seconds <= 0 or section.ack_poll_seconds <= 0:
        raise ConfigError("une valeur strictement positive est attendue", key="mss.timeout_seconds")


def dmp_packager(services: Services) -> Packager:
    """The XDM's METADATA.XML from the DMP's own builder (same DocumentEntry, SubmissionSet, DSG signature)."""
    from agent.dmp.models import SubmissionRequest, Visibility
    from agent.dmp.submission import SubmissionDefaults, build_submission

    async def package(out: Outgoing) -> tuple[Any, list[xdm.XdmDocument]]:
        dmp = services.dmp
        defaults = getattr(dmp, "defaults", None) or SubmissionDefaults(source_id=services.config.dmp.source_id)
        signer = _signer(services)
        request = SubmissionRequest(
            cda=out.cda, submission_set_unique_id=out.submission_set_unique_id,
            document_unique_id=out.document_unique_id, ins=out.ins, ins_oid=out.ins_oid,
            visibility=Visibility(**{k: bool(v) for k, v in out.visibility.items()}), signer=signer)
        new_uuid = getattr(dmp, "new_uuid", None) or (lambda: str(uuid.uuid4()))
        built = await asyncio.to_thread(build_submission, request, signer, defaults, services.clock.now(),
                                        new_uuid, getattr(dmp, "value_sets", None))
        signature = next(v for v in built.attachments.values() if v != out.cda)
        return built.body[0], [xdm.XdmDocument(out.document_unique_id, out.cda),
                               xdm.XdmDocument(built.signature_unique_id, signature)]

    return package


def _signer(services: Services) -> Any:
    cards = services.cards
    if cards is not None and hasattr(cards, "require_signer"):
        return cards.require_signer()
    document_signer = getattr(services.dmp, "document_signer", None)
    if document_signer is not None:
        return document_signer()
    raise Unavailable("Aucune clé de signature : insérez la carte CPS.", code="cps_absent")


class MssDelivery:
    """``DeliveryGateway`` (agent.queue.gateway) over ``MssSender``: the receipt's id is the Message-ID."""

    def __init__(self, sender: MssSender, on_sent: Any = None) -> None:
        self.sender = sender
        self._on_sent = on_sent

    async def deliver(self, job: DeliveryJob) -> Receipt:
        lookup = job.lookup
        message_id = await self.sender.send(Outgoing(
            order_id=job.order_id, destination=job.destination, cda=job.cda, ins=lookup.ins, ins_oid=lookup.ins_oid,
            document_unique_id=lookup.document_unique_id, submission_set_unique_id=lookup.submission_set_unique_id,
            visibility=job.visibility, author_rpps=job.author_rpps, message=getattr(job, "mss_message", {})))
        if self._on_sent is not None:
            self._on_sent()
        return Receipt(message_id)

    async def find(self, lookup: Lookup) -> Receipt | None:
        order_id, destination = getattr(lookup, "order_id", ""), getattr(lookup, "destination", "")
        if not order_id or not destination:  # the queue's connectivity probe
            await self.sender.probe()
            return None
        found = await self.sender.find(order_id, destination)
        return Receipt(found) if found else None


class MssPart:
    """What ``services.mss`` holds: the sender, the gateway, the acknowledgement poller, the directory."""

    def __init__(self, services: Services, sender: MssSender | None, interval: float, directory: Any = None) -> None:
        self.services = services
        self.sender = sender  # None: MSSanté not configured (the directory may still be)
        self.gateway = MssDelivery(sender, on_sent=self.poll_soon) if sender is not None else None
        self.interval = interval
        self.directory = directory
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reachable: bool | None = None  # the last reading of the mailbox worked (None: not tried yet)
        self.checked_at: str | None = None

    async def status(self) -> dict[str, Any]:
        """``connectivity.mss`` of /v1/status: configured, sender, and the last mailbox reading's outcome."""
        sender = self.sender
        return {"connectivity": {"mss": {
            "configured": sender is not None, "sender": sender.settings.sender if sender is not None else None,
            "reachable": self.reachable, "checked_at": self.checked_at,
            "directory": self.directory is not None}}}

    def start(self) -> None:
        if self.sender is None:
            return
        self._task = asyncio.create_task(self._run(), name="mss-acks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poll_soon(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        first = True
        while True:
            if not first:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
                self._wake.clear()
                await asyncio.sleep(1.0)  # let the operator's reports for the message just sent arrive together
            first = False
            try:
                await self.poll_once()
            except RelaisError as exc:
                log.warning("lecture des accusés MSSanté impossible : %s", exc.code)
                self._checked(False)
            except Exception:
                log.exception("lecture des accusés MSSanté")
                self._checked(False)
            else:
                self._checked(True)

    def _checked(self, ok: bool) -> None:
        from agent.clock import rfc3339

        if ok != self.reachable:
            self.services.bus.publish("connectivity.changed", service="mss", reachable=ok)
        self.reachable = ok
        self.checked_at = rfc3339(self.services.clock.now())

    async def poll_once(self) -> int:
        """Read new reports, record them against their Message-IDs, announce the orders they concern."""
        if self.sender is None:
            return 0
        db = self.services.db
        uidvalidity, last_uid = await db.read(lambda c: mss_acks.mailbox_position(c, INBOX))
        batch = await self.sender.read_acks(uidvalidity, last_uid)
        now = self.services.clock.now().timestamp()

        def save(conn: Any) -> list[str]:
            fresh: set[str] = set()
            for ack in batch.acks:
                row = mss_acks.AckRow(ack.original_message_id, ack.kind.value, ack.outcome.value, ack.status, ack.at)
                key = f"{ack.ack_message_id}|{ack.original_message_id}|{ack.kind.value}|{ack.recipient.lower()}"
                if ack.original_message_id and mss_acks.record_ack(conn, row, key, now):
                    fresh.add(ack.original_message_id)
            mss_acks.set_mailbox_position(conn, INBOX, batch.uidvalidity, batch.last_uid)
            return mss_acks.orders_for_message_ids(conn, fresh)

        orders = await db.write(save)
        for order_id in orders:
            self.services.bus.publish("order.updated", order_id=order_id, acknowledgement=True)
        return len(orders)

    async def annotate(self, order: dict[str, Any]) -> dict[str, Any]:
        """Add each MSS delivery's Message-ID and acknowledgements to an order's JSON, and the catalogue's
        proposal when the document is one it sends to the médecin traitant / adresseur and no one is named."""
        suggestion = mss_suggestion(order)
        if suggestion:
            order["mss_suggestion"] = suggestion
        sender = self.sender
        if sender is None:
            if any(str(d.get("destination", "")).startswith("mss:") or d.get("destination") == "patient_mss"
                   for d in order.get("deliveries", [])):
                order["mss_warning"] = ("MSSanté n'est pas configurée sur cet agent (section [mss]) : les envois "
                                        "par messagerie attendront sa configuration.")
            return order
        order_id = str(order.get("id", ""))
        deliveries = [d for d in order.get("deliveries", []) if str(d.get("destination", "")).startswith("mss:")
                      or d.get("destination") == "patient_mss"]
        ids = {id(d): sender.message_id(order_id, str(d["destination"])) for d in deliveries}
        found = await self.services.db.read(lambda c: mss_acks.acks_for(c, ids.values()))
        for d in deliveries:
            rows = found.get(ids[id(d)], [])
            d["message_id"] = ids[id(d)]
            d["acknowledgements"] = [r.as_dict() for r in rows]
            d["acknowledgement"] = mss_acks.summary(rows)
        return order


def mss_suggestion(order: dict[str, Any]) -> str | None:
    """French advice when the Ségur catalogue sends this document type by MSSanté (M) and the order names no
    correspondent (the CSE platform does not count)."""
    from agent.domain import catalogue

    document = catalogue.by_type_code(str((order.get("document") or {}).get("type_code", "")))
    if document is None or not catalogue.default_destinations(document, catalogue.Profession.MEDECIN).mss:
        return None
    named = [d for d in order.get("deliveries", []) if str(d.get("destination", "")).startswith("mss:")
             and d["destination"] != f"mss:{catalogue.CSE_MSS_ADDRESS}"]
    if named:
        return None
    return (f"« {document.title} » est prévu pour le médecin traitant ou l'adresseur par MSSanté : "
            "ajoutez son adresse (recherche : GET /v1/directory?name=).")


async def install_mss(services: Services, registrars: list[Any], sandbox: Any) -> None:
    """The MSS part on ``services.mss`` (the sender when configured or under the demo; the directory when an
    Annuaire santé source is), and the directory route."""
    from agent.api import mss as mss_api
    from agent.cli.directory_wiring import directory_for
    from agent.cli.wiring import sandbox_endpoint

    config: Config = services.config
    settings = settings_from(config.mss, await sandbox_endpoint(config, sandbox, "mss"))
    directory = await directory_for(config, services, await sandbox_endpoint(config, sandbox, "directory"))
    registrars.append(mss_api.register)
    if settings is not None and services.dmp is None and not config.dmp.source_id:
        raise ConfigError("l'OID de cette installation est nécessaire aux métadonnées XDS des envois MSSanté",
                          key="dmp.source_id", path=config.source)
    sender = MssSender(settings, dmp_packager(services), services.clock) if settings is not None else None
    part = MssPart(services, sender, config.mss.ack_poll_seconds, directory)
    services.mss = part
    services.status_providers.append(part.status)
    part.start()
