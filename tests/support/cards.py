"""Fixtures for the card tests against real components: pcscd with the vsmartcard vpcd driver, and SoftHSM2.

``tests/integration/conftest.py`` registers them once for the session.
- ``pcscd``: makes sure a pcscd with the vpcd readers runs; when none does, starts ``pcscd -f`` with a reader
  configuration of its own, vpcd on ``PRIVATE_VPCD_PORT`` (outside the ephemeral port range, so no other socket can
  hold it), sets ``RELAIS_VPCD_PORT`` for the card emulators, and stops the pcscd it started, by its pid.
- ``softhsm``: a private SoftHSM2 token folder (``SOFTHSM2_CONF``, no root needed) with a CPS-like token: the key
  ``CPS_PRIV_SIG`` and its certificate (a doctor's subject, issued by a throwaway CA), PIN 1234.
Each skips with the way to install what is missing; ``scripts/test.sh`` installs everything, so CI skips nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from relais_sandbox.cards_vpcd import PRIVATE_VPCD_PORT, VPCD_DRIVER, write_reader_conf

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
INSTALL = ("apt-get install -y --no-install-recommends pcscd libpcsclite-dev vsmartcard-vpcd softhsm2 opensc "
           "(or run scripts/test.sh as root)")
TOKEN_LABEL = "RELAIS-CPS"
PIN = "1234"
SO_PIN = "87654321"
DOCTOR = {"rpps": "10003456789", "family_name": "DURAND", "given_name": "CLAIRE", "profession": "10",
          "specialty": "SM54"}


def _readers() -> list[str] | None:
    from smartcard import scard as sc

    hresult, context = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    if hresult != sc.SCARD_S_SUCCESS:
        return None
    try:
        hresult, readers = sc.SCardListReaders(context, [])
        return [str(r) for r in readers] if hresult == sc.SCARD_S_SUCCESS else []
    finally:
        sc.SCardReleaseContext(context)


@dataclass
class Pcscd:
    started: subprocess.Popen[bytes] | None
    folder: Path | None = None  # the private configuration and log of the pcscd this fixture started

    def stop(self) -> None:
        """Stop pcscd (only the one this fixture started)."""
        if self.started is not None and self.started.poll() is None:
            self.started.terminate()
            self.started.wait(10)

    def start(self) -> None:
        assert self.folder is not None, "only the pcscd this fixture started is restarted"
        try:
            self.started = spawn_pcscd(self.folder)
        except RuntimeError as exc:
            pytest.fail(str(exc))


def spawn_pcscd(folder: Path, port: int = PRIVATE_VPCD_PORT, timeout: float = 15) -> subprocess.Popen[bytes]:
    """Start ``pcscd -f`` reading only ``folder/reader.conf.d`` (vpcd on ``port``) and wait for its readers.

    Raises RuntimeError with the end of pcscd's debug log when the readers do not appear."""
    conf = write_reader_conf(folder / "reader.conf.d", port)
    log = folder / "pcscd.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(["pcscd", "-f", "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readers = _readers()
        if readers and any(r.startswith("Virtual PCD") for r in readers):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise RuntimeError(f"pcscd (exit {proc.returncode}) did not show the vpcd readers on port {port}; "
                       f"another pcscd holding /run/pcscd, or the port taken? End of its log:\n{tail}")


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    pytest.importorskip("smartcard", reason="pyscard absent: pip install 'relais[cards]'")
    if shutil.which("pcscd") is None or not VPCD_DRIVER.exists():
        pytest.skip(f"pcscd or vsmartcard-vpcd absent: {INSTALL}")
    readers = _readers()
    if readers is not None:
        if not any(r.startswith("Virtual PCD") for r in readers):
            pytest.skip("a pcscd without the vpcd readers is running (restart it after installing vsmartcard-vpcd)")
        yield Pcscd(None)  # the system's own pcscd: vsmartcard's configuration, its default port
        return
    handle = Pcscd(None, tmp_path_factory.mktemp("pcscd"))
    handle.start()
    previous = os.environ.get("RELAIS_VPCD_PORT")
    os.environ["RELAIS_VPCD_PORT"] = str(PRIVATE_VPCD_PORT)
    try:
        yield handle
    finally:
        handle.stop()
        if previous is None:
            os.environ.pop("RELAIS_VPCD_PORT", None)
        else:
            os.environ["RELAIS_VPCD_PORT"] = previous


