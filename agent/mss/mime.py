"""The MSSanté message: MIME with the XDM zip, the X-MSS headers, and a fixed Message-ID. Pure, stdlib email.

Headers (ANS mapping-mss, Référentiel socle MSSanté #2 clients de messagerie, ECO.2.2.8 and ECO.2.4.1-3 as DevBox
"Entête spécifiques X-MSS" quotes them, ../shared/design/NATIONAL-SERVICES.md SF1):
- ``From``: the sending mailbox (the practice's or the doctor's MSSanté address);
- ``To``: one recipient per message (one delivery per recipient, each with its own Message-ID);
- ``Message-ID``: derived from the order id and the destination, so it is fixed when the order is created
  and the same on every attempt: reconciliation searches for it;
- ``X-MSS-CODECDA``: one per CDA in the XDM (``code^display^codeSystem`` of the document type);
- ``X-MSS-INS``: the patient's INS matricule;
- ``X-MSS-MES: FIN``: to a patient's mailbox when the professional does not want a reply;
- ``Disposition-Notification-To``: asks for a read receipt (MDN);
- ``Subject`` and body: French, without patient name or document content.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

XDM_FILENAME = "IHE_XDM.ZIP"
# Headers are not folded below RFC 5322's 998-character limit: a folded Message-ID is legal, but some
# servers compare identifiers byte for byte, and reconciliation searches for it.
_POLICY = policy.SMTP.clone(max_line_length=998)
_HEADER_SAFE = re.compile(r"^[^\r\n\x00]*$")


@dataclass(frozen=True, slots=True)
class CdaCode:
    code: str
    display: str
    system: str

    def header(self) -> str:
        """The X-MSS-CODECDA value: the CDA's ``code/@code`` alone (ECO.2.4.1)."""
        return _clean(self.code)


@dataclass(frozen=True, slots=True)
class MssMessage:
    sender: str
    recipient: str
    message_id: str  # with its angle brackets
    date: datetime
    subject: str
    body: str
    xdm: bytes
    cda_codes: Sequence[CdaCode]
    qualified_ins: bool = False  # X-MSS-INS: O when the XDM carries a qualified INS, else N
    product_reference: str = ""  # X-MSS-NIL
    no_reply: bool = False  # X-MSS-MES: FIN (to a patient only)
    read_receipt: bool = True
    reply_to: str = ""


def _clean(value: str) -> str:
    """A header value can never carry a line break (header injection) or the ^ separator."""
    if not _HEADER_SAFE.match(value):
        raise ValueError("header value with a line break")
    return value.replace("^", " ").strip()


def message_id(order_id: str, destination: str, domain: str) -> str:
    """The Message-ID of one delivery, fixed by the order: ``<order.digest@domain>``.

    The destination is hashed so the recipient's address does not appear in the identifier."""
    digest = hashlib.sha256(f"{order_id}\x00{destination}".encode()).hexdigest()[:20]
    safe_order = re.sub(r"[^A-Za-z0-9.\-]", "", order_id)[:64] or "order"
    safe_domain = re.sub(r"[^A-Za-z0-9.\-]", "", domain) or "relais.invalid"
    return f"<{safe_order}.{digest}@{safe_domain}>"


def default_body(*, to_patient: bool, titles: Sequence[str], sender_name: str) -> str:
    """A short French body; the documents themselves travel only in the XDM attachment."""
    count = len(titles)
    what = "un document" if count == 1 else f"{count} documents"
    if to_patient:
        return (f"Bonjour,\n\nVotre professionnel de santé vous adresse {what} dans votre messagerie "
                "Mon espace santé.\n\nCordialement,\n" + (sender_name or "Votre professionnel de santé") + "\n")
    listing = "".join(f"- {t}\n" for t in titles)
    return (f"Bonjour,\n\nVeuillez trouver ci-joint {what} au format CDA (paquet IHE XDM) :\n{listing}\n"
            "Cordialement,\n" + (sender_name or "") + "\n")


def build_message(m: MssMessage) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _clean(m.sender)
    msg["To"] = _clean(m.recipient)
    msg["Date"] = format_datetime(m.date)
    msg["Message-ID"] = _clean(m.message_id)
    msg["Subject"] = _clean(m.subject)
    if m.reply_to:
        msg["Reply-To"] = _clean(m.reply_to)
    if not _clean(m.product_reference):
        raise ValueError("X-MSS-NIL (product reference) is required on every message")
    msg["X-MSS-NIL"] = _clean(m.product_reference)
    if m.xdm:  # both headers describe the XDM: absent without one
        for code in m.cda_codes:
            msg["X-MSS-CODECDA"] = code.header()
        msg["X-MSS-INS"] = "O" if m.qualified_ins else "N"
    if m.no_reply:
        msg["X-MSS-MES"] = "FIN"
    if m.read_receipt:
        msg["Disposition-Notification-To"] = _clean(m.sender)
    msg.set_content(m.body, charset="utf-8")
    if m.xdm:
        msg.add_attachment(m.xdm, maintype="application", subtype="zip", filename=XDM_FILENAME)
    return msg


def to_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=_POLICY)
