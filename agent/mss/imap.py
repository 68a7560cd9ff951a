"""IMAP over TLS to the sender's MSSanté mailbox (the only imaplib user), run in a worker thread.

Implicit TLS (993) or STARTTLS on 143 (the operators' API LPS autoconfiguration, EX_LPS_0300, publishes
``_imap._tcp`` on 143): with STARTTLS nothing, not even the capability list, is trusted before TLS, and a server
that does not offer it is refused. Never authenticates in clear.

Two uses: read new acknowledgements (DSN, MDN) from the INBOX, and reconcile an uncertain submission by its
Message-ID (the operator's copy in the Sent folder, or a report that quotes it). Authentication: LOGIN with the
mailbox's credentials, SASL EXTERNAL with the TLS client certificate, or SASL OAUTHBEARER with the professional's
Pro Santé Connect token (personal mailbox, ``agent/mss/oauthbearer.py``). Read-only except for what it reads:
messages are fetched with BODY.PEEK so the doctor's own client still sees them unread.
"""

from __future__ import annotations

import base64
import imaplib
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.errors import PermanentRemoteError, ServiceUnreachable, TransientRemoteError
from agent.frames import FrameTap, ImapDialog
from agent.mss import oauthbearer
from agent.mss.acks import MAX_REPORT_BYTES

SERVICE = "mss"
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_MSGID = re.compile(r"^<[\x21-\x7e]{3,250}>$")


def imap_utf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3): "Envoyés" -> "Envoy&AOk-s"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapSettings:
    host: str
    port: int
    context: Callable[[], ssl.SSLContext]
    security: str = "tls"  # "tls" (implicit, 993) or "starttls" (143)
    username: str = ""  # LOGIN; with a client certificate: the mailbox address for AUTHENTICATE EXTERNAL
    password: str = field(default="", repr=False)
    # Personal mailbox: the PSC access token of this session (set just before it); ``username`` is the mailbox.
    oauth_token: str = field(default="", repr=False)
    timeout: float = 60.0
    inbox: str = "INBOX"
    sent: str = "Sent"
    max_fetch: int = 200
    # The homologation journal, when the composition root sets it: each authenticated session is one exchange.
    frames: FrameTap | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Fetched:
    uidvalidity: int
    last_uid: int
    messages: list[tuple[int, bytes]]


