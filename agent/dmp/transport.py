"""HTTPS transport to the DMP: TLS with client authentication, timeouts, bounded answers, error mapping.

The only place the DMP client touches sockets. No connection is ``ServiceUnreachable`` (saying whether the
request may have left); timeouts, 5xx and unreadable answers are transient; a 4xx without a SOAP fault is
permanent. What the answer says (faults, registry errors) is read by ``soap``.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from agent.dmp.soap import MAX_ANSWER_BYTES, MtomMessage, read_mtom
from agent.errors import InvalidInput, PermanentRemoteError, ServiceUnreachable, TransientRemoteError
from agent.frames import FrameTap, open_exchange
from agent.logs import get_logger

log = get_logger("dmp")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


@dataclass
class Answer:
    status: int
    message: MtomMessage


class Transport:
    frames: FrameTap | None = None  # the homologation journal, when build() sets it

    def __init__(self, tls: TlsSettings, *, connect_timeout: float = 10.0, total_timeout: float = 60.0,
                 max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self._ssl = tls.context()
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout)
        self._max = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=8)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, body: bytes, content_type: str, action: str,
                   extra_headers: Mapping[str, str] | None = None) -> Answer:
        session = self._get_session()
        headers = {**(extra_headers or {}), "Content-Type": content_type,
                   "Accept": "multipart/related, application/soap+xml"}
        frame = open_exchange(self.frames, "dmp", action, body, content_type)
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                declared = resp.content_length
                if declared is not None and declared > self._max:
                    raise PermanentRemoteError("Réponse du DMP trop volumineuse.", service="dmp",
                                               code="dmp_answer_too_large")
                data = await _read_bounded(resp, self._max)
                ctype = resp.headers.get("Content-Type", "")
                status = resp.status
            frame.answered(data, status=status, content_type=ctype)
        except TimeoutError as exc:
            log.warning("DMP : délai dépassé (%s)", action)
            raise TransientRemoteError("Le DMP n'a pas répondu à temps.", service="dmp", code="dmp_timeout") from exc
        except aiohttp.ClientSSLError as exc:
            raise TransientRemoteError(f"Connexion TLS au DMP refusée : {exc}", service="dmp",
                                       code="dmp_tls_error") from exc
        except (aiohttp.ClientError, OSError) as exc:
            # Refused or unresolved connections never carried the request; a dropped one may have.
            never_left = isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError | socket.gaierror)
            log.warning("DMP injoignable (%s) : %s", action, type(exc).__name__)
            raise ServiceUnreachable("Le DMP est injoignable.", service="dmp", code="dmp_unreachable",
                                     maybe_delivered=not never_left) from exc
        try:
            message = read_mtom(data, ctype, max_bytes=self._max)
        except InvalidInput as exc:  # a broken MTOM answer: transient, the request may have been processed
            raise TransientRemoteError(f"Réponse du DMP illisible : {exc.message}", service="dmp",
                                       code="dmp_answer_invalid") from exc
        if status >= 500 and not _looks_soap(message.root):
            raise TransientRemoteError(f"Le DMP est en erreur (HTTP {status}).", service="dmp",
                                       code="dmp_server_error", http_status=status)
        if 400 <= status < 500 and not _looks_soap(message.root):
            raise PermanentRemoteError(f"Le DMP a refusé la requête (HTTP {status}).", service="dmp",
                                       code="dmp_http_error", http_status=status)
        return Answer(status, message)


    async def post_form(self, url: str, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """A form POST answered in JSON (the DMP's PSC token exchange), over the same TLS session and client
        certificate as the SOAP calls."""
        session = self._get_session()
        try:
            async with session.post(url, data=dict(form), headers={"Accept": "application/json"}) as resp:
                data = await _read_bounded(resp, 256 * 1024)
                status = resp.status
        except TimeoutError as exc:
            raise TransientRemoteError("Le DMP n'a pas répondu à temps.", service="dmp", code="dmp_timeout") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ServiceUnreachable("Le DMP est injoignable.", service="dmp", code="dmp_unreachable",
                                     maybe_delivered=False) from exc
        if status >= 500:
            raise TransientRemoteError(f"Le DMP est en erreur (HTTP {status}).", service="dmp",
                                       code="dmp_server_error", http_status=status)
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {}
        return status, decoded if isinstance(decoded, dict) else {}


def _looks_soap(data: bytes) -> bool:
    return b"Envelope" in data[:2048]


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(65536):
        total += len(chunk)
        if total > limit:
            raise PermanentRemoteError("Réponse du DMP trop volumineuse.", service="dmp", code="dmp_answer_too_large")
        chunks.append(chunk)
    return b"".join(chunks)
