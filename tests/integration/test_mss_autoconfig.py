"""MSSanté DNS SRV autoconfiguration (RFC 6186; the operators' API LPS, EX_LPS_0300) against a real DNS server
on loopback (tests/support/dnsserver.py) and the sandbox operator; `relais doctor` shows what it found.

Also the TLS versions of the Ségur proof MSS2 (TLS 1.2 only by default) against a loopback TLS server."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.clock import FrozenClock
from agent.config import MssSection
from agent.errors import ConfigError, PermanentRemoteError, ServiceUnreachable, TransientRemoteError
from agent.mss import dnssrv, smtp
from agent.mss.factory import settings_from, tls_context_factory
from agent.mss.service import MssSender, autoconfig_status
from relais_sandbox.pki import SandboxPki
from tests.conftest import RELAIS, ROOT
from tests.integration.test_mss_transport import NOW, outgoing, packager
from tests.support.dnsserver import dns_server

DOMAIN = "medecin.demo.mssante.fr"


@pytest.fixture
def cs9(reference_dir: Path) -> bytes:
    return (reference_dir / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_priority_then_weight_orders_the_targets_and_imaps_wins_a_tie() -> None:
    zone = {
        f"_submission._tcp.{DOMAIN}": [(20, 0, 587, "backup.op.fr."), (10, 10, 587, "a.op.fr."),
                                        (10, 30, 587, "b.op.fr.")],
        f"_imap._tcp.{DOMAIN}": [(10, 0, 143, "imap.op.fr."), (5, 0, 143, "first.op.fr.")],
        f"_imaps._tcp.{DOMAIN}": [(10, 0, 993, "imaps.op.fr.")],
    }
    with dns_server(zone, ttl=120) as server:
        resolver = dnssrv.ResolverSettings(nameserver=server.host, port=server.port, timeout=5.0)
        low = await dnssrv.discover(DOMAIN, resolver, rand=lambda: 0.0)
        high = await dnssrv.discover(DOMAIN.upper() + ".", resolver, rand=lambda: 0.99)
    # Priority 10 before 20; inside priority 10 the weighted draw (weights 10 and 30) decides the first one.
    assert [t.host for t in low.submission] == ["a.op.fr", "b.op.fr", "backup.op.fr"]
    assert [t.host for t in high.submission] == ["b.op.fr", "a.op.fr", "backup.op.fr"]
    assert all(t.security == "starttls" and t.port == 587 for t in low.submission)
    # IMAP and IMAPS are one list by priority; at priority 10 implicit TLS comes first.
    assert [(t.host, t.port, t.security) for t in low.imap] == [
        ("first.op.fr", 143, "starttls"), ("imaps.op.fr", 993, "tls"), ("imap.op.fr", 143, "starttls")]
    assert low.ttl == 120
    with dns_server({f"_submissions._tcp.{DOMAIN}": [(0, 0, 465, "smtps.op.fr.")],
                     f"_submission._tcp.{DOMAIN}": [(0, 0, 587, "smtp.op.fr.")]}) as server:
        both = await dnssrv.discover(DOMAIN, dnssrv.ResolverSettings(nameserver=server.host, port=server.port))
    # RFC 8314: implicit TLS submission (465) first on a tie; no IMAP published.
    assert [(t.host, t.port, t.security) for t in both.submission] == [("smtps.op.fr", 465, "tls"),
                                                                         ("smtp.op.fr", 587, "starttls")]
    assert both.imap == ()
    assert "envoi a.op.fr:587 (STARTTLS)" in low.describe()


async def test_nothing_published_is_a_clear_french_error() -> None:
    zone = {f"_imaps._tcp.{DOMAIN}": [(0, 0, 993, "imap.op.fr.")],
            # RFC 2782: a single "." target says the service is decidedly not offered here.
            f"_submission._tcp.{DOMAIN}": [(0, 0, 0, ".")]}
    with dns_server(zone) as server:
        resolver = dnssrv.ResolverSettings(nameserver=server.host, port=server.port)
        with pytest.raises(ConfigError) as none:
            await dnssrv.discover(DOMAIN, resolver)
        with pytest.raises(ConfigError) as unknown:
            await dnssrv.discover("inconnu.mssante.fr", resolver)
    assert "aucun serveur d'envoi MSSanté publié pour le domaine medecin.demo.mssante.fr" in none.value.message
    assert "mss.smtp_host" in none.value.message and none.value.key == "mss.smtp_host"
    assert "_submission._tcp.inconnu.mssante.fr" in unknown.value.message


async def test_a_dns_server_that_does_not_answer_is_unreachable_not_a_configuration_error() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = dnssrv.ResolverSettings(nameserver="127.0.0.1", port=silent.getsockname()[1], timeout=0.5)
        with pytest.raises(ServiceUnreachable):
            await dnssrv.discover(DOMAIN, resolver)
    finally:
        silent.close()


async def test_sender_autoconfigured_from_srv_delivers_and_reconciles(operator: Any, cs9: bytes) -> None:
    """[mss] with the mailbox but no smtp_host: the SRV records name the operator's submission (STARTTLS) and IMAP
    servers. The first target of each (priority 0) does not answer: the next one is used (RFC 2782)."""
    sim, endpoint, pki = operator
    domain = endpoint["sender"].rsplit("@", 1)[1]
    closed = closed_port()
    zone = {f"_submission._tcp.{domain}": [(0, 1, closed, "localhost."),
                                           (10, 1, endpoint["submission"]["port"], "localhost.")],
            f"_imaps._tcp.{domain}": [(0, 1, closed, "localhost."),
                                      (5, 1, endpoint["imap"]["port"], "localhost.")],
            f"_imap._tcp.{domain}": [(10, 1, closed_port(), "localhost.")]}
    client = pki.issue("mss-client-auto", common_name=endpoint["sender"], client=True)
    with dns_server(zone) as server:
        section = MssSection(enabled=True, sender_address=endpoint["sender"], client_cert=str(client.cert_path),
                             client_key=str(client.key_path), ca_file=endpoint["ca"], product_reference="DEV935997",
                             dns_nameserver=server.host, dns_port=server.port)
        settings = settings_from(section, None)
        assert settings is not None and settings.autoconfig is not None and settings.autoconfig.domain == domain
        sender = MssSender(settings, packager(pki), FrozenClock(NOW))
        assert autoconfig_status(sender) == {"domain": domain, "submission": None, "imap": None}
        message_id = await sender.send(outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))
        assert await sender.find("ord-1", "mss:dr.x@medecin.demo.mssante.fr") == message_id
        batch = await sender.read_acks(0, 0)
        assert message_id in {a.original_message_id for a in batch.acks}
        await sender.probe()
        assert autoconfig_status(sender) == {"domain": domain, "submission": f"localhost:{closed}",
                                             "imap": f"localhost:{closed}"}  # the first named, as published
        # Resolved once and kept for the records' TTL (the clock is frozen): four SRV questions in all.
        assert len(server.questions) == 4
    assert [m["message_id"] for m in sim.store.accepted()] == [message_id]


async def test_sender_without_published_servers_waits_with_the_reason(operator: Any, cs9: bytes) -> None:
    _sim, endpoint, pki = operator
    with dns_server({}) as server:
        section = MssSection(enabled=True, sender_address="cabinet@vide.mssante.fr", client_cert="c.pem",
                             ca_file=endpoint["ca"], product_reference="DEV935997", dns_nameserver=server.host,
                             dns_port=server.port)
        settings = settings_from(section, None)
        assert settings is not None
        with pytest.raises(TransientRemoteError) as waiting:
            await MssSender(settings, packager(pki), FrozenClock(NOW)).send(
                outgoing(cs9, "mss:dr.x@medecin.demo.mssante.fr"))
    assert waiting.value.code == "mss_autoconfig"
    assert "aucun serveur d'envoi MSSanté publié pour le domaine vide.mssante.fr" in waiting.value.message


def test_doctor_shows_what_the_dns_publishes_and_why_nothing(tmp_path: Path) -> None:
    pki = SandboxPki(tmp_path / "pki")
    client = pki.issue("cabinet", common_name="cabinet", client=True)
    zone = {f"_submission._tcp.{DOMAIN}": [(0, 0, 587, "smtp.op.fr.")],
            f"_imap._tcp.{DOMAIN}": [(0, 0, 143, "imap.op.fr.")]}
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}

    def doctor(address: str, port: int) -> str:
        config = tmp_path / "relais.toml"
        config.write_text(f'[mss]\nenabled = true\nsender_address = "{address}"\n'
                          f'client_cert = "{client.cert_path}"\nclient_key = "{client.key_path}"\n'
                          f'ca_file = "{pki.ca_path}"\nproduct_reference = "DEV935997"\n'
                          f'dns_nameserver = "127.0.0.1"\ndns_port = {port}\n')
        result = subprocess.run([*RELAIS, "doctor", "--config", str(config), "--data-dir", str(tmp_path / "d")],
                                capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
        return result.stdout

    with dns_server(zone) as server:
        found = doctor(f"cabinet@{DOMAIN}", server.port)
        missing = doctor("cabinet@vide.mssante.fr", server.port)
    assert (f"MSSanté autoconfigurée par DNS SRV ({DOMAIN}) : envoi smtp.op.fr:587 (STARTTLS), "
            "IMAP imap.op.fr:143 (STARTTLS)") in found, found
    assert "ERREUR" in missing and "aucun serveur d'envoi MSSanté publié pour le domaine vide.mssante.fr" in missing


# --- TLS versions (Ségur proof MSS2) ------------------------------------------------------------------------------

@contextmanager
def tls_server(pki: SandboxPki, minimum: ssl.TLSVersion) -> Iterator[tuple[int, list[str]]]:
    """A loopback TLS server that completes handshakes (from ``minimum`` on), greets as SMTP and hangs up."""
    creds = pki.issue("tls-only", common_name="localhost", server=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(creds.cert_path, creds.key_path)
    context.minimum_version = minimum
    listener = socket.create_server(("127.0.0.1", 0))
    versions: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        versions.append(str(tls.version()))
                        tls.sendall(b"554 test server\r\n")
                except (ssl.SSLError, OSError):
                    versions.append("refused")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1]), versions
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_mss2_a_server_with_tls_1_3_only_is_refused_by_default(tmp_path: Path) -> None:
    pki = SandboxPki(tmp_path / "pki")
    with tls_server(pki, ssl.TLSVersion.TLSv1_3) as (port, versions):
        default = smtp.SmtpSettings(host="localhost", port=port, context=tls_context_factory(str(pki.ca_path), "", ""))
        with pytest.raises(PermanentRemoteError) as refused:
            smtp.check_blocking(default)
        assert refused.value.code == "mss_tls_refused"
        # Allowed by configuration (tls_max_version = "1.3"): the handshake succeeds, TLS 1.3.
        allowed = replace(default, context=tls_context_factory(str(pki.ca_path), "", "", max_version="1.3"))
        with pytest.raises((PermanentRemoteError, TransientRemoteError, ServiceUnreachable)):
            smtp.check_blocking(allowed)  # the test server answers 554 after the handshake
    assert versions[-1] == "TLSv1.3"


def test_mss2_tls_1_2_is_what_is_negotiated_by_default(tmp_path: Path) -> None:
    pki = SandboxPki(tmp_path / "pki")
    with tls_server(pki, ssl.TLSVersion.TLSv1_2) as (port, versions):
        default = smtp.SmtpSettings(host="localhost", port=port, context=tls_context_factory(str(pki.ca_path), "", ""))
        with pytest.raises((PermanentRemoteError, TransientRemoteError, ServiceUnreachable)):
            smtp.check_blocking(default)
    assert versions == ["TLSv1.2"]


def test_tls_bounds_and_dns_settings_are_checked() -> None:
    base = MssSection(enabled=True, sender_address="cabinet@x.mssante.fr", client_cert="c.pem", ca_file="ca.pem",
                      product_reference="DEV935997")
    with pytest.raises(ConfigError) as inverted:
        settings_from(replace(base, tls_min_version="1.3", tls_max_version="1.2"), None)
    assert inverted.value.key == "mss.tls_min_version"
    with pytest.raises(ConfigError) as named:
        settings_from(replace(base, dns_nameserver="dns.example.fr"), None)
    assert named.value.key == "mss.dns_nameserver"
    with pytest.raises(ConfigError) as cse:
        settings_from(replace(base, cse_address="pas une adresse"), None)
    assert cse.value.key == "mss.cse_address"
