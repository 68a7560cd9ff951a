"""MssSender: one MSSanté delivery (one recipient), its reconciliation by Message-ID, and acknowledgement reading.

The queue decides when; this decides what leaves: the masking rules are checked again at send time (a
visibility change after creation must not leak a document), the XDM carries the DMP's metadata (from the
injected ``Packager``), the Message-ID is the one fixed by the order, and nothing is done after the server's
250 to DATA but return it, so the queue records the delivery before anything else.

Identity (INS/va1.53): only a qualified identity (QUAL) lets the INS matricule and OID reference the document or
the message; otherwise the XDM names the patient by the CDA's local identifier and ``X-MSS-INS`` is ``N``.
Must never write the INS, the patient's name or the document's title in a header or the subject.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from lxml import etree

from agent.clock import Clock
from agent.domain.ins import IdentityStatus
from agent.errors import ConfigError, PermanentRemoteError, ServiceUnreachable, TransientRemoteError
from agent.logs import get_logger
from agent.mss import acks as ackmod
from agent.mss import dnssrv, imap, mime, oauthbearer, rules, smtp, xdm
from agent.mss.orders import INS_OIDS, NOT_QUALIFIED_CDA
from agent.xml.safe import parse

log = get_logger("mss")
T = TypeVar("T")
HL7 = "urn:hl7-org:v3"
DEFAULT_SUBJECT = "Document de santé"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What one delivery needs, from the order (ids fixed at creation)."""

    order_id: str
    destination: str  # "mss:<address>" or "patient_mss"
    cda: bytes
    ins: str
    ins_oid: str
    document_unique_id: str
    submission_set_unique_id: str
    visibility: Mapping[str, bool] = field(default_factory=dict)
    author_rpps: str = ""
    message: Mapping[str, Any] = field(default_factory=dict)  # the order's mss_message (body, no-reply, receipt)
    cda_header: Mapping[str, Any] = field(default_factory=dict)  # read at order creation (CdaHeader.to_json)
    identity_status: str = IdentityStatus.QUAL.value  # the order's patient.identity_status

    @property
    def qualified(self) -> bool:
        return self.identity_status == IdentityStatus.QUAL.value and bool(self.ins and self.ins_oid)


# The professional's live Pro Santé Connect access token (``PscPart.access_token``) for an RPPS, or for "" the
# professional connected now; None: no live session. Personal mailboxes only (``[mss] auth = "psc"``).
PscBearer = Callable[[str], Awaitable[str | None]]

