"""The MSSanté operator simulator: SMTP submission (aiosmtpd) and IMAP4rev1 (a small asyncio server), both over
implicit TLS on loopback, with the sandbox PKI.

What it does, like an operator would:
- accepts a submission from an authenticated client (TLS client certificate, or SASL with the sandbox
  password), keeps every accepted message (``GET /_sandbox/mss/messages``) and a copy in the sender's ``Sent``
  folder, and delivers it to each recipient's INBOX;
- answers with reports in the sender's INBOX: a DSN per recipient (``delivered``; ``failed`` 5.1.1 for an
  address whose local part starts with ``inconnu``), and an MDN ``displayed`` when the message asks for one
  (the simulated recipient reads at once);
- keeps everything on disk under its state folder, so a restart (or another process) sees the same mailboxes;
- obeys the frame's fault modes: ``down`` drops connections, ``error500`` answers 451 (temporary),
  ``malformed`` answers garbage, ``slow`` delays, ``timeout`` stores the message then withholds the answer to
  DATA (the ambiguous failure the queue must reconcile by Message-ID).

Personal mailboxes (when built with the simulated Pro Santé Connect, as the demo does): each test professional
of ``relais_sandbox/psc.py`` has one (``alice.demo@demo.mssante.fr``), opened with SASL OAUTHBEARER (RFC 7628) over
SMTP and IMAP with a PSC access token that provider issued and still holds active (its signing key and its grants,
as introspection would say), for that mailbox's owner only. A foreign, forged, expired or revoked token gets the
RFC 7628 error challenge then ``535 5.7.8`` (SMTP) or ``NO [AUTHENTICATIONFAILED]`` (IMAP); a sender other than
the token's mailbox gets ``553 5.7.1``. What the real operators require of this exchange is not public
(agent/mss/oauthbearer.py says what the agent assumes): this plays the standard.

The IMAP subset: CAPABILITY, LOGIN, AUTHENTICATE EXTERNAL (and OAUTHBEARER), SELECT/EXAMINE, SEARCH and UID
SEARCH (ALL, UID set, HEADER, BODY), FETCH and UID FETCH (UID, RFC822.SIZE, BODY[]/BODY.PEEK[]/RFC822), NOOP, LOGOUT.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime as dt
import json
import os
import re
import ssl
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from agent.api.spec import RouteTable, json_response
from agent.domain.catalogue import CSE_MSS_ADDRESS
from agent.errors import InvalidInput
from agent.logs import get_logger
from agent.mss.acks import build_dsn, build_mdn
from agent.mss.xdm import read_xdm
from relais_sandbox.host import FaultMode, FaultState, SandboxContext
from relais_sandbox.psc import TEST_USERS, PscSimulator, TestProfessional

log = get_logger("sandbox.mss")
SANDBOX_PASSWORD = "sandbox-mss"  # noqa: S105 - the SASL password the simulator accepts (demo and tests only)
DEMO_SENDER = "cabinet.relais@demo.mssante.fr"
REPORTING_MTA = "mss.sandbox.invalid"
AUTH_LINE_LIMIT = 12288  # RFC 4954 §4: an AUTH line with its initial response (a PSC JWT is over 512 octets)
OAUTH_ERROR = json.dumps({"status": "invalid_token", "schemes": "bearer", "scope": "openid"})


def personal_mailbox(user: TestProfessional) -> str:
    return f"{user.given_name}.{user.family_name}@demo.mssante.fr".lower()


def oauthbearer_fields(message: bytes) -> tuple[str, str]:
    """(authorization identity, bearer token) of an RFC 7628 client message; ("", "") when malformed."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        return "", ""
    gs2, _, rest = text.partition("\x01")
    parts = gs2.split(",")
    if len(parts) < 3 or parts[0] not in ("n", "y"):
        return "", ""
    user = parts[1][2:].replace("=2C", ",").replace("=3D", "=") if parts[1].startswith("a=") else ""
    pairs = dict(kv.partition("=")[::2] for kv in rest.split("\x01") if kv)
    scheme, _, token = pairs.get("auth", "").partition(" ")
    return user, token.strip() if scheme.lower() == "bearer" else ""


