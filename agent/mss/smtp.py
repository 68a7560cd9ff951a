"""SMTP submission to the MSSanté operator over TLS (the only smtplib user), run in a worker thread.

Authentication per configuration: a TLS client certificate (applicative mailbox of the practice software),
SASL (PLAIN/LOGIN) with the mailbox's credentials, or SASL OAUTHBEARER with the professional's Pro Santé Connect
token (personal mailbox, ``agent/mss/oauthbearer.py``), always inside TLS (implicit TLS, or STARTTLS required).

Errors say what the queue must do:
- ``ServiceUnreachable``: no connection at all (nothing left): wait for the network;
- ``TransientRemoteError`` code ``mss_temporary``: a 4xx answer before DATA completed (nothing accepted);
- ``TransientRemoteError`` code ``mss_outcome_unknown``: the connection broke or timed out after the message
  was transmitted and before the server's answer: it may have been accepted; the queue must reconcile by
  Message-ID before any resend (invariant 3);
- ``PermanentRemoteError``: 5xx (recipient unknown, refused), authentication or certificate refused.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.errors import PermanentRemoteError, ServiceUnreachable, TransientRemoteError
from agent.frames import FrameTap, SmtpDialog
from agent.logs import get_logger
from agent.mss import oauthbearer

log = get_logger("mss")
SERVICE = "mss"


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    host: str
    port: int
    security: str = "tls"  # "tls" (implicit, port 465) or "starttls" (port 587)
    context: Callable[[], ssl.SSLContext]  # with the client certificate loaded when auth is by certificate
    username: str = ""  # SASL identity; empty: the TLS client certificate authenticates
    password: str = field(default="", repr=False)
    # Personal mailbox (``[mss] auth = "psc"``): the PSC access token of this attempt, set just before it, and
    # the mailbox it opens (the SASL authorization identity). Empty: no OAUTHBEARER.
    oauth_token: str = field(default="", repr=False)
    oauth_user: str = ""
    timeout: float = 60.0
    local_hostname: str = "relais.localdomain"
    frames: FrameTap | None = None  # the homologation journal, when build() sets it


def _xtext(value: str) -> str:
    """RFC 3461 xtext for ENVID/ORCPT: '+', '=' and non-printables as +HH."""
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else f"+{ord(c):02X}" for c in value)


def _smtp_error(code: int, message: bytes | str, what: str) -> Exception:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    if 400 <= code < 500:
        return TransientRemoteError(f"Refus temporaire de l'opérateur MSSanté ({what}, {code}) : {text[:200]}",
                                    service=SERVICE, code="mss_temporary")
    return PermanentRemoteError(f"Refus de l'opérateur MSSanté ({what}, {code}) : {text[:200]}",
                                service=SERVICE, code="mss_refused")


def _open(settings: SmtpSettings) -> smtplib.SMTP:
    context = settings.context()
    try:
        if settings.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                                    context=context, local_hostname=settings.local_hostname)
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout,
                                  local_hostname=settings.local_hostname)
            client.ehlo()
            if not client.has_extn("starttls"):
                client.close()
                raise PermanentRemoteError("Le serveur MSSanté ne propose pas STARTTLS : envoi refusé sans "
                                           "chiffrement.", service=SERVICE, code="mss_tls_unavailable")
            client.starttls(context=context)
        client.ehlo()
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:  # the server dropped the connection
        raise ServiceUnreachable("Opérateur MSSanté injoignable.", service=SERVICE, maybe_delivered=False) from exc
    except ssl.SSLError as exc:  # certificate refused on either side: retrying cannot help
        raise PermanentRemoteError(f"Connexion TLS à l'opérateur MSSanté refusée : {exc.reason or exc}",
                                   service=SERVICE, code="mss_tls_refused") from exc
    except smtplib.SMTPConnectError as exc:  # it answered, but not "220 ready" (busy, or garbage)
        raise TransientRemoteError("L'opérateur MSSanté n'accepte pas de connexion pour l'instant.",
                                   service=SERVICE, code="mss_temporary") from exc
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise ServiceUnreachable("Opérateur MSSanté injoignable.", service=SERVICE, maybe_delivered=False) from exc
    if settings.oauth_token:
        _oauthbearer(client, settings)
    elif settings.username:
        try:
            client.login(settings.username, settings.password)
        except smtplib.SMTPAuthenticationError as exc:
            client.close()
            raise PermanentRemoteError("Identifiants MSSanté refusés par l'opérateur.", service=SERVICE,
                                       code="mss_auth_refused") from exc
        except smtplib.SMTPNotSupportedError as exc:
            client.close()
            raise PermanentRemoteError("Le serveur MSSanté ne propose pas d'authentification SASL.",
                                       service=SERVICE, code="mss_auth_refused") from exc
    return client


def _oauthbearer(client: smtplib.SMTP, settings: SmtpSettings) -> None:
    """``AUTH OAUTHBEARER`` with the PSC token (RFC 7628); a refusal (535) means the professional must connect
    again: nothing was sent, the delivery waits (``Unavailable``), it is not called failed."""
    exchange = oauthbearer.Exchange(settings.oauth_user, settings.host, settings.port, settings.oauth_token)
    try:
        if not client.has_extn("auth") or oauthbearer.MECHANISM not in client.esmtp_features.get("auth", "").split():
            raise PermanentRemoteError("Le serveur MSSanté ne propose pas l'authentification Pro Santé Connect "
                                       "(SASL OAUTHBEARER) : vérifiez mss.auth et le serveur configuré.",
                                       service=SERVICE, code="mss_auth_refused")
        client.auth(oauthbearer.MECHANISM, exchange, initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as exc:
        client.close()
        log.warning("MSSanté : jeton Pro Santé Connect refusé par l'opérateur (SMTP %s)", exc.smtp_code)
        if exc.smtp_code in (535, 534, 530):  # RFC 4954: credentials invalid / too weak / required
            raise oauthbearer.token_refused() from exc
        raise PermanentRemoteError(f"L'opérateur MSSanté refuse l'authentification Pro Santé Connect (code "
                                   f"{exc.smtp_code}).", service=SERVICE, code="mss_auth_refused") from exc
    except PermanentRemoteError:
        client.close()
        raise
    except (OSError, smtplib.SMTPException) as exc:
        client.close()
        raise TransientRemoteError("Connexion à l'opérateur MSSanté interrompue pendant l'authentification.",
                                   service=SERVICE, code="mss_temporary") from exc


def submit_blocking(settings: SmtpSettings, sender: str, recipients: Sequence[str], data: bytes,
                    message_id: str) -> None:
    """Submit one message. Blocking: call through ``submit`` (a thread)."""
    client = _open(settings)
    dialog = SmtpDialog(settings.frames, client)  # after authentication: no credential is kept
    phase = "enveloppe"
    try:
        dsn = client.has_extn("dsn")
        mail_options = ["RET=HDRS", f"ENVID={_xtext(message_id.strip('<>'))}"] if dsn else []
        code, reply = client.mail(sender, mail_options)
        if code != 250:
            raise _smtp_error(code, reply, "expéditeur")
        for rcpt in recipients:
            rcpt_options = ["NOTIFY=SUCCESS,FAILURE,DELAY", f"ORCPT=rfc822;{_xtext(rcpt)}"] if dsn else []
            code, reply = client.rcpt(rcpt, rcpt_options)
            if code not in (250, 251):
                raise _smtp_error(code, reply, "destinataire")
        phase = "data"
        try:
            client.data(data)
        except smtplib.SMTPDataError as exc:
            if exc.smtp_code == -1:  # smtplib's "no answer" marker
                raise
            raise _smtp_error(exc.smtp_code, exc.smtp_error, "message") from exc
    except (TransientRemoteError, PermanentRemoteError):
        raise
    except smtplib.SMTPResponseException as exc:
        raise _smtp_error(exc.smtp_code, exc.smtp_error, phase) from exc
    except (OSError, smtplib.SMTPException) as exc:
        if phase == "data":
            raise TransientRemoteError(
                "L'opérateur MSSanté n'a pas confirmé la réception du message : l'envoi sera vérifié "
                "(par son identifiant) avant tout nouvel essai.", service=SERVICE, code="mss_outcome_unknown",
            ) from exc
        raise TransientRemoteError("Connexion à l'opérateur MSSanté interrompue avant l'envoi.",
                                   service=SERVICE, code="mss_temporary") from exc
    finally:
        dialog.done()
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def check_blocking(settings: SmtpSettings) -> None:
    """Connect, authenticate, say goodbye: the connectivity probe when no IMAP access is configured."""
    client = _open(settings)
    try:
        client.noop()
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


async def submit(settings: SmtpSettings, sender: str, recipients: Sequence[str], data: bytes,
                 message_id: str) -> None:
    await asyncio.to_thread(submit_blocking, settings, sender, recipients, data, message_id)
