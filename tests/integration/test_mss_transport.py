"""MSSanté over real sockets: the agent's sender against the sandbox operator (aiosmtpd SMTP and IMAP, TLS with
the sandbox PKI): delivery with the XDM, reports read back, fault modes, reconciliation by Message-ID."""

from __future__ import annotations

import datetime as dt
import itertools
import ssl
from dataclasses import replace
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from agent.clock import FrozenClock
from agent.config import MssSection
from agent.dmp.models import SubmissionRequest, Visibility
from agent.dmp.submission import SubmissionDefaults, build_submission
from agent.domain.catalogue import CSE_MSS_ADDRESS
from agent.errors import PermanentRemoteError, ServiceUnreachable, TransientRemoteError
from agent.mss import acks, smtp, xdm
from agent.mss.factory import settings_from
from agent.mss.service import MssSender, Outgoing
from agent.softkey import SoftwareSigner
from relais_sandbox.host import FaultMode, SandboxContext
from relais_sandbox.mss import MssSimulator
from relais_sandbox.pki import SandboxPki
from tests.support.mail import nested_report

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
INS, OID = "221042545611404", "1.2.250.1.213.1.4.10"
UID = "1.2.250.1.213.1.1.1.5.2.12345.2"


def packager(pki: SandboxPki) -> Any:
    creds = pki.issue("doctor", common_name="Dr Test", client=True)
    signer = SoftwareSigner.from_files(creds.cert_path, creds.key_path)
    counter = itertools.count(1)

    async def package(out: Outgoing) -> tuple[Any, list[xdm.XdmDocument]]:
        req = SubmissionRequest(cda=out.cda, submission_set_unique_id=out.submission_set_unique_id, ins=out.ins,
                                ins_oid=out.ins_oid, document_unique_id=out.document_unique_id,
                                visibility=Visibility(**out.visibility))
        built = build_submission(req, signer, SubmissionDefaults(source_id="1.2.250.1.999"), NOW,
                                 lambda: f"00000000-0000-4000-8000-{next(counter):012d}")
        sig = next(v for v in built.attachments.values() if v != out.cda)
        return built.body[0], [xdm.XdmDocument(out.document_unique_id, out.cda),
                               xdm.XdmDocument(built.signature_unique_id, sig)]

    return package


def outgoing(cda: bytes, destination: str, order_id: str = "ord-1", **visibility: bool) -> Outgoing:
    return Outgoing(order_id=order_id, destination=destination, cda=cda, ins=INS, ins_oid=OID,
                    document_unique_id=UID, submission_set_unique_id="1.2.250.1.999.7", visibility=visibility)


@pytest.fixture
def cs9(reference_dir: Path) -> bytes:
    return (reference_dir / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()


async def test_delivery_reaches_the_operator_and_reports_come_back(operator: Any, cs9: bytes) -> None:
    sim, endpoint, pki = operator
    settings = settings_from(MssSection(), endpoint)
    assert settings is not None
    sender = MssSender(settings, packager(pki), FrozenClock(NOW))

    message_id = await sender.send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))

    accepted = sim.store.accepted()
    assert [a["message_id"] for a in accepted] == [message_id]
    assert accepted[0]["rcpt_tos"] == ["dr.x@medecin.demo.mssante.fr"]
    raw = sim.store.messages("dr.x@medecin.demo.mssante.fr", "INBOX")[0][1]
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg.get_all("X-MSS-CODECDA") == ["CERT_DECL"] and msg["X-MSS-INS"] == "O" and msg["X-MSS-NIL"]
    package = next(msg.iter_attachments()).get_content()
    assert xdm.read_xdm(package).entries[0].content == cs9

    batch = await sender.read_acks(0, 0)
    assert {(a.kind, a.outcome) for a in batch.acks} == {(acks.AckKind.DSN, acks.AckOutcome.DELIVERED),
                                                         (acks.AckKind.MDN, acks.AckOutcome.READ)}
    assert {a.original_message_id for a in batch.acks} == {message_id}
    again = await sender.read_acks(batch.uidvalidity, batch.last_uid)
    assert again.acks == []  # reading resumes after the last UID
    # A colleague's mail in the same INBOX is skipped (never downloaded) and the position moves past it.
    sim.store.append(endpoint["sender"], "INBOX", b"From: a@b.mssante.fr\r\nSubject: CR\r\n\r\nsecret\r\n")
    skipped = await sender.read_acks(batch.uidvalidity, batch.last_uid)
    assert skipped.acks == [] and skipped.last_uid == batch.last_uid + 1
    assert await sender.find("ord-1", "mss:dr.x@medecin.demo.mssante.fr") == message_id
    assert await sender.find("ord-2", "mss:dr.x@medecin.demo.mssante.fr") is None
    assert settings.imap is not None
    misnamed = replace(settings, imap=replace(settings.imap, sent="Envoyés"))
    with pytest.raises(PermanentRemoteError) as folder:
        await MssSender(misnamed, packager(pki), FrozenClock(NOW)).find("ord-1", "mss:dr.x@medecin.demo.mssante.fr")
    assert "mss.sent_folder" in folder.value.message


