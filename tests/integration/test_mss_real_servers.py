"""The MSSanté client against real mail servers (Debian's Dovecot and Postfix, started per test with their own
configuration): IMAP with implicit TLS and with STARTTLS, login by certificate and by password, reports read
back, reconciliation by Message-ID, and trust limited to the configured authority.

Run under the machine-wide lock: ``flock /tmp/relais-suite.lock .venv/bin/pytest tests/integration/...``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import imaplib
import smtplib
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.clock import FrozenClock
from agent.errors import PermanentRemoteError, ServiceUnreachable, TransientRemoteError
from agent.mss import acks, imap, smtp
from agent.mss.factory import tls_context_factory
from agent.mss.service import MssSender, MssSettings
from relais_sandbox.pki import SandboxPki
from tests.integration.test_mss_transport import outgoing, packager
from tests.support.mailservers import PASSWORD, Dovecot, dovecot, postfix

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
CABINET = "cabinet@relais.test"
DOCTOR = "dr.test@relais.test"


@pytest.fixture
def pki(tmp_path: Path) -> SandboxPki:
    return SandboxPki(tmp_path / "pki")


@pytest.fixture
def cs9(reference_dir: Path) -> bytes:
    return (reference_dir / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()


@pytest.fixture
def server(pki: SandboxPki) -> Iterator[Dovecot]:
    with dovecot(pki, users=(CABINET, DOCTOR)) as running:
        yield running


def original(message_id: str, sender: str) -> bytes:
    return (f"From: {sender}\r\nTo: dr.x@relais.test\r\nMessage-ID: {message_id}\r\nSubject: Document de santé\r\n"
            "X-MSS-NIL: DEV935997\r\nDisposition-Notification-To: " + sender + "\r\n\r\ncorps\r\n").encode()


def lmtp_deliver(server: Dovecot, recipient: str, data: bytes) -> None:
    with smtplib.LMTP("127.0.0.1", server.lmtp_port) as lmtp:
        lmtp.sendmail("MAILER-DAEMON@relais.test", [recipient], data)


def cert_settings(server: Dovecot, **kw: object) -> imap.ImapSettings:
    return imap.ImapSettings(host="localhost", port=server.imaps_port, username=server.cert_user,
                             context=tls_context_factory(server.ca, server.cert, server.key), **kw)  # type: ignore[arg-type]


def test_imap_implicit_tls_certificate_login_reads_reports(server: Dovecot) -> None:
    """Applicative mailbox: SASL EXTERNAL with the TLS client certificate, reports read after the last UID."""
    sent_id = "<ord-1.abc@relais.test>"
    lmtp_deliver(server, CABINET, acks.build_dsn(original(sent_id, CABINET), recipient="dr.x@relais.test",
                                                 delivered=False, reporting_mta="relais.test", date=NOW))
    lmtp_deliver(server, CABINET, b"From: a@relais.test\r\nSubject: CR\r\n\r\nun courrier de confrere\r\n")
    lmtp_deliver(server, CABINET, acks.build_mdn(original(sent_id, CABINET), reader="dr.x@relais.test", date=NOW))
    with imap.ImapMailbox(cert_settings(server)) as box:
        first = box.fetch_new(0, 0)
        again = box.fetch_new(first.last_uid, first.uidvalidity)
    found = [a for _, raw in first.messages for a in acks.parse_ack(raw)]
    assert {(a.kind, a.outcome, a.original_message_id) for a in found} == {
        (acks.AckKind.DSN, acks.AckOutcome.ERROR, sent_id), (acks.AckKind.MDN, acks.AckOutcome.READ, sent_id)}
    assert len(first.messages) == 2 and first.last_uid == 3  # the colleague's mail is never downloaded
    assert again.messages == [] and again.last_uid == 3


def test_imap_starttls_password_login_reconciles_by_message_id(server: Dovecot) -> None:
    """Personal mailbox on 143 with STARTTLS (as the operators' SRV records publish it): the Sent copy is found."""
    message_id = "<ord-2.def@relais.test>"
    context = tls_context_factory(server.ca, "", "")
    settings = imap.ImapSettings(host="localhost", port=server.imap_port, security="starttls", context=context,
                                 username=DOCTOR, password=PASSWORD)
    with imap.ImapMailbox(settings) as box:
        assert not box.holds_message_id(message_id)
        box.client.append("Sent", None, None, original(message_id, DOCTOR))
        assert box.holds_message_id(message_id)
    with pytest.raises(PermanentRemoteError) as wrong, imap.ImapMailbox(replace(settings, password="faux")):
        pass
    assert wrong.value.code == "mss_auth_refused"


def test_imap_plain_port_without_starttls_is_refused(server: Dovecot, pki: SandboxPki) -> None:
    """Implicit TLS expected on the STARTTLS port: the handshake fails, nothing is sent in clear."""
    settings = replace(cert_settings(server), port=server.imap_port)
    with pytest.raises((ServiceUnreachable, PermanentRemoteError)), imap.ImapMailbox(settings):
        pytest.fail("logged in over a connection that never negotiated TLS")


def test_mss1_server_from_another_authority_is_refused(server: Dovecot, tmp_path: Path) -> None:
    """MSS1 / ECO.1.1.10: only the configured authority (IGC-Santé) is trusted, never the system store."""
    other = SandboxPki(tmp_path / "other")
    settings = replace(cert_settings(server), context=tls_context_factory(str(other.ca_path), "", ""))
    with pytest.raises(PermanentRemoteError) as refused, imap.ImapMailbox(settings):
        pass
    assert refused.value.code == "mss_tls_refused"
    with pytest.raises(ssl.SSLError):  # and the plain library agrees: the chain does not verify
        imaplib.IMAP4_SSL("localhost", server.imaps_port, ssl_context=tls_context_factory(
            str(other.ca_path), "", "")()).logout()


async def test_submission_through_postfix_real_dsns_come_back(server: Dovecot, pki: SandboxPki, cs9: bytes) -> None:
    """Postfix submission (STARTTLS, client certificate) delivers by LMTP to Dovecot; the unknown recipient bounces
    with Postfix's own RFC 3464 DSN, read back over IMAP and named by Message-ID."""
    with postfix(pki, server, domain="relais.test") as mta:
        context = tls_context_factory(server.ca, server.cert, server.key)
        settings = MssSettings(
            sender=CABINET, product_reference="DEV935997",
            smtp=smtp.SmtpSettings(host="localhost", port=mta.submission_port, security="starttls", context=context),
            imap=cert_settings(server))
        sender = MssSender(settings, packager(pki), FrozenClock(NOW))
        known = await sender.send(outgoing(cs9, f"mss:{DOCTOR}", order_id="ord-1"))
        unknown = await sender.send(outgoing(cs9, "mss:inconnu@relais.test", order_id="ord-2"))
        found: list[acks.Ack] = []
        uidvalidity, last_uid = 0, 0
        for _ in range(600):  # bounded: until both reports arrived (Postfix's queue runs on its own)
            batch = await sender.read_acks(uidvalidity, last_uid)
            found += batch.acks
            uidvalidity, last_uid = batch.uidvalidity, batch.last_uid
            if {a.original_message_id for a in found if a.kind is acks.AckKind.DSN} >= {known, unknown}:
                break
            await asyncio.sleep(0.1)
        outcomes = {(a.original_message_id, a.outcome, a.status) for a in found if a.kind is acks.AckKind.DSN}
        assert (unknown, acks.AckOutcome.ERROR, "5.1.1") in outcomes, (outcomes, mta.log.read_text()[-3000:])
        assert (known, acks.AckOutcome.DELIVERED, "2.0.0") in outcomes, outcomes
        assert "5.1.1" in acks.failure_reason("5.1.1") and "n'existe pas" in acks.failure_reason("5.1.1")
        delivered = sorted(server.maildir(DOCTOR).glob("new/*"))
        assert len(delivered) == 1
        mail = delivered[0].read_bytes()
        assert b"X-MSS-NIL: DEV935997" in mail and b"X-MSS-INS: O" in mail

        no_cert = replace(settings.smtp, context=tls_context_factory(server.ca, "", ""))
        # Without the client certificate Postfix answers 4.7.1 and drops the session: nothing is accepted.
        with pytest.raises((PermanentRemoteError, TransientRemoteError, ServiceUnreachable)) as refused:
            await smtp.submit(no_cert, CABINET, [DOCTOR], b"Subject: x\r\n\r\nx\r\n", "<x@relais.test>")
        assert getattr(refused.value, "code", "") != "mss_outcome_unknown"  # refused before DATA
        assert len(sorted(server.maildir(DOCTOR).glob("new/*"))) == 1
