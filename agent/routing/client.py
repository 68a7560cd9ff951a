"""The client side of the peer link: mTLS requests to other agents of the practice, answers mapped to errors.

Every new connection's certificate is checked as it is made (practice, usages, revocation) and remembered per
address; every answer is checked again against the current revocation list (connections are kept alive).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
from cryptography import x509

from agent.errors import AccessRefused, Conflict, InvalidInput, NotFound, RelaisError, Unavailable


class PeerConnector(aiohttp.TCPConnector):
    """Checks each new TLS connection's peer certificate (practice, usages, revocation) as it is made, and
    remembers which workstation answers at each address: the answer of a request is that workstation's."""

    def __init__(self, identify: Callable[[bytes], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._identify = identify
        self.peer_names: dict[tuple[str, int], tuple[str, int]] = {}

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, protocol = await super()._wrap_create_connection(*args, **kwargs)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        try:
            if not der:
                raise AccessRefused("Le pair n'a pas présenté de certificat.", code="peer_refused")
            name = self._identify(bytes(der))
        except RelaisError as error:
            transport.close()
            raise aiohttp.ClientConnectionError(error.message) from error
        request = kwargs.get("req")
        if request is not None:
            serial = x509.load_der_x509_certificate(bytes(der)).serial_number
            self.peer_names[(str(request.url.host), int(request.url.port or 0))] = (name, serial)
        return transport, protocol


class PeerClient:
    def __init__(self, context: ssl.SSLContext, identify: Callable[[bytes], str]) -> None:
        self.connector = PeerConnector(identify, ssl=context, limit=16, keepalive_timeout=10)
        self.session = aiohttp.ClientSession(connector=self.connector, timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        await self.session.close()

    async def post(self, host: str, port: int, path: str, payload: dict[str, Any], *, timeout: float,
                   expect: str | None, revoked: frozenset[int]) -> tuple[str, dict[str, Any]]:
        """POST to a peer; returns (the workstation its certificate names, the JSON answer)."""
        url = f"https://{'[' + host + ']' if ':' in host else host}:{port}{path}"
        try:
            async with self.session.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                data = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            if isinstance(exc.__cause__, RelaisError):
                raise exc.__cause__ from None
            raise Unavailable(f"Poste {host}:{port} injoignable.", code="peer_unreachable") from exc
        # Connections are kept alive: the revocation list is checked again for every answer.
        name, serial = self.connector.peer_names.get((host, port), ("", 0))
        if not name or serial in revoked:
            raise AccessRefused("Ce poste n'est pas (ou plus) membre du cabinet.", code="peer_refused")
        if expect is not None and name != expect:
            raise AccessRefused(f"Le poste à {host}:{port} n'est pas « {expect} ».", code="peer_refused")
        if not isinstance(data, dict):
            raise Unavailable("Réponse du pair illisible.", code="peer_unreachable")
        if status != 200:
            code, detail = str(data.get("code", "peer_error")), str(data.get("detail", ""))
            if status == 409:
                raise Conflict(detail, code=code)
            if status == 404:
                raise NotFound(detail, code=code)
            if status == 403:
                raise AccessRefused(detail, code=code)
            if status == 422:
                raise InvalidInput(detail, code=code)
            raise Unavailable(detail or f"Erreur du poste {name}.", code=code)
        return name, data