@dataclass(frozen=True, slots=True)
class PscLogin:
    """A personal mailbox opened with a PSC token (the session's auth data)."""

    mailbox: str
    rpps: str


class MailStore:
    """Mailboxes on disk: ``<dir>/boxes/<address>/<mailbox>/<uid>.eml`` and the log of accepted messages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "accepted").mkdir(parents=True, exist_ok=True)
        (root / "boxes").mkdir(parents=True, exist_ok=True)
        validity = root / "uidvalidity"
        if not validity.exists():
            _write(validity, str(int(dt.datetime.now(dt.UTC).timestamp())).encode())
        self.uidvalidity = int(validity.read_text())

    def _box(self, address: str, mailbox: str) -> Path:
        safe = re.sub(r"[^a-z0-9@._+\-]", "_", address.lower())
        box = self.root / "boxes" / safe / ("INBOX" if mailbox.upper() == "INBOX" else re.sub(r"\W", "_", mailbox))
        box.mkdir(parents=True, exist_ok=True)
        return box

    def append(self, address: str, mailbox: str, data: bytes) -> int:
        box = self._box(address, mailbox)
        uid = max((int(p.stem) for p in box.glob("*.eml")), default=0) + 1
        _write(box / f"{uid}.eml", data)
        return uid

    def messages(self, address: str, mailbox: str) -> list[tuple[int, bytes]]:
        box = self._box(address, mailbox)
        return sorted((int(p.stem), p.read_bytes()) for p in box.glob("*.eml"))

    def record_accepted(self, mail_from: str, rcpt_tos: list[str], data: bytes, received_at: str) -> None:
        seq = len(list((self.root / "accepted").glob("*.json"))) + 1
        entry = {"seq": seq, "received_at": received_at, "mail_from": mail_from, "rcpt_tos": rcpt_tos,
                 "raw_base64": base64.b64encode(data).decode()}
        _write(self.root / "accepted" / f"{seq:08d}.json", json.dumps(entry).encode())

    def accepted(self) -> list[dict[str, Any]]:
        items = [json.loads(p.read_text()) for p in sorted((self.root / "accepted").glob("*.json"))]
        for item in items:
            msg = message_from_bytes(base64.b64decode(item["raw_base64"]), policy=policy.default)
            item["message_id"] = str(msg.get("Message-ID", "")).strip()
        return items


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


# --- SMTP ---------------------------------------------------------------------------------------------------


class _Handler:
    def __init__(self, sim: MssSimulator) -> None:
        self.sim = sim

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        mode = self.sim.faults.mode
        if mode is FaultMode.ERROR500:
            return "451 4.3.0 Temporary server error (sandbox fault)"
        if mode is FaultMode.SLOW:
            await asyncio.sleep(self.sim.faults.slow_seconds)
        cert = server.transport.get_extra_info("peercert") if server.transport else None
        if not cert and not session.authenticated:
            return "530 5.7.0 Authentication required"
        login = session.auth_data
        if isinstance(login, PscLogin) and address.strip("<>").lower() != login.mailbox:
            return "553 5.7.1 Sender address not owned by the authenticated user"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode()
        await self.sim.accept(str(envelope.mail_from or ""), [str(r) for r in envelope.rcpt_tos], data)
        if self.sim.faults.mode is FaultMode.TIMEOUT:
            await asyncio.sleep(self.sim.faults.timeout_seconds)
        return "250 2.0.0 Message accepted"


class _SimSmtp(SMTP):
    """Implicit TLS (``starttls`` None: the socket is already TLS), or plain TCP that requires STARTTLS."""

    line_length_limit = AUTH_LINE_LIMIT  # the stream's limit, read at construction

    def __init__(self, sim: MssSimulator, starttls: ssl.SSLContext | None = None) -> None:
        self.sim = sim
        exclude = [] if sim.psc is not None else ["OAUTHBEARER"]  # personal mailboxes only with PSC
        if starttls is None:
            super().__init__(_Handler(sim), hostname="mss.sandbox", authenticator=sim.authenticate,
                             auth_require_tls=False, decode_data=False, enable_SMTPUTF8=False,
                             auth_exclude_mechanism=exclude)
        else:
            super().__init__(_Handler(sim), hostname="mss.sandbox", authenticator=sim.authenticate,
                             tls_context=starttls, require_starttls=True, decode_data=False,
                             enable_SMTPUTF8=False, auth_exclude_mechanism=exclude)
        # Per command; this session's own table (aiosmtpd's is shared by the class): AUTH may carry a PSC JWT.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit,
                                                           {"AUTH": AUTH_LINE_LIMIT})

    async def auth_OAUTHBEARER(self, _: SMTP, args: list[str]) -> AuthResult:
        """RFC 7628 over SMTP: the initial response (or after an empty 334), checked against the simulated PSC;
        a refusal sends the error challenge, reads the client's ^A, then 535 5.7.8."""
        if len(args) > 1:
            try:
                message = base64.b64decode(args[1], validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            answer = await self.challenge_auth("")
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            message = answer
        login = self.sim.psc_login(message)
        if login is None:
            answer = await self.challenge_auth(OAUTH_ERROR)
            return AuthResult(success=False, handled=not isinstance(answer, bytes))
        return AuthResult(success=True, auth_data=login)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.sim.faults.mode is FaultMode.DOWN:
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return
        if self.sim.faults.mode is FaultMode.MALFORMED:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"\x00garbage\r\n")
            transport.close()
            return
        super().connection_made(transport)
        self.sim.connections.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sim.connections.discard(self)
        if self.session is None:  # refused in connection_made (fault mode): nothing was started
            return
        super().connection_lost(error)

    def abort(self) -> None:
        """Drop the session now (the simulator stops): a DATA answer withheld by a fault must not wait."""
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        if isinstance(self.transport, asyncio.Transport):
            self.transport.abort()


