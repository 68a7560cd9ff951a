"""Acknowledgements read from the sender's mailbox: DSN (RFC 3464) and MDN (RFC 8098). Pure, stdlib email.

A DSN says whether the recipient's operator delivered the message (``delivered``, ``failed``, ``delayed``);
an MDN says what the recipient did with it (``displayed`` = read, ``deleted``...). Both name the original
message: the MDN by ``Original-Message-ID``, the DSN by its returned headers (or ``Original-Envelope-Id``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.header import Header
from email.message import Message
from email.utils import format_datetime, make_msgid, parsedate_to_datetime


class AckKind(enum.StrEnum):
    DSN = "dsn"
    MDN = "mdn"


class AckOutcome(enum.StrEnum):
    DELIVERED = "delivered"  # DSN Action: delivered (or relayed/expanded)
    DELAYED = "delayed"  # DSN Action: delayed: still trying
    ERROR = "error"  # DSN Action: failed, or an MDN reporting an error / deletion unread
    READ = "read"  # MDN disposition: displayed


@dataclass(frozen=True, slots=True)
class Ack:
    kind: AckKind
    original_message_id: str
    outcome: AckOutcome
    recipient: str
    status: str  # DSN status code (e.g. 5.1.1) or MDN disposition, for the detail
    at: str  # the report's Date header, RFC 3339, or ""
    ack_message_id: str  # the report's own Message-ID (idempotent recording)

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "outcome": self.outcome.value, "status": self.status, "at": self.at}


def _fields(part: Message) -> list[dict[str, str]]:
    """The header blocks of a message/delivery-status or message/disposition-notification part."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):  # the email package parses these parts into sub-messages
        for sub in payload:
            if isinstance(sub, Message):
                blocks.append({k.lower(): str(v).strip() for k, v in sub.items()})
        return blocks
    raw = payload if isinstance(payload, str) else ""
    for chunk in raw.replace("\r\n", "\n").split("\n\n"):
        block: dict[str, str] = {}
        last = ""
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and last:
                block[last] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                last = key.strip().lower()
                block[last] = value.strip()
        if block:
            blocks.append(block)
    return blocks


def _address(value: str) -> str:
    # "rfc822; dr.x@example" -> "dr.x@example"
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _returned_message_id(report: Message) -> str:
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = message_from_bytes(payload, policy=policy.default)
                return str(headers.get("Message-ID", "")).strip()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return str(inner[0].get("Message-ID", "")).strip()
    return ""


def _envid(value: str) -> str:
    """RFC 3461 ENVID (xtext; we send the Message-ID without its brackets) back to a Message-ID."""
    decoded = re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value.strip())
    if not decoded:
        return ""
    return decoded if decoded.startswith("<") else f"<{decoded}>"


def _date(msg: Message) -> str:
    raw = msg.get("Date")
    if not raw:
        return ""
    try:
        return parsedate_to_datetime(str(raw)).isoformat().replace("+00:00", "Z")
    except (TypeError, ValueError):
        return ""


# Limits checked before the email package parses a mail (it recurses once per nested part: a report nested a
# thousand deep made it fail with RecursionError, for ever, at every poll). We send with RET=HDRS, so a real
# report is a few KB with at most 3 or 4 container parts (multipart/report, message/delivery-status or
# message/disposition-notification, maybe message/rfc822).
MAX_REPORT_BYTES = 1024 * 1024
MAX_CONTAINER_PARTS = 16
_CONTAINER = re.compile(rb"(?im)^content-type:\s*(?:multipart|message)/")


class MalformedReport(ValueError):
    """A mail that cannot be a delivery report we read: too large, too deeply nested, unparseable."""


def check_report_shape(data: bytes) -> None:
    """Refuse, without parsing, a mail over the size limit or with more container parts than a report has
    (which bounds the nesting depth the parser would recurse through)."""
    if len(data) > MAX_REPORT_BYTES:
        raise MalformedReport(f"report of {len(data)} bytes, over {MAX_REPORT_BYTES}")
    containers = sum(1 for _ in _CONTAINER.finditer(data))
    if containers > MAX_CONTAINER_PARTS:
        raise MalformedReport(f"{containers} nested parts, over {MAX_CONTAINER_PARTS}")


def parse_ack(data: bytes) -> list[Ack]:
    """The acknowledgements in one mail (a DSN may report several recipients); [] when it is not a report.
    ``MalformedReport`` for a mail over the limits above, or that the email package cannot take apart."""
    check_report_shape(data)
    try:
        return _parse_ack(data)
    except RecursionError as exc:  # a nesting the container count let through (folded headers...)
        raise MalformedReport("nesting too deep") from exc


