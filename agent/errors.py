"""The one error tree of Relais.

Every error the agent raises on purpose is a ``RelaisError``. Each carries a stable English ``code``
(the API's ``urn:relais:error:<code>``) and a French ``message`` written for the doctor. Adapters turn
library errors into these with ``raise X(...) from exc``; the API middleware is the one place that maps
them to problem+json and an HTTP status.

    RelaisError
    ├── ConfigError              bad or unknown configuration key (names the key and the file)
    ├── AgentLockedError         another agent holds this data directory
    ├── InvalidInput             a request or document that cannot be accepted (422, field errors)
    │   └── PayloadTooLarge      a body over its limit (413)
    ├── AuthenticationRequired   no, wrong or revoked token (401)
    │   └── PinRefused           the card refused the PIN (401, code pin_invalid, with tries_left)
    ├── AccessRefused            Host, Origin, fetch metadata or rights refused (403)
    ├── TooManyFailures          repeated authentication failures (429)
    ├── NotFound                 no such resource (404)
    ├── Conflict                 the resource's state forbids the action (409)
    ├── Unavailable              a card or a remote service is absent (503)
    ├── StoreError               the local database failed
    │   └── StorageUnavailable   the disk is full, read-only or failing (507): nothing was written
    └── RemoteError              a national service (DMP, INSi, MSSanté) answered badly
        ├── TransientRemoteError network, 5xx, timeout: try again later
        │   └── ServiceUnreachable no connection at all (refused, reset, no route): wait for the network
        └── PermanentRemoteError the service refused the request: retrying cannot help
            └── DuplicateUniqueId the DMP already holds this uniqueId (an earlier attempt got through)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input field: a JSON-pointer-like path and a French message."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RelaisError(Exception):
    """Base of every error Relais raises on purpose."""

    code = "internal_error"
    title = "Erreur interne de l'agent Relais"

    def __init__(self, message: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        self.message = message or self.title
        if code is not None:
            self.code = code
        # Extra members for the problem document (e.g. tries_left); never patient data.
        self.extra: dict[str, Any] = extra
        super().__init__(self.message)


class ConfigError(RelaisError):
    code = "config_invalid"
    title = "Configuration invalide"

    def __init__(self, message: str, *, key: str = "", path: str = "") -> None:
        self.key = key
        self.path = path
        where = " ".join(part for part in (f"clé « {key} »" if key else "", f"dans {path}" if path else "") if part)
        super().__init__(f"{message} ({where})" if where else message)


class AgentLockedError(RelaisError):
    code = "agent_locked"
    title = "Un autre agent Relais utilise déjà ce dossier de données"


class InvalidInput(RelaisError):
    code = "invalid_input"
    title = "Données invalides"

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        code: str | None = None,
        **extra: Any,
    ) -> None:
        self.errors = list(errors or [])
        super().__init__(message, code=code, **extra)

    @classmethod
    def field(cls, field: str, message: str, *, code: str | None = None) -> InvalidInput:
        return cls(message, errors=[FieldError(field, message)], code=code)


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    title = "Requête trop volumineuse"


class AuthenticationRequired(RelaisError):
    code = "unauthorized"
    title = "Authentification requise"


class PinRefused(AuthenticationRequired):
    """A wrong CPS PIN: ``tries_left`` says how many attempts the card still allows (None when unknown)."""

    code = "pin_invalid"
    title = "Code PIN de la carte CPS incorrect"

    def __init__(self, message: str | None = None, *, tries_left: int | None = None) -> None:
        self.tries_left = tries_left
        super().__init__(message, tries_left=tries_left)


class AccessRefused(RelaisError):
    code = "forbidden"
    title = "Accès refusé"


class TooManyFailures(RelaisError):
    code = "too_many_auth_failures"
    title = "Trop d'échecs d'authentification"

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class NotFound(RelaisError):
    code = "not_found"
    title = "Introuvable"


class Conflict(RelaisError):
    code = "conflict"
    title = "Action impossible dans l'état actuel"


class Unavailable(RelaisError):
    code = "unavailable"
    title = "Service indisponible"


class StoreError(RelaisError):
    code = "store_error"
    title = "Erreur de la base locale de l'agent"


class StorageUnavailable(StoreError):
    """The disk refused the write: full (``disk_full``), read-only (``disk_read_only``) or failing
    (``disk_error``). Nothing of the request was stored; the same request succeeds once space is freed."""

    code = "disk_full"
    title = "Disque de l'agent plein ou inaccessible en écriture"


class RemoteError(RelaisError):
    code = "remote_error"
    title = "Erreur du service distant"

    def __init__(self, message: str | None = None, *, service: str = "", code: str | None = None, **extra: Any):
        self.service = service
        super().__init__(message, code=code, **extra)


class TransientRemoteError(RemoteError):
    """The service could not be reached or failed on its side: the same request may succeed later."""

    code = "remote_unreachable"
    title = "Service distant injoignable"


class ServiceUnreachable(TransientRemoteError):
    """No connection could be made (refused, reset before an answer, no route, DNS): the send-order queue
    waits for the network (``waiting_network``) rather than spending its retry budget.

    ``maybe_delivered`` is the transport's verdict: False only when the request surely never left (the
    connection was refused or never resolved); a connection dropped mid-request may have carried it, and the
    queue then asks the service before any resend."""

    code = "remote_unreachable"
    title = "Service distant injoignable"

    def __init__(self, message: str | None = None, *, service: str = "", code: str | None = None,
                 maybe_delivered: bool = True, **extra: Any) -> None:
        self.maybe_delivered = maybe_delivered
        super().__init__(message, service=service, code=code, **extra)


class PermanentRemoteError(RemoteError):
    """The service understood and refused the request: sending it again cannot succeed."""

    code = "remote_refused"
    title = "Refus du service distant"


class RefusedBeforeSending(PermanentRemoteError):
    """A rule of this agent refused the delivery before anything left (the patient's opposition at sending time):
    the service has nothing of it, so the queue records the failure without asking the service first."""

    code = "refused_before_sending"


class DuplicateUniqueId(PermanentRemoteError):
    """The registry already holds this uniqueId (XDSDuplicateUniqueIdInRegistry): for a submission whose ids
    were fixed at order creation, this means an earlier attempt was delivered."""

    code = "xds_duplicate_unique_id"
    title = "Document déjà enregistré dans le DMP"