@dataclass(frozen=True)
class SoftHsm:
    module: str
    conf: Path
    token_label: str
    pin: str
    ca_cert: x509.Certificate
    cert: x509.Certificate  # of CPS_PRIV_SIG
    auth_cert: x509.Certificate  # of CPS_PRIV_AUT


def _doctor_certificate(tmp: Path) -> tuple[x509.Certificate, x509.Certificate, rsa.RSAPrivateKey]:
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Relais test IGC-Santé (test only)")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Relais tests"),
        x509.NameAttribute(NameOID.TITLE, DOCTOR["profession"]),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, DOCTOR["specialty"]),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, "8" + DOCTOR["rpps"]),
        x509.NameAttribute(NameOID.SURNAME, DOCTOR["family_name"]),
        x509.NameAttribute(NameOID.GIVEN_NAME, DOCTOR["given_name"]),
        x509.NameAttribute(NameOID.COMMON_NAME, "8" + DOCTOR["rpps"] + "/CPS test"),
    ])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return ca, cert, key


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    pytest.importorskip("pkcs11", reason="python-pkcs11 absent: pip install 'relais[cards]'")
    if shutil.which("softhsm2-util") is None or not Path(SOFTHSM_MODULE).exists():
        pytest.skip(f"SoftHSM2 absent: {INSTALL}")
    if shutil.which("pkcs11-tool") is None:
        pytest.skip(f"pkcs11-tool (opensc) absent: {INSTALL}")
    return create_softhsm_token(tmp_path_factory.mktemp("softhsm"))


class EventStream:
    """``GET /v1/events`` read as a client would. ``wait`` returns the first event of a type matching some data,
    in arrival order; events passed over are kept for later waits (two cards may come in either order)."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._pending: list[dict[str, Any]] = []

    @staticmethod
    def _matches(event: dict[str, Any], type_: str, match: dict[str, Any]) -> bool:
        return event["type"] == type_ and all(event.get(k) == v for k, v in match.items())

    async def _next(self) -> dict[str, Any]:
        event, data = "", ""
        while True:
            line = (await self._response.content.readline()).decode()
            if not line:
                raise AssertionError("event stream closed")
            line = line.rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event:
                return {"type": event, **json.loads(data or "{}")}

    async def wait(self, type_: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        for i, seen in enumerate(self._pending):
            if self._matches(seen, type_, match):
                return self._pending.pop(i)

        async def read() -> dict[str, Any]:
            while True:
                event = await self._next()
                if self._matches(event, type_, match):
                    return event
                self._pending.append(event)

        return await asyncio.wait_for(read(), timeout)


@asynccontextmanager
async def event_stream(http: Any, agent: Any) -> AsyncIterator[EventStream]:
    async with http.get(f"{agent.url}/v1/events", headers=agent.headers()) as response:
        assert response.status == 200
        yield EventStream(response)


def create_softhsm_token(root: Path) -> SoftHsm:
    """A SoftHSM2 token folder under ``root`` with the CPS-like token; sets ``SOFTHSM2_CONF`` for this process."""
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
                    "slots.removable = false\n")
    # python-pkcs11 initialises the module once per process: the whole session shares this configuration.
    os.environ["SOFTHSM2_CONF"] = str(conf)
    env = {**os.environ}
    run = {"check": True, "env": env, "capture_output": True}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL, "--so-pin", SO_PIN,
                    "--pin", PIN], **run)  # type: ignore[call-overload]
    certificates = {}
    keys = (("01", "CPS_PRIV_SIG", "CPS_SIG_CERT"), ("02", "CPS_PRIV_AUT", "CPS_AUT_CERT"))
    for key_id, key_label, cert_label in keys:
        ca, cert, key = _doctor_certificate(root)
        certificates[key_label] = (ca, cert)
        key_file = root / "key.p8"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        cert_file = root / "cert.der"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        subprocess.run(["softhsm2-util", "--import", str(key_file), "--token", TOKEN_LABEL, "--label", key_label,
                        "--id", key_id, "--pin", PIN], **run)  # type: ignore[call-overload]
        key_file.unlink()  # the private key now lives in the token only
        subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", TOKEN_LABEL, "--login", "--pin",
                        PIN, "--write-object", str(cert_file), "--type", "cert", "--id", key_id, "--label",
                        cert_label], **run)  # type: ignore[call-overload]
    ca, cert = certificates["CPS_PRIV_SIG"]
    return SoftHsm(SOFTHSM_MODULE, conf, TOKEN_LABEL, PIN, ca, cert, certificates["CPS_PRIV_AUT"][1])