async def test_a_deeply_nested_report_is_skipped_once_and_never_read_again(operator: Any, cs9: bytes) -> None:
    sim, endpoint, pki = operator
    settings = settings_from(MssSection(), endpoint)
    assert settings is not None
    sender = MssSender(settings, packager(pki), FrozenClock(NOW))
    sim.store.append(endpoint["sender"], "INBOX", nested_report(3000))  # before the real reports
    message_id = await sender.send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))

    batch = await sender.read_acks(0, 0)  # before: RecursionError, the position never moved, at every poll
    assert {a.original_message_id for a in batch.acks} == {message_id} and len(batch.acks) == 2
    uids = [uid for uid, _ in sim.store.messages(endpoint["sender"], "INBOX")]
    assert batch.last_uid == max(uids)  # past the nested one: it is not fetched again
    again = await sender.read_acks(batch.uidvalidity, batch.last_uid)
    assert again.acks == [] and again.last_uid == batch.last_uid


async def test_delivered_first_read_later(operator: Any, cs9: bytes) -> None:
    sim, endpoint, pki = operator
    settings = settings_from(MssSection(), endpoint)
    assert settings is not None
    sender = MssSender(settings, packager(pki), FrozenClock(NOW))
    sim.auto_read = False
    message_id = await sender.send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))
    first = await sender.read_acks(0, 0)
    assert [a.outcome for a in first.acks] == [acks.AckOutcome.DELIVERED]
    assert sim.read(message_id, "displayed") == 1
    later = await sender.read_acks(first.uidvalidity, first.last_uid)
    assert [(a.kind, a.outcome, a.original_message_id) for a in later.acks] == [
        (acks.AckKind.MDN, acks.AckOutcome.READ, message_id)]


async def test_unknown_recipient_gives_an_error_report(operator: Any, cs9: bytes) -> None:
    _, endpoint, pki = operator
    settings = settings_from(MssSection(), endpoint)
    assert settings is not None
    sender = MssSender(settings, packager(pki), FrozenClock(NOW))
    message_id = await sender.send(outgoing(cs9, "mss:inconnu.x@medecin.demo.mssante.fr"))
    batch = await sender.read_acks(0, 0)
    assert [(a.outcome, a.status, a.original_message_id) for a in batch.acks] == [
        (acks.AckOutcome.ERROR, "5.1.1", message_id)]


async def test_cse_platform_bounces_a_mail_without_a_valid_xdm(operator: Any) -> None:
    _, endpoint, pki = operator
    settings = settings_from(MssSection(), endpoint)
    assert settings is not None
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Message-ID"] = endpoint["sender"], CSE_MSS_ADDRESS, "<bad.1@demo.mssante.fr>"
    msg.set_content("pas de paquet XDM valide")
    msg.add_attachment(b"PK not a zip", maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    await smtp.submit(settings.smtp, endpoint["sender"], [CSE_MSS_ADDRESS], msg.as_bytes(), "<bad.1@demo.mssante.fr>")
    sender = MssSender(settings, packager(pki), FrozenClock(NOW))
    reports = (await sender.read_acks(0, 0)).acks
    assert [(a.outcome, a.status, a.original_message_id) for a in reports] == [
        (acks.AckOutcome.ERROR, "5.6.0", "<bad.1@demo.mssante.fr>")]


async def test_sasl_authentication_and_refusals(operator: Any, cs9: bytes) -> None:
    sim, endpoint, pki = operator
    no_cert = {**endpoint, "client_cert": "", "client_key": ""}
    settings = settings_from(MssSection(), no_cert)
    assert settings is not None
    anonymous = MssSender(settings, packager(pki), FrozenClock(NOW))
    with pytest.raises(PermanentRemoteError) as refused:
        await anonymous.send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))
    assert refused.value.code == "mss_refused"
    good = replace(settings, smtp=replace(settings.smtp, username=endpoint["sender"], password=endpoint["password"]))
    await MssSender(good, packager(pki), FrozenClock(NOW)).send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))
    bad = replace(settings, smtp=replace(settings.smtp, username=endpoint["sender"], password="wrong"))
    with pytest.raises(PermanentRemoteError) as auth:
        await MssSender(bad, packager(pki), FrozenClock(NOW)).send(outgoing(cs9, "mss:dr.y@medecin.demo.mssante.fr"))
    assert auth.value.code == "mss_auth_refused"
    assert len(sim.store.accepted()) == 1