# The XDS metadata (lcm:SubmitObjectsRequest) and the documents they describe, as the DMP would get them.
Packager = Callable[[Outgoing], Awaitable[tuple["etree._Element | bytes", list[xdm.XdmDocument]]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class MssSettings:
    sender: str
    product_reference: str  # X-MSS-NIL on every message (Référentiel #2 ECO.2.4.3)
    sender_name: str = ""
    message_id_domain: str = ""
    smtp: smtp.SmtpSettings
    imap: imap.ImapSettings | None = None
    patient_no_reply: bool = True
    read_receipt: bool = True
    # DNS SRV autoconfiguration (RFC 6186): ``smtp`` (and ``imap`` when given) are then templates (credentials,
    # TLS) whose host, port and security come from the domain's records, looked up when first needed.
    autoconfig: Autoconfig | None = None
    # A personal mailbox opened with the professional's Pro Santé Connect token (SASL OAUTHBEARER) instead of
    # the practice's certificate or password (``[mss] auth = "psc"``).
    psc: bool = False

    @property
    def domain(self) -> str:
        return self.message_id_domain or self.sender.rsplit("@", 1)[-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Autoconfig:
    domain: str
    resolver: dnssrv.ResolverSettings
    # A found record is used at most this long when its TTL says more, and at least ``min_seconds``.
    max_seconds: float = 3600.0
    min_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Servers:
    """The servers to try, in order: the configured one, or the domain's SRV targets (RFC 2782 order)."""

    smtp: tuple[smtp.SmtpSettings, ...]
    imap: tuple[imap.ImapSettings, ...]  # empty: no IMAP access


def apply_discovered(settings: MssSettings, found: dnssrv.Discovered) -> Servers:
    """The settings' credentials and TLS on each submission and IMAP target of the domain's SRV records."""
    subs = tuple(replace(settings.smtp, host=t.host, port=t.port, security=t.security) for t in found.submission)
    template = settings.imap
    boxes = () if template is None else tuple(
        replace(template, host=t.host, port=t.port, security=t.security) for t in found.imap)
    return Servers(subs, boxes)


@dataclass(frozen=True, slots=True)
class AckBatch:
    acks: list[ackmod.Ack]
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, slots=True)
class _CdaFacts:
    code: mime.CdaCode
    title: str
    patient_ids: tuple[tuple[str, str], ...]  # recordTarget/patientRole/id: (extension, root)


def _cda_facts(cda: bytes) -> _CdaFacts:
    root = parse(cda, what="CDA")
    code = root.find(f"{{{HL7}}}code")
    title = " ".join((root.findtext(f"{{{HL7}}}title") or "").split())
    ids = tuple((i.get("extension", ""), i.get("root", ""))
                for i in root.iterfind(f"{{{HL7}}}recordTarget/{{{HL7}}}patientRole/{{{HL7}}}id"))
    found = (mime.CdaCode(code.get("code", ""), code.get("displayName", ""), code.get("codeSystem", ""))
             if code is not None and code.get("code") else mime.CdaCode("", "", ""))
    return _CdaFacts(found, title, ids)


def without_ins(out: Outgoing, patient_ids: tuple[tuple[str, str], ...]) -> Outgoing:
    """The delivery as the XDM may describe it when the identity is not qualified: the patient named by the CDA's
    local identifier, never by an INS (INS/va1.53). Refused when the CDA itself carries the INS."""
    if any(root in INS_OIDS for _, root in patient_ids):
        raise PermanentRemoteError(NOT_QUALIFIED_CDA, service="mss", code="mss_ins_not_qualified")
    local = next(((ext, root) for ext, root in patient_ids if ext and root), None)
    if local is None:
        raise PermanentRemoteError(
            "L'identité du patient n'est pas qualifiée et le document ne porte aucun identifiant local du patient "
            "(recordTarget/patientRole/id) : l'envoi par messagerie est impossible.",
            service="mss", code="mss_ins_not_qualified")
    return replace(out, ins=local[0], ins_oid=local[1])


class MssSender:
    def __init__(self, settings: MssSettings, packager: Packager, clock: Clock,
                 bearer: PscBearer | None = None) -> None:
        if settings.psc and bearer is None:
            raise ConfigError("mss.auth = \"psc\" demande Pro Santé Connect (section [psc])", key="mss.auth")
        self.settings = settings
        self.packager = packager
        self.clock = clock
        self._bearer = bearer
        self._resolved: tuple[float, Servers] | None = None  # (valid until, servers) under autoconfig
        self.discovered: dnssrv.Discovered | None = None  # the last DNS SRV answer (for /v1/status)

    async def servers(self) -> Servers:
        """The servers to use now: as configured, or from the DNS SRV records (cached for their TTL, bounded).
        Raises ``ServiceUnreachable`` when the DNS does not answer, ``TransientRemoteError`` ``mss_autoconfig``
        (the French reason) when the domain publishes no submission server."""
        auto = self.settings.autoconfig
        if auto is None:
            return Servers((self.settings.smtp,), () if self.settings.imap is None else (self.settings.imap,))
        now = self.clock.now().timestamp()
        if self._resolved is not None and now < self._resolved[0]:
            return self._resolved[1]
        try:
            found = await dnssrv.discover(auto.domain, auto.resolver)
        except ConfigError as exc:  # nothing published: the delivery waits (the operator or the config may change)
            raise TransientRemoteError(exc.message, service="mss", code="mss_autoconfig") from exc
        resolved = apply_discovered(self.settings, found)
        self.discovered = found
        self._resolved = (now + min(auto.max_seconds, max(auto.min_seconds, found.ttl)), resolved)
        log.info("MSSanté autoconfigurée par DNS SRV (%s) : %s", auto.domain, found.describe())
        return resolved

    async def _token(self, rpps: str) -> str:
        """The PSC token opening the personal mailbox (of ``rpps``, or of whoever is connected for ""); without a
        live session the caller waits for the professional (``Unavailable``), never falls back to another
        authentication."""
        assert self._bearer is not None
        token = await self._bearer(rpps)
        if not token:
            raise oauthbearer.session_over()
        return token

    async def _smtp_targets(self, rpps: str) -> tuple[smtp.SmtpSettings, ...]:
        targets = (await self.servers()).smtp
        if not self.settings.psc:
            return targets
        token = await self._token(rpps)
        return tuple(replace(t, oauth_token=token, oauth_user=self.settings.sender) for t in targets)

    async def _imap_boxes(self) -> tuple[imap.ImapSettings, ...]:
        boxes = (await self.servers()).imap
        if not self.settings.psc or not boxes:
            return boxes
        token = await self._token("")
        return tuple(replace(b, oauth_token=token) for b in boxes)

    def message_id(self, order_id: str, destination: str) -> str:
        return mime.message_id(order_id, destination, self.settings.domain)

    async def build(self, out: Outgoing, now: datetime) -> tuple[str, str, bytes]:
        """(recipient address, Message-ID, MIME bytes) for one delivery; refuses what the rules forbid."""
        recipient = rules.recipient_for(out.destination, out.ins)
        why = rules.refusal(recipient, rules.MaskFlags.from_mapping(out.visibility))
        if why:
            raise PermanentRemoteError(why, service="mss", code="mss_masked")
        facts = _cda_facts(out.cda)
        code, title = facts.code, facts.title
        qualified = out.qualified
        metadata, documents = await self.packager(out if qualified else without_ins(out, facts.patient_ids))
        to_patient = recipient.kind is rules.RecipientKind.PATIENT
        package = await asyncio.to_thread(xdm.build_xdm, metadata, documents, sender=self.settings.sender,
                                          title=title or "Document de santé", recipient=recipient.address)
        message_id = self.message_id(out.order_id, out.destination)
        options = out.message
        text = options.get("patient_body" if to_patient else "body")
        body = text if isinstance(text, str) and text.strip() else mime.default_body(
            to_patient=to_patient, titles=[title or code.display or "Document"], sender_name=self.settings.sender_name)
        subject = options.get("subject")
        no_reply = options.get("patient_no_reply", self.settings.patient_no_reply)
        receipt = options.get("read_receipt", self.settings.read_receipt)
        message = mime.MssMessage(
            sender=self.settings.sender, recipient=recipient.address, message_id=message_id, date=now,
            subject=subject.strip()[:150] if isinstance(subject, str) and subject.strip() else DEFAULT_SUBJECT,
            body=body, xdm=package, cda_codes=[code] if code.code else [], qualified_ins=qualified,
            product_reference=self.settings.product_reference,
            no_reply=to_patient and bool(no_reply), read_receipt=bool(receipt))
        return recipient.address, message_id, mime.to_bytes(mime.build_message(message))

    async def send(self, out: Outgoing) -> str:
        """Submit one delivery; its Message-ID once the operator accepted DATA. Errors as in ``agent.mss.smtp``.

        With several servers (SRV targets), the next one is tried only when the previous could not be reached at
        all (nothing left); any other outcome, an uncertain one above all, is final for this attempt."""
        targets = await self._smtp_targets(out.author_rpps)  # a personal mailbox's session first: the right reason
        address, message_id, data = await self.build(out, self.clock.now())
        for index, target in enumerate(targets):
            try:
                await smtp.submit(target, self.settings.sender, [address], data, message_id)
                break
            except ServiceUnreachable as exc:
                if exc.maybe_delivered or index == len(targets) - 1:
                    raise
                log.info("serveur d'envoi MSSanté %s:%s injoignable : serveur suivant", target.host, target.port)
        log.info("envoi %s : message MSSanté accepté par l'opérateur", out.order_id)
        return message_id

    async def _imap(self, boxes: tuple[imap.ImapSettings, ...], work: Callable[[imap.ImapMailbox], T]) -> T:
        """``work`` in a session with the first IMAP server that answers (the next one only when unreachable)."""
        def run(settings: imap.ImapSettings) -> T:
            with imap.ImapMailbox(settings) as box:
                return work(box)

        for index, settings in enumerate(boxes):
            try:
                return await asyncio.to_thread(run, settings)
            except ServiceUnreachable:
                if index == len(boxes) - 1:
                    raise
                log.info("serveur IMAP MSSanté %s:%s injoignable : serveur suivant", settings.host, settings.port)
        raise AssertionError("no IMAP server")  # callers check that there is one

    async def find(self, order_id: str, destination: str) -> str | None:
        """The Message-ID when the operator already holds this delivery (reconciliation), else None.

        Without IMAP nothing can be verified: refusing is the only way never to send twice."""
        boxes = await self._imap_boxes()
        if not boxes:
            raise PermanentRemoteError(
                "L'envoi a peut-être déjà eu lieu et ne peut pas être vérifié (IMAP non configuré) : "
                "vérifiez la boîte d'envoi avant de relancer.", service="mss", code="mss_unverifiable")
        message_id = self.message_id(order_id, destination)
        held = await self._imap(boxes, lambda box: box.holds_message_id(message_id))
        return message_id if held else None

    async def probe(self) -> None:
        """Raises when the operator cannot be reached (connectivity check of the queue)."""
        servers = await self.servers()
        # A personal mailbox with no PSC session: the servers are probed without opening the mailbox (connect,
        # TLS, EHLO), never with another authentication.
        if servers.imap and (not self.settings.psc or (self._bearer is not None and await self._bearer(""))):
            await self._imap(await self._imap_boxes(), lambda box: box.noop())
            return
        for index, target in enumerate(servers.smtp):
            try:
                await asyncio.to_thread(smtp.check_blocking, target)
                return
            except ServiceUnreachable:
                if index == len(servers.smtp) - 1:
                    raise

    async def read_acks(self, uidvalidity: int, last_uid: int) -> AckBatch:
        """New acknowledgements in the INBOX after ``last_uid`` (none read while a personal mailbox's professional
        is not connected: they wait in the mailbox)."""
        if self.settings.psc and self._bearer is not None and not await self._bearer(""):
            return AckBatch([], uidvalidity, last_uid)
        boxes = await self._imap_boxes()
        if not boxes:
            return AckBatch([], uidvalidity, last_uid)
        fetched = await self._imap(boxes, lambda box: box.fetch_new(last_uid, uidvalidity))
        # Parsed off the event loop; the mailbox position moves past every fetched mail, so a bad one is skipped
        # once and never read again (it stays in the mailbox for a human).
        found = await asyncio.to_thread(read_reports, fetched.messages)
        return AckBatch(found, fetched.uidvalidity, fetched.last_uid)


def read_reports(messages: list[tuple[int, bytes]]) -> list[ackmod.Ack]:
    """The acknowledgements of fetched mails; one that is malformed, too large or too deeply nested is logged
    (by its UID only) and skipped, never fatal: whatever it raises, the others are read."""
    found: list[ackmod.Ack] = []
    for uid, data in messages:
        try:
            found.extend(ackmod.parse_ack(data))
        except Exception as exc:  # the email package raises more than ValueError on hostile input
            log.warning("accusé MSSanté illisible ignoré (UID %d, %s)", uid, type(exc).__name__)
    return found


def autoconfig_status(sender: MssSender) -> dict[str, Any] | None:
    """``connectivity.mss.autoconfig`` of /v1/status: the domain and the first servers its SRV records name
    (None until the first look-up), or None when the servers are configured."""
    auto = sender.settings.autoconfig
    if auto is None:
        return None
    found = sender.discovered

    def first(targets: tuple[dnssrv.SrvTarget, ...]) -> str | None:
        return f"{targets[0].host}:{targets[0].port}" if targets else None

    return {"domain": auto.domain, "submission": first(found.submission) if found else None,
            "imap": first(found.imap) if found else None}


def describe(settings: MssSettings) -> dict[str, Any]:
    if settings.autoconfig is not None:
        return {"sender": settings.sender, "smtp": f"DNS SRV {settings.autoconfig.domain}", "imap": None}
    return {"sender": settings.sender, "smtp": f"{settings.smtp.host}:{settings.smtp.port}",
            "imap": f"{settings.imap.host}:{settings.imap.port}" if settings.imap else None}