class ImapMailbox:
    """One IMAP session (a context manager); each method is blocking."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self._client: imaplib.IMAP4 | None = None
        self._dialog: ImapDialog | None = None

    def _connect(self) -> imaplib.IMAP4:
        s = self.settings
        if s.security != "starttls":
            return imaplib.IMAP4_SSL(s.host, s.port, ssl_context=s.context(), timeout=s.timeout)
        client = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
        try:
            client.starttls(ssl_context=s.context())  # imaplib refuses when STARTTLS is not offered
        except ssl.SSLError:
            client.shutdown()
            raise
        except imaplib.IMAP4.error as exc:
            client.shutdown()
            raise PermanentRemoteError("La boîte MSSanté ne propose pas STARTTLS : connexion refusée sans "
                                       "chiffrement.", service=SERVICE, code="mss_tls_unavailable") from exc
        return client

    def __enter__(self) -> ImapMailbox:
        s = self.settings
        try:
            client = self._connect()
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise ServiceUnreachable("Boîte MSSanté injoignable (IMAP).", service=SERVICE) from exc
        except ssl.SSLError as exc:
            raise PermanentRemoteError(f"Connexion TLS à la boîte MSSanté refusée : {exc.reason or exc}",
                                       service=SERVICE, code="mss_tls_refused") from exc
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ServiceUnreachable("Boîte MSSanté injoignable (IMAP).", service=SERVICE) from exc
        if s.oauth_token:
            self._oauthbearer(client)
            self._opened(client)
            return self
        try:
            if s.password:
                client.login(s.username, s.password)
            else:
                identity = s.username.encode()
                client.authenticate("EXTERNAL", lambda _challenge: identity)
        except imaplib.IMAP4.error as exc:
            client.shutdown()
            raise PermanentRemoteError("Authentification à la boîte MSSanté refusée (IMAP).", service=SERVICE,
                                       code="mss_auth_refused") from exc
        except OSError as exc:
            raise TransientRemoteError("Connexion IMAP interrompue.", service=SERVICE) from exc
        self._opened(client)
        return self

    def _opened(self, client: imaplib.IMAP4) -> None:
        # Frames from here on: after authentication, so that no password or token is ever kept.
        self._dialog = ImapDialog(self.settings.frames, client)
        self._client = client

    def _oauthbearer(self, client: imaplib.IMAP4) -> None:
        """``AUTHENTICATE OAUTHBEARER`` with the PSC token; NO: the professional must connect again (the caller
        waits for them, ``Unavailable``)."""
        s = self.settings
        exchange = oauthbearer.Exchange(s.username, s.host, s.port, s.oauth_token)
        try:
            client.authenticate(oauthbearer.MECHANISM, exchange.imap)
        except imaplib.IMAP4.error as exc:
            client.shutdown()
            raise oauthbearer.token_refused() from exc
        except OSError as exc:
            raise TransientRemoteError("Connexion IMAP interrompue.", service=SERVICE) from exc

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            try:
                self._client.logout()
            except (OSError, imaplib.IMAP4.error):
                self._client.shutdown()
            self._client = None
        if self._dialog is not None:
            self._dialog.done()
            self._dialog = None

    @property
    def client(self) -> imaplib.IMAP4:
        assert self._client is not None, "use ImapMailbox as a context manager"
        return self._client

    def _ok(self, typ: str, data: object, what: str) -> None:
        if typ != "OK":
            raise TransientRemoteError(f"Réponse IMAP inattendue ({what}).", service=SERVICE, code="mss_imap")

    def _select(self, mailbox: str) -> int:
        try:
            typ, _ = self.client.select(imap_utf7(mailbox), readonly=True)
        except imaplib.IMAP4.error:
            typ = "NO"
        if typ != "OK":
            # A wrong folder name would make every reconciliation fail the same way: say which key to fix.
            key = "mss.sent_folder" if mailbox == self.settings.sent else "la boîte de réception"
            raise PermanentRemoteError(f"Dossier IMAP « {mailbox} » introuvable sur la boîte MSSanté ({key}).",
                                       service=SERVICE, code="mss_folder_missing")
        for line in self.client.untagged_responses.get("OK", []):
            if isinstance(line, bytes):
                match = _UIDVALIDITY.search(line)
                if match:
                    return int(match.group(1))
        return 0

    def fetch_new(self, after_uid: int, uidvalidity: int) -> Fetched:
        """INBOX messages with a UID above ``after_uid`` (all of them when the UIDVALIDITY changed)."""
        validity = self._select(self.settings.inbox)
        start = after_uid + 1 if validity == uidvalidity else 1
        typ, data = self.client.uid("SEARCH", f"UID {start}:*")
        self._ok(typ, data, "SEARCH")
        uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) >= start)[: self.settings.max_fetch]
        if not uids:
            return Fetched(validity, after_uid if validity == uidvalidity else 0, [])
        # Only reports are downloaded: a colleague's mail in the same mailbox (health data) never reaches us;
        # nor a mail larger than any report (it would be refused unread, see acks.MAX_REPORT_BYTES).
        typ, data = self.client.uid("SEARCH", f"UID {uids[0]}:{uids[-1]}", "HEADER", "Content-Type", '"report"',
                                    "NOT", "LARGER", str(MAX_REPORT_BYTES))
        self._ok(typ, data, "SEARCH reports")
        reports = {int(u) for u in (data[0] or b"").split()}
        messages: list[tuple[int, bytes]] = []
        for uid in (u for u in uids if u in reports):
            typ, parts = self.client.uid("FETCH", str(uid), "(BODY.PEEK[])")
            self._ok(typ, parts, "FETCH")
            for part in parts:
                if isinstance(part, tuple) and len(part) == 2 and isinstance(part[1], bytes):
                    messages.append((uid, part[1]))
        return Fetched(validity, max(uids), messages)

    def holds_message_id(self, message_id: str) -> bool:
        """Whether the operator holds our message: its copy in the Sent folder, or a report quoting it."""
        if not _MSGID.match(message_id) or '"' in message_id or "\\" in message_id:
            raise ValueError("unexpected Message-ID shape")
        self._select(self.settings.sent)
        typ, data = self.client.search(None, "HEADER", "Message-ID", f'"{message_id}"')
        self._ok(typ, data, "SEARCH Sent")
        if (data[0] or b"").split():
            return True
        self._select(self.settings.inbox)
        typ, data = self.client.search(None, "BODY", f'"{message_id}"')
        self._ok(typ, data, "SEARCH INBOX")
        return bool((data[0] or b"").split())

    def noop(self) -> None:
        typ, data = self.client.noop()
        self._ok(typ, data, "NOOP")