def _parse_ack(data: bytes) -> list[Ack]:
    msg = message_from_bytes(data, policy=policy.compat32)
    if msg.get_content_type() != "multipart/report":
        return []
    report_type = (msg.get_param("report-type") or "")
    report_type = report_type.lower() if isinstance(report_type, str) else ""
    own_id = str(msg.get("Message-ID", "")).strip()
    at = _date(msg)
    acks: list[Ack] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if report_type == "delivery-status" and ctype == "message/delivery-status":
            blocks = _fields(part)
            if not blocks:
                continue
            per_message, recipients = blocks[0], blocks[1:]
            original = _returned_message_id(msg) or _envid(per_message.get("original-envelope-id", ""))
            for rcpt in recipients:
                action = rcpt.get("action", "").lower()
                outcome = {"delivered": AckOutcome.DELIVERED, "relayed": AckOutcome.DELIVERED,
                           "expanded": AckOutcome.DELIVERED, "delayed": AckOutcome.DELAYED}.get(
                               action, AckOutcome.ERROR)
                acks.append(Ack(AckKind.DSN, original, outcome,
                                _address(rcpt.get("final-recipient", rcpt.get("original-recipient", ""))),
                                rcpt.get("status", action), at, own_id))
        elif report_type == "disposition-notification" and ctype == "message/disposition-notification":
            blocks = _fields(part)
            fields: dict[str, str] = {}
            for block in blocks:
                fields.update(block)
            disposition = fields.get("disposition", "")
            kind = disposition.split(";", 1)[-1].strip().lower()
            kind = kind.split("/", 1)[0].strip()
            outcome = AckOutcome.READ if kind.startswith("displayed") else AckOutcome.ERROR
            acks.append(Ack(AckKind.MDN, fields.get("original-message-id", "").strip(), outcome,
                            _address(fields.get("final-recipient", "")), disposition, at, own_id))
    return acks


# RFC 3463 enhanced status codes -> what the doctor reads when a DSN reports a failure (most specific first).
_REASONS = (
    ("5.1.1", "l'adresse du destinataire n'existe pas chez son opérateur"),
    ("5.1.", "l'adresse du destinataire est invalide"),
    ("5.2.2", "la boîte du destinataire est pleine"),
    ("5.2.", "la boîte du destinataire est indisponible"),
    ("5.3.4", "le message est trop volumineux pour l'opérateur du destinataire"),
    ("5.7.", "l'opérateur du destinataire a refusé le message (règle de sécurité)"),
    ("4.", "l'opérateur du destinataire n'a pas pu le remettre à temps"),
)


def failure_reason(status: str) -> str:
    """The French reason of a failed DSN, from its status code only (the diagnostic text may quote addresses,
    and a patient's address is the INS)."""
    code = status.strip().split(" ", 1)[0]
    why = next((text for prefix, text in _REASONS if code.startswith(prefix)),
               "l'opérateur du destinataire ne l'a pas remis")
    shown = code if re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", code) else "inconnu"
    return f"Message MSSanté non remis : {why} (statut {shown})."


def original_ids(data: bytes) -> set[str]:
    return {a.original_message_id for a in parse_ack(data) if a.original_message_id}




# --- building reports (the MSSanté simulator, tests) -------------------------------------------------------


def _report(kind: str, *, sender: str, to: str, subject: str, text: str, status_part: str, original: Message,
            date: datetime, domain: str) -> bytes:
    """A multipart/report written out by hand: the email package cannot serialise a message/delivery-status
    part given as text."""
    boundary = "=_report_" + make_msgid(domain="b").strip("<>").split("@")[0].replace(".", "_")
    headers = "".join(f"{k}: {v}\r\n" for k, v in original.items())
    crlf = "\r\n"
    lines = [
        f"From: {sender}", f"To: {to}", f"Subject: {Header(subject, 'utf-8').encode()}",
        f"Date: {format_datetime(date)}", f"Message-ID: {make_msgid(domain=domain)}", "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0", f'Content-Type: multipart/report; report-type={kind}; boundary="{boundary}"', "",
        f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "", text, "",
        f"--{boundary}", f"Content-Type: message/{kind}", "", status_part.replace(crlf, "\n").rstrip("\n"), "",
        f"--{boundary}", "Content-Type: text/rfc822-headers", "", headers.replace(crlf, "\n").rstrip("\n"), "",
        f"--{boundary}--", "",
    ]
    return crlf.join(line.replace("\n", crlf) for line in lines).encode("utf-8")


def build_dsn(original: bytes, *, recipient: str, delivered: bool, reporting_mta: str, date: datetime,
              status: str = "") -> bytes:
    """A delivery status notification for ``original`` about ``recipient``."""
    msg = message_from_bytes(original, policy=policy.compat32)
    sender = str(msg.get("From", ""))
    action = "delivered" if delivered else "failed"
    code = status or ("2.0.0" if delivered else "5.1.1")
    part = (f"Reporting-MTA: dns; {reporting_mta}\r\nOriginal-Envelope-Id: {msg.get('Message-ID', '')}\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {code}\r\n")
    text = ("Votre message a été remis à son destinataire." if delivered
            else "Votre message n'a pas pu être remis à son destinataire.")
    return _report("delivery-status", sender=f"MAILER-DAEMON@{reporting_mta}", to=sender,
                   subject="Avis de remise" if delivered else "Échec de remise", text=text, status_part=part,
                   original=msg, date=date, domain=reporting_mta)


def build_mdn(original: bytes, *, reader: str, date: datetime, disposition: str = "displayed") -> bytes:
    """A message disposition notification: ``reader`` displayed (or deleted) ``original``."""
    msg = message_from_bytes(original, policy=policy.compat32)
    domain = reader.rsplit("@", 1)[-1]
    part = (f"Reporting-UA: {domain}; Relais sandbox\r\nFinal-Recipient: rfc822; {reader}\r\n"
            f"Original-Message-ID: {msg.get('Message-ID', '')}\r\n"
            f"Disposition: manual-action/MDN-sent-manually; {disposition}\r\n")
    return _report("disposition-notification", sender=reader, to=str(msg.get("Disposition-Notification-To",
                   msg.get("From", ""))), subject="Accusé de lecture", text="Votre message a été lu.",
                   status_part=part, original=msg, date=date, domain=domain)