async def test_masked_document_never_leaves_for_a_professional(operator: Any, cs9: bytes) -> None:
    sim, endpoint, pki = operator
    settings = settings_from(MssSection(), endpoint)
    assert settings is not None
    sender = MssSender(settings, packager(pki), FrozenClock(NOW))
    with pytest.raises(PermanentRemoteError, match="masqué aux professionnels"):
        await sender.send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr", masked_to_ps=True))
    assert sim.store.accepted() == []


async def test_faults_map_to_what_the_queue_must_do(operator: Any, cs9: bytes) -> None:
    sim, endpoint, pki = operator
    settings = settings_from(MssSection(timeout_seconds=2.0), endpoint)
    assert settings is not None
    sender = MssSender(settings, packager(pki), FrozenClock(NOW))
    destination = "mss:dr.x@medecin.demo.mssante.fr"

    sim.faults.mode = FaultMode.DOWN
    with pytest.raises(ServiceUnreachable):
        await sender.send(outgoing(cs9, destination))
    smtp_only = MssSender(replace(settings, imap=None), packager(pki), FrozenClock(NOW))
    for probe in (sender.probe, smtp_only.probe):  # IMAP when configured, else SMTP
        with pytest.raises(ServiceUnreachable):
            await probe()
    sim.faults.mode = FaultMode.ERROR500
    with pytest.raises(TransientRemoteError) as temporary:
        await sender.send(outgoing(cs9, destination))
    assert temporary.value.code == "mss_temporary"
    sim.faults.mode = FaultMode.MALFORMED
    with pytest.raises(TransientRemoteError) as garbage:
        await sender.send(outgoing(cs9, destination))
    assert garbage.value.code == "mss_temporary"
    assert sim.store.accepted() == []

    # The operator stores the message and never answers DATA: the outcome is unknown, and the Message-ID
    # shows it arrived, so the queue will not send it again.
    sim.faults.mode = FaultMode.TIMEOUT
    sim.faults.timeout_seconds = 5.0
    with pytest.raises(TransientRemoteError) as unknown:
        await sender.send(outgoing(cs9, destination))
    assert unknown.value.code == "mss_outcome_unknown"
    sim.faults.mode = FaultMode.OK
    await smtp_only.probe()
    await sender.probe()
    message_id = await sender.find("ord-1", destination)
    assert message_id is not None
    assert [a["message_id"] for a in sim.store.accepted()] == [message_id]


async def test_state_survives_a_restart(tmp_path: Path, cs9: bytes) -> None:
    pki = SandboxPki(tmp_path / "sandbox")
    sim = MssSimulator()
    endpoint = await sim.start(SandboxContext(tmp_path / "sandbox", pki))
    settings = settings_from(MssSection(), endpoint)
    assert settings is not None
    message_id = await MssSender(settings, packager(pki), FrozenClock(NOW)).send(
        outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))
    await sim.stop()
    again = MssSimulator()
    endpoint = await again.start(SandboxContext(tmp_path / "sandbox", pki))
    try:
        settings = settings_from(MssSection(), endpoint)
        assert settings is not None
        assert await MssSender(settings, packager(pki), FrozenClock(NOW)).find(
            "ord-1", "mss:dr.x@medecin.demo.mssante.fr") == message_id
        assert len(again.store.accepted()) == 1
    finally:
        await again.stop()


