"""TLS contexts of the peer link, and where this workstation's practice keys live on disk.

The only module of routing that builds ``ssl`` contexts. TLS 1.3 only (every peer is a Relais agent), the
practice CA as the one trust anchor (no system store), OpenSSL's strict X.509 checks. Names are checked by the
caller against the certificate (``pki.verify_workstation``): an address is only a hint, so there is no host
name to match.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

PRACTICE_DIR = "practice"
KEY_FILE = "workstation.key"
CERT_FILE = "workstation.pem"
CA_KEY_FILE = "ca.key"


def practice_dir(data_dir: Path) -> Path:
    return data_dir / PRACTICE_DIR


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _base(purpose: int) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def server_context(data_dir: Path, ca_pem: bytes) -> ssl.SSLContext:
    """The listener: presents this workstation's certificate, asks for the peer's (optional at the TLS level
    so that a joining workstation can reach the join exchange; every other route requires it)."""
    context = _base(ssl.PROTOCOL_TLS_SERVER)
    folder = practice_dir(data_dir)
    context.load_cert_chain(folder / CERT_FILE, folder / KEY_FILE)
    context.load_verify_locations(cadata=ca_pem.decode())
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(data_dir: Path, ca_pem: bytes) -> ssl.SSLContext:
    context = _base(ssl.PROTOCOL_TLS_CLIENT)
    folder = practice_dir(data_dir)
    context.load_cert_chain(folder / CERT_FILE, folder / KEY_FILE)
    context.load_verify_locations(cadata=ca_pem.decode())
    context.check_hostname = False  # the certificate's workstation name is checked instead
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def join_context() -> ssl.SSLContext:
    """Before joining there is nothing to verify the server against: the join exchange binds the server's
    certificate into MACs keyed by the invite code instead (``pairing.py``)."""
    context = _base(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
