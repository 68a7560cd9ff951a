"""SASL OAUTHBEARER (RFC 7628) with the professional's Pro Santé Connect access token: how a personal MSSanté
mailbox is opened (``[mss] auth = "psc"``), for SMTP submission (``AUTH OAUTHBEARER``) and IMAP
(``AUTHENTICATE OAUTHBEARER``).

What is public: the référentiel MSSanté #2 and the operators' API LPS (as DevBox quotes them: "Authentifications")
say that personal and organisational mailboxes are opened with a Pro Santé Connect token, applicative mailboxes
with an IGC-Santé certificate; the DNS SRV autoconfiguration names a "PSC front". RFC 7628 defines the SASL
exchange: ``n,a=<user>,^Ahost=<host>^Aport=<port>^Aauth=Bearer <token>^A^A``; on a refusal the server sends a
JSON challenge (``{"status":"invalid_token",...}``), the client answers a lone ``^A``, the server ends with its
failure (SMTP ``535 5.7.8``, IMAP ``NO``).
What is ASSUMED (the operators' exact SASL requirements are not public): that the mechanism is OAUTHBEARER rather
than XOAUTH2, that the token is PSC's access token itself (no exchange for an operator token, unlike the DMP), that
the authorization identity is the mailbox address, and that the TLS client certificate is not required on the PSC
front (``mss.client_cert`` is still presented when configured). Each is configuration or one place in this module.

The token is never logged: it lives in the SASL message only, built here and handed to smtplib/imaplib.
"""

from __future__ import annotations

from agent.errors import Unavailable

MECHANISM = "OAUTHBEARER"
SEP = "\x01"


def _saslname(value: str) -> str:
    """RFC 5801 saslname: ',' and '=' escaped."""
    return value.replace("=", "=3D").replace(",", "=2C")


def initial_response(user: str, host: str, port: int, token: str) -> str:
    """The client's first (and, when accepted, only) message."""
    return f"n,a={_saslname(user)},{SEP}host={host}{SEP}port={port}{SEP}auth=Bearer {token}{SEP}{SEP}"


class Exchange:
    """The client side as smtplib and imaplib call it: first the initial response, then (after the server's error
    challenge) the lone ``^A`` that lets the server send its final failure."""

    def __init__(self, user: str, host: str, port: int, token: str) -> None:
        self._first = initial_response(user, host, port, token)
        self.challenged = False  # the server answered with an error challenge: the token was refused

    def __call__(self, challenge: bytes | None = None) -> str:
        if challenge is None:  # smtplib asks for the initial response without a challenge
            return self._first
        if not challenge.strip() and not self.challenged and self._first:  # imaplib: the empty "+ " first
            first, self._first = self._first, ""
            return first
        self.challenged = True
        return SEP

    def imap(self, challenge: bytes) -> bytes:
        """The same for imaplib, which wants bytes."""
        return self(challenge).encode("utf-8")


def session_over() -> Unavailable:
    """No live PSC session for the mailbox's professional: the delivery waits for them, as for a missing card."""
    return Unavailable("En attente du professionnel : sa boîte MSSanté personnelle s'ouvre avec sa connexion Pro "
                       "Santé Connect, qui est terminée. Reconnectez-vous avec e-CPS.", code="psc_session_expired")


def token_refused() -> Unavailable:
    """The operator refused the token (535 / NO): expired, revoked, foreign, or not this mailbox's owner. The
    delivery waits for the professional to connect again; nothing was sent."""
    return Unavailable("En attente du professionnel : l'opérateur MSSanté a refusé son jeton Pro Santé Connect "
                       "(session expirée, révoquée ou boîte d'un autre professionnel). Reconnectez-vous avec e-CPS.",
                       code="mss_psc_refused")