async def test_starttls_submission_and_imap_login(operator: Any, cs9: bytes) -> None:
    """Port 587 style: STARTTLS required before anything; SASL inside it; IMAP with LOGIN and a password."""
    sim, endpoint, pki = operator
    settings = settings_from(MssSection(), endpoint)
    assert settings is not None and settings.imap is not None
    starttls = replace(settings.smtp, host=endpoint["submission"]["host"], port=endpoint["submission"]["port"],
                       security="starttls", username=endpoint["sender"], password=endpoint["password"])
    by_password = replace(settings, smtp=starttls, imap=replace(settings.imap, password=endpoint["password"]))
    sender = MssSender(by_password, packager(pki), FrozenClock(NOW))
    message_id = await sender.send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))
    assert [a["message_id"] for a in sim.store.accepted()] == [message_id]
    assert {a.original_message_id for a in (await sender.read_acks(0, 0)).acks} == {message_id}
    wrong = replace(by_password, imap=replace(settings.imap, password="wrong"))
    with pytest.raises(PermanentRemoteError):
        await MssSender(wrong, packager(pki), FrozenClock(NOW)).read_acks(0, 0)
    # Implicit TLS expected where the server speaks plain SMTP first: the TLS handshake cannot succeed.
    confused = replace(settings, smtp=replace(settings.smtp, port=endpoint["submission"]["port"]))
    with pytest.raises((ServiceUnreachable, PermanentRemoteError)):
        await MssSender(confused, packager(pki), FrozenClock(NOW)).send(
            outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr", order_id="ord-9"))
    assert len(sim.store.accepted()) == 1


async def test_production_style_configuration_with_password(operator: Any, cs9: bytes, tmp_path: Path) -> None:
    """The [mss] section as a practice writes it (operator host, CA, SASL password in a 0600 file)."""
    sim, endpoint, pki = operator
    secret = tmp_path / "mss.password"
    secret.write_text(endpoint["password"] + "\n")
    secret.chmod(0o600)
    section = MssSection(enabled=True, sender_address=endpoint["sender"], smtp_host="127.0.0.1",
                         smtp_port=endpoint["submission"]["port"], smtp_security="starttls",
                         imap_host="127.0.0.1", imap_port=endpoint["imap"]["port"], auth="password",
                         username=endpoint["sender"], password_file=str(secret), ca_file=endpoint["ca"],
                         product_reference="DEV935997")
    settings = settings_from(section, None)
    assert settings is not None and settings.imap is not None
    sender = MssSender(settings, packager(pki), FrozenClock(NOW))
    message_id = await sender.send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))
    assert await sender.find("ord-1", "mss:dr.x@medecin.demo.mssante.fr") == message_id
    # Another authority than the operator's (MSS1: IGC-Santé only, never the system store): refused.
    other = SandboxPki(tmp_path / "other")
    untrusted = settings_from(replace(section, ca_file=str(other.ca_path)), None)
    assert untrusted is not None
    with pytest.raises(PermanentRemoteError) as tls:
        await MssSender(untrusted, packager(pki), FrozenClock(NOW)).send(
            outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr", order_id="ord-2"))
    assert tls.value.code == "mss_tls_refused"
    assert len(sim.store.accepted()) == 1


def test_enabled_section_names_what_is_missing() -> None:
    from agent.errors import ConfigError

    with pytest.raises(ConfigError) as missing:
        settings_from(MssSection(enabled=True, sender_address="cabinet@x.mssante.fr", smtp_host="smtp"), None)
    assert missing.value.key == "mss.client_cert"
    with pytest.raises(ConfigError) as no_ca:  # MSS1: no fallback on the system's store
        settings_from(MssSection(enabled=True, sender_address="cabinet@x.mssante.fr", smtp_host="smtp",
                                 client_cert="c.pem", product_reference="DEV935997"), None)
    assert no_ca.value.key == "mss.ca_file"
    with pytest.raises(ConfigError) as no_nil:  # ECO.2.4.3: X-MSS-NIL on every message
        settings_from(MssSection(enabled=True, sender_address="cabinet@x.mssante.fr", smtp_host="smtp",
                                 client_cert="c.pem", ca_file="ca.pem"), None)
    assert no_nil.value.key == "mss.product_reference"
    assert settings_from(MssSection(), None) is None
    assert smtp.SmtpSettings(host="h", port=465, context=ssl.create_default_context).security == "tls"
