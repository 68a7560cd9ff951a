"""What the queue needs from a destination's service (the DMP, an MSSanté operator): two calls, nothing more.

The queue never imports a service client; each service implements this protocol next to its client
(``agent.dmp.gateway``, ``agent.mss.gateway``) and the composition root hands them to the queue. Errors are the
project's: ``ServiceUnreachable`` (wait for the network), ``TransientRemoteError``
(retry with backoff; the request may have reached the service), ``PermanentRemoteError`` (failed, with the
French reason), ``DuplicateUniqueId`` (already delivered), ``Unavailable`` (the author's card cannot sign here).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Lookup:
    """Enough to ask the service whether a delivery already reached it (DMP: TD3.1 by uniqueId)."""

    ins: str
    ins_oid: str
    document_unique_id: str
    submission_set_unique_id: str
    # Which delivery this is about; both empty when the queue's connectivity probe asks.
    order_id: str = ""
    destination: str = ""


def sent_by_delegate(sender: dict[str, Any], author_rpps: str) -> bool:
    """Whether the order names a sender other than its author ([CDT] 2.1-900: a secretary, a colleague). Ids are
    compared on their national form ("8" + RPPS and the bare RPPS are one person)."""
    sender_id = str(sender.get("id") or "")
    return bool(sender_id) and sender_id.removeprefix("8")[-11:] != author_rpps.removeprefix("8")[-11:]


def payload_sender(payload: bytes) -> dict[str, Any]:
    """The sender an order's payload names, or {} (the JSON parsed only when there is one)."""
    if b'"sender"' not in payload:
        return {}
    sender = json.loads(payload).get("sender")
    return dict(sender) if isinstance(sender, dict) else {}


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    order_id: str
    destination: str
    author_rpps: str
    lookup: Lookup
    cda: bytes
    patient: dict[str, Any]
    visibility: dict[str, bool]
    mss_message: dict[str, Any] = field(default_factory=dict)  # the order's MSSanté options (body, no-reply)
    cda_header: dict[str, Any] = field(default_factory=dict)  # the header read at creation (CdaHeader.to_json)
    secret: bool = False  # the connexion secrète of a minor (the VIHF says so)
    sender: dict[str, Any] = field(default_factory=dict)  # who sends when not the author ([CDT] 2.1-900)
    replaces: str = ""  # DMP replacement (RPLC): the previous version's uniqueId or entryUUID; empty: a new document

    @classmethod
    def from_payload(cls, order_id: str, destination: str, author_rpps: str, lookup: Lookup,
                     payload: bytes) -> DeliveryJob:
        data = json.loads(payload)
        return cls(order_id, destination, author_rpps, lookup, base64.b64decode(data["cda_base64"]),
                   dict(data.get("patient", {})), dict(data.get("visibility", {})), dict(data.get("mss_message", {})),
                   dict(data.get("cda_header", {})), bool(data.get("secret_connection", False)),
                   dict(data.get("sender") or {}), str(data.get("replaces") or ""))


@dataclass(frozen=True, slots=True)
class Receipt:
    entry_uuid: str | None  # the service's id for what it stored (DMP document entryUUID), when known


class DeliveryGateway(Protocol):
    async def deliver(self, job: DeliveryJob) -> Receipt:
        """Send once. Raises the errors listed in this module's docstring."""
        ...

    async def find(self, lookup: Lookup) -> Receipt | None:
        """Whether the service already holds this delivery (reconciliation before any resend)."""
        ...
