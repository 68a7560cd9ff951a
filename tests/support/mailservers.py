"""Real mail servers for the MSSanté client's tests: Dovecot (IMAP, LMTP) and Postfix (submission), the Debian
packages of scripts/system-packages.txt, each started with its own configuration in a temporary folder.

Both bind loopback only. Dovecot runs its mail processes as the ``dovecot`` system user (root must not own mail);
Postfix needs root for ``master`` (TESTING.md). Tests that use them run under the machine-wide lock
(``flock /tmp/relais-suite.lock``). Never touches the system's own /etc/dovecot or /etc/postfix configuration,
except the one ``alternate_config_directories`` line Postfix requires to accept a configuration elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from relais_sandbox.pki import SandboxPki

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
PASSWORD = "mot-de-passe-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, what: str, log: Path) -> None:
    for _ in range(200):  # a bounded wait for the server to listen (not a timing assertion)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")


def require(binary: str) -> None:
    if not Path(binary).exists():
        pytest.skip(f"{binary} absent: apt-get install the packages of scripts/system-packages.txt")
    if os.geteuid() != 0:
        pytest.skip("the mail servers' tests run as root (Postfix's master, Dovecot's mail user)")


@dataclass(frozen=True)
class Dovecot:
    root: Path
    imaps_port: int  # implicit TLS
    imap_port: int  # STARTTLS
    lmtp_port: int
    ca: str  # the authority of the server certificate and of the client certificates Dovecot accepts
    cert_user: str  # logs in by certificate (SASL EXTERNAL; the certificate's CN is the mailbox)
    cert: str
    key: str
    password_user: str  # logs in with PASSWORD

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user / "Maildir"


@contextlib.contextmanager
def dovecot(pki: SandboxPki, *, users: tuple[str, ...]) -> Iterator[Dovecot]:
    """Dovecot on loopback: IMAP with implicit TLS and with STARTTLS, LMTP for Postfix, login by password or by
    client certificate (the certificate's common name is the mailbox)."""
    require(DOVECOT)
    root = Path(tempfile.mkdtemp(prefix="relais-dovecot-"))
    mail_user = pwd.getpwnam("dovecot")
    try:
        server = pki.issue("dovecot", common_name="localhost", server=True)
        client = pki.issue("dovecot-client", common_name=users[0], client=True)
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir()
        os.chown(root / "mail", mail_user.pw_uid, mail_user.pw_gid)
        root.chmod(0o755)
        lines = [f"{users[0]}:::::::nopassword=y"]  # certificate only (SASL EXTERNAL)
        lines += [f"{u}:{{PLAIN}}{PASSWORD}::::::" for u in users[1:]]
        (root / "users").write_text("\n".join(lines) + "\n")
        ports = {"imaps": free_port(), "imap": free_port(), "lmtp": free_port()}
        (root / "dovecot.conf").write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = required
ssl_cert = <{server.cert_path}
ssl_key = <{server.key_path}
ssl_ca = <{pki.ca_path}
ssl_verify_client_cert = yes
ssl_require_crl = no
auth_verbose = yes
ssl_min_protocol = TLSv1.2
auth_ssl_username_from_cert = yes
ssl_cert_username_field = commonName
auth_mechanisms = plain login external
disable_plaintext_auth = yes
mail_location = maildir:~/Maildir
first_valid_uid = {mail_user.pw_uid}
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {ports["imap"]}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ports["imaps"]}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {ports["lmtp"]}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@localhost
}}
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
}}
""")
        process = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for port in ports.values():
                wait_port(port, "dovecot", root / "dovecot.log")
            yield Dovecot(root, ports["imaps"], ports["imap"], ports["lmtp"], str(pki.ca_path), users[0],
                          str(client.cert_path), str(client.key_path), users[1] if len(users) > 1 else "")
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)


POSTFIX_DIR = Path("/tmp/relais-postfix")  # fixed: /etc/postfix/main.cf must list it (alternate_config_directories)


@dataclass(frozen=True)
class Postfix:
    submission_port: int  # STARTTLS required, a client certificate from the CA required
    log: Path


def _postfix(*args: str) -> subprocess.CompletedProcess[str]:
    # Postfix writes its errors to the terminal or to syslog only: ``script`` gives it a terminal to write on.
    command = " ".join([POSTFIX, "-c", str(POSTFIX_DIR), *args])
    return subprocess.run(["script", "-qc", command, "/dev/null"], capture_output=True, text=True, check=False)


def _allow_config_directory() -> None:
    listed = subprocess.run(["postconf", "-h", "alternate_config_directories"], capture_output=True, text=True,
                            check=True).stdout.split()
    if str(POSTFIX_DIR) not in listed:
        subprocess.run(["postconf", "-e", f"alternate_config_directories = {' '.join([*listed, str(POSTFIX_DIR)])}"],
                       check=True)


@contextlib.contextmanager
def postfix(pki: SandboxPki, mailboxes: Dovecot, *, domain: str) -> Iterator[Postfix]:
    """Postfix on loopback: submission with STARTTLS and a client certificate (the CA's), mail for ``domain``
    delivered to Dovecot by LMTP; unknown recipients bounce with real RFC 3464 DSNs."""
    require(POSTFIX)
    _allow_config_directory()
    shutil.rmtree(POSTFIX_DIR, ignore_errors=True)
    (POSTFIX_DIR / "queue").mkdir(parents=True)
    (POSTFIX_DIR / "data").mkdir()
    owner = pwd.getpwnam("postfix")
    os.chown(POSTFIX_DIR / "data", owner.pw_uid, owner.pw_gid)
    server = pki.issue("postfix", common_name="localhost", server=True)
    port = free_port()
    log = POSTFIX_DIR / "postfix.log"
    (POSTFIX_DIR / "main.cf").write_text(f"""
compatibility_level = 3.6
queue_directory = {POSTFIX_DIR}/queue
data_directory = {POSTFIX_DIR}/data
maillog_file = {log}
maillog_file_prefixes = {POSTFIX_DIR}
myhostname = mta.{domain}
mydomain = {domain}
myorigin = {domain}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
virtual_mailbox_domains = {domain}
virtual_transport = lmtp:inet:127.0.0.1:{mailboxes.lmtp_port}
smtpd_tls_cert_file = {server.cert_path}
smtpd_tls_key_file = {server.key_path}
smtpd_tls_CAfile = {pki.ca_path}
smtpd_tls_security_level = encrypt
smtpd_tls_ask_ccert = yes
smtpd_tls_req_ccert = yes
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_relay_restrictions = permit_tls_all_clientcerts, reject
smtpd_recipient_restrictions = permit_tls_all_clientcerts, reject
""")
    services = """pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
tlsmgr unix - - n 1000? 1 tlsmgr
postlog unix-dgram n - n - 1 postlogd
"""
    (POSTFIX_DIR / "master.cf").write_text(f"127.0.0.1:{port} inet n - n - - smtpd\n" + services)
    started = _postfix("start")
    try:
        if not log.exists() or "startup failed" in started.stdout:
            raise AssertionError(f"postfix did not start: {started.stdout}")
        wait_port(port, "postfix", log)
        yield Postfix(port, log)
    finally:
        _postfix("stop")
        shutil.rmtree(POSTFIX_DIR, ignore_errors=True)