# --- IMAP ---------------------------------------------------------------------------------------------------

_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\S+)')


def _tokens(line: bytes) -> list[str]:
    out: list[str] = []
    for quoted, atom in _TOKEN.findall(line):
        out.append((quoted.replace(b'\\"', b'"').replace(b"\\\\", b"\\") if quoted else atom).decode("utf-8",
                                                                                                   "replace"))
    return out


def _in_set(value: int, spec: str, largest: int) -> bool:
    for part in spec.split(","):
        if ":" in part:
            a, b = part.split(":", 1)
            lo, hi = (largest if a == "*" else int(a)), (largest if b == "*" else int(b))
            if min(lo, hi) <= value <= max(lo, hi):
                return True
        elif (largest if part == "*" else int(part)) == value:
            return True
    return False


def _header_matches(data: bytes, name: str, needle: str) -> bool:
    # The top-level headers only, as an IMAP server reads them: a hostile body (deep nesting) is never parsed.
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(data)
    return any(needle.lower() in str(v).lower() for v in msg.get_all(name, []))


class _ImapSession:
    def __init__(self, sim: MssSimulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.user = ""
        self.mailbox = ""

    async def send(self, line: str | bytes) -> None:
        self.writer.write((line.encode() if isinstance(line, str) else line) + b"\r\n")
        await self.writer.drain()

    async def run(self) -> None:
        await self.send(f"* OK [CAPABILITY {self.sim.imap_capabilities}] Relais sandbox IMAP")
        while True:
            line = await self.reader.readline()
            if not line:
                return
            words = _tokens(line.rstrip(b"\r\n"))
            if len(words) < 2:
                await self.send("* BAD empty command")
                continue
            tag, command, args = words[0], words[1].upper(), words[2:]
            uid = False
            if command == "UID" and args:
                uid, command, args = True, args[0].upper(), args[1:]
            if not await self.dispatch(tag, command, args, uid):
                return

    async def dispatch(self, tag: str, command: str, args: list[str], uid: bool) -> bool:
        if command == "LOGOUT":
            await self.send("* BYE bye")
            await self.send(f"{tag} OK LOGOUT")
            return False
        if command == "CAPABILITY":
            await self.send(f"* CAPABILITY {self.sim.imap_capabilities}")
        elif command == "NOOP":
            pass
        elif command == "LOGIN":
            if len(args) != 2 or args[1] != SANDBOX_PASSWORD:
                await self.send(f"{tag} NO [AUTHENTICATIONFAILED] credentials refused")
                return True
            self.user = args[0].lower()
        elif command == "AUTHENTICATE" and args[:1] == ["EXTERNAL"]:
            await self.send("+ ")
            answer = (await self.reader.readline()).strip()
            cert = self.writer.get_extra_info("peercert")
            identity = base64.b64decode(answer).decode() if answer not in (b"", b"=") else ""
            if not cert or not identity:
                await self.send(f"{tag} NO [AUTHENTICATIONFAILED] client certificate required")
                return True
            self.user = identity.lower()
        elif command == "AUTHENTICATE" and args[:1] == ["OAUTHBEARER"] and self.sim.psc is not None:
            await self.send("+ ")
            try:
                message = base64.b64decode((await self.reader.readline()).strip(), validate=True)
            except ValueError:
                message = b""
            login = self.sim.psc_login(message)
            if login is None:
                await self.send("+ " + base64.b64encode(OAUTH_ERROR.encode()).decode())
                await self.reader.readline()  # the client's ^A (or "*")
                await self.send(f"{tag} NO [AUTHENTICATIONFAILED] invalid token")
                return True
            self.user = login.mailbox
        elif not self.user:
            await self.send(f"{tag} NO authentication required")
            return True
        elif command in ("SELECT", "EXAMINE") and args and args[0].upper() != "INBOX" and args[0] != "Sent":
            self.mailbox = ""
            await self.send(f"{tag} NO [NONEXISTENT] no such mailbox")
            return True
        elif command in ("SELECT", "EXAMINE") and args:
            self.mailbox = args[0]
            messages = self.sim.store.messages(self.user, self.mailbox)
            await self.send(f"* {len(messages)} EXISTS")
            await self.send("* 0 RECENT")
            await self.send("* FLAGS (\\Seen)")
            await self.send(f"* OK [UIDVALIDITY {self.sim.store.uidvalidity}] UIDs valid")
            await self.send(f"* OK [UIDNEXT {max((u for u, _ in messages), default=0) + 1}] next UID")
            await self.send(f"{tag} OK [READ-ONLY] {command} done")
            return True
        elif command == "SEARCH" and self.mailbox:
            await self.search(args, uid)
        elif command == "FETCH" and self.mailbox and len(args) >= 2:
            await self.fetch(args[0], " ".join(args[1:]).upper(), uid)
        else:
            await self.send(f"{tag} BAD unsupported command")
            return True
        await self.send(f"{tag} OK {command} done")
        return True

    async def search(self, args: list[str], uid: bool) -> None:
        messages = self.sim.store.messages(self.user, self.mailbox)
        largest = max((u for u, _ in messages), default=0)
        hits: list[int] = []
        for seq, (number, data) in enumerate(messages, start=1):
            ok, i = True, 0
            while i < len(args):
                key = args[i].upper()
                if key == "ALL":
                    i += 1
                elif key == "UID" and i + 1 < len(args):
                    ok = ok and _in_set(number, args[i + 1], largest)
                    i += 2
                elif key == "HEADER" and i + 2 < len(args):
                    ok = ok and _header_matches(data, args[i + 1], args[i + 2])
                    i += 3
                elif key in ("BODY", "TEXT") and i + 1 < len(args):
                    ok = ok and args[i + 1].encode().lower() in data.lower()
                    i += 2
                else:
                    i += 1
            if ok:
                hits.append(number if uid else seq)
        await self.send("* SEARCH" + "".join(f" {h}" for h in hits))

    async def fetch(self, spec: str, items: str, uid: bool) -> None:
        messages = self.sim.store.messages(self.user, self.mailbox)
        largest = max((u for u, _ in messages), default=0) if uid else len(messages)
        for seq, (number, data) in enumerate(messages, start=1):
            if not _in_set(number if uid else seq, spec, largest):
                continue
            parts = [f"UID {number}"]
            if "RFC822.SIZE" in items:
                parts.append(f"RFC822.SIZE {len(data)}")
            if "BODY" in items.replace("RFC822.SIZE", "") or "RFC822" in items.replace("RFC822.SIZE", ""):
                head = f"* {seq} FETCH ({' '.join(parts)} BODY[] {{{len(data)}}}"
                self.writer.write(head.encode() + b"\r\n" + data + b")\r\n")
                await self.writer.drain()
            else:
                await self.send(f"* {seq} FETCH ({' '.join(parts)})")


def _valid_xdm(msg: Message) -> bool:
    """What the CSE platform checks before integrating a certificate: one readable XDM with a CSE CDA."""
    for part in msg.walk():
        if part.get_content_type() == "application/zip":
            payload = part.get_payload(decode=True)
            try:
                package = read_xdm(payload if isinstance(payload, bytes) else b"")
            except InvalidInput:
                return False
            return any(b"1.2.250.1.213.1.1.1.5." in e.content for e in package.entries)
    return False


# --- the simulator -----------------------------------------------------------------------------------------


class MssSimulator:
    name = "mss"

    def __init__(self, psc: PscSimulator | None = None) -> None:
        self.psc = psc  # the simulated PSC whose tokens open the personal mailboxes (None: none offered)
        self.personal = {personal_mailbox(u): u.rpps for u in TEST_USERS} if psc is not None else {}
        self.psc_logins: list[PscLogin] = []  # every personal mailbox opened (no token kept)
        self.faults = FaultState()
        self.store: MailStore
        self._smtp: asyncio.Server | None = None
        self._submission: asyncio.Server | None = None
        self._imap: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self.connections: set[_SimSmtp] = set()
        self.auto_read = True  # the simulated recipients read at once; POST /_sandbox/mss/read to do it by hand
        self._lock = asyncio.Lock()

    @property
    def imap_capabilities(self) -> str:
        return "IMAP4rev1 AUTH=EXTERNAL" + (" AUTH=OAUTHBEARER" if self.psc is not None else "")

    def psc_login(self, message: bytes) -> PscLogin | None:
        """The personal mailbox an OAUTHBEARER message opens: a token the simulated PSC issued and still holds
        active, for the professional owning the mailbox named (or theirs when none is named); else None."""
        if self.psc is None:
            return None
        user, token = oauthbearer_fields(message)
        grant = self.psc.active_grant(token) if token else None
        if grant is None:
            log.info("MSSanté simulée : jeton Pro Santé Connect refusé")
            return None
        mailbox = user.lower() or next((m for m, r in self.personal.items() if r == grant.user.rpps), "")
        if self.personal.get(mailbox) != grant.user.rpps:
            log.info("MSSanté simulée : jeton d'un autre professionnel que le titulaire de la boîte")
            return None
        login = PscLogin(mailbox, grant.user.rpps)
        self.psc_logins.append(login)
        return login

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == SANDBOX_PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    async def start(self, ctx: SandboxContext) -> dict[str, Any]:
        self.store = MailStore(ctx.state_dir / self.name)
        server = ctx.pki.issue("mss-server", common_name="mss.sandbox", server=True)
        client = ctx.pki.issue("mss-client", common_name=DEMO_SENDER, client=True)
        tls = server.server_context()
        tls.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, or SASL / LOGIN inside TLS
        tls.load_verify_locations(ctx.pki.ca_path)
        loop = asyncio.get_running_loop()
        self._smtp = await loop.create_server(lambda: _SimSmtp(self), ctx.host, 0, ssl=tls)
        self._submission = await loop.create_server(lambda: _SimSmtp(self, starttls=tls), ctx.host, 0)
        self._imap = await asyncio.start_server(self._imap_client, ctx.host, 0, ssl=tls)
        smtp_port = self._smtp.sockets[0].getsockname()[1]
        imap_port = self._imap.sockets[0].getsockname()[1]
        submission_port = self._submission.sockets[0].getsockname()[1]
        return {"smtp": {"host": ctx.host, "port": smtp_port, "security": "tls"},
                "submission": {"host": ctx.host, "port": submission_port, "security": "starttls"},
                "imap": {"host": ctx.host, "port": imap_port},
                "sender": DEMO_SENDER, "client_cert": str(client.cert_path), "client_key": str(client.key_path),
                "ca": str(ctx.pki.ca_path), "password": SANDBOX_PASSWORD,
                # Under PSC: the demo doctor's personal mailbox ([mss] auth = "psc" sends from it).
                "personal_sender": personal_mailbox(TEST_USERS[0]) if self.psc is not None else ""}

    async def stop(self) -> None:
        servers = [s for s in (self._smtp, self._submission, self._imap) if s is not None]
        for server in servers:
            server.close()
        for task in list(self._sessions):
            task.cancel()
        for connection in list(self.connections):
            connection.abort()
        for server in servers:
            await server.wait_closed()
        self._smtp = self._submission = self._imap = None

    async def _imap_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults.mode is FaultMode.DOWN:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)  # type: ignore[arg-type]
        try:
            await _ImapSession(self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ssl.SSLError):
            pass  # a client that hangs up, or sends a line longer than the stream limit
        finally:
            self._sessions.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def accept(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        """Store an accepted message, deliver it, and write the reports, all before the 250 answer."""
        now = dt.datetime.now(dt.UTC)
        async with self._lock:
            await asyncio.to_thread(self._accept_blocking, mail_from, rcpt_tos, data, now)

    def _accept_blocking(self, mail_from: str, rcpt_tos: list[str], data: bytes, now: dt.datetime) -> None:
        self.store.record_accepted(mail_from, rcpt_tos, data, now.isoformat().replace("+00:00", "Z"))
        self.store.append(mail_from, "Sent", data)
        msg = message_from_bytes(data, policy=policy.compat32)
        wants_mdn = bool(msg.get("Disposition-Notification-To"))
        for rcpt in rcpt_tos:
            known = not rcpt.lower().startswith("inconnu")
            status = ""
            if known and rcpt.lower() == CSE_MSS_ADDRESS and not _valid_xdm(msg):
                known, status = False, "5.6.0"  # the CSE platform integrates the XDM: a bad package bounces
            if known:
                self.store.append(rcpt, "INBOX", data)
            self.store.append(mail_from, "INBOX", build_dsn(data, recipient=rcpt, delivered=known, status=status,
                                                             reporting_mta=REPORTING_MTA, date=now))
            if known and wants_mdn and self.auto_read:
                self.store.append(mail_from, "INBOX", build_mdn(data, reader=rcpt, date=now))

    def read(self, message_id: str, disposition: str) -> int:
        """The recipients of an accepted message read (or delete) it: one MDN each when it asked for one."""
        now = dt.datetime.now(dt.UTC)
        sent = 0
        for item in self.store.accepted():
            if item["message_id"] != message_id:
                continue
            data = base64.b64decode(item["raw_base64"])
            if not message_from_bytes(data, policy=policy.compat32).get("Disposition-Notification-To"):
                continue
            for rcpt in item["rcpt_tos"]:
                if not rcpt.lower().startswith("inconnu"):
                    self.store.append(item["mail_from"], "INBOX",
                                      build_mdn(data, reader=rcpt, date=now, disposition=disposition))
                    sent += 1
        return sent

    def control_routes(self, table: RouteTable) -> None:
        async def messages(request: web.Request) -> web.Response:
            items = await asyncio.to_thread(self.store.accepted)
            return web.json_response({"items": items})

        async def read(request: web.Request) -> web.Response:
            from agent.api.guard import read_json

            body = await read_json(request)
            if isinstance(body.get("auto_read"), bool):
                self.auto_read = body["auto_read"]
            count = 0
            if isinstance(body.get("message_id"), str):
                disposition = "deleted" if body.get("disposition") == "deleted" else "displayed"
                async with self._lock:
                    count = await asyncio.to_thread(self.read, body["message_id"], disposition)
            return web.json_response({"auto_read": self.auto_read, "reports": count})

        table.post("/_sandbox/mss/read", read, summary="Le destinataire simulé lit un message (accusé de lecture)",
                   tag="sandbox",
                   request_schema={"type": "object", "properties": {
                       "message_id": {"type": "string"}, "disposition": {"enum": ["displayed", "deleted"]},
                       "auto_read": {"type": "boolean", "description": "read every message at once (default)"}}},
                   responses={200: json_response("Accusés produits")})
        table.get("/_sandbox/mss/messages", messages, summary="Messages acceptés par le simulateur MSSanté",
                  tag="sandbox", responses={200: json_response("Messages (MIME brut en base64)")})
