"""Finding the practice's other agents on the LAN with zeroconf (mDNS/DNS-SD). The only zeroconf importer.

Each paired agent announces ``_relais-peer._tcp.local.`` with its peer port and a tag of its practice (a hash of
the practice id, so a neighbour's practice is skipped without a connection). What is found is only an address
to try: the peer is trusted once its certificate passed the mTLS checks, as with any other address.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from typing import TYPE_CHECKING, Any

import ifaddr

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from agent.logs import get_logger
from agent.routing import pki

log = get_logger("routing")
SERVICE_TYPE = "_relais-peer._tcp.local."


def practice_tag(practice_id: str) -> str:
    return hashlib.sha256(b"relais-practice-tag|" + practice_id.encode()).hexdigest()[:16]


def lan_addresses() -> list[str]:
    """The workstation's IPv4 addresses, loopback and link-local excluded."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                address = ipaddress.ip_address(ip.ip)
                if not (address.is_loopback or address.is_link_local):
                    found.append(ip.ip)
    return found


class ZeroconfDiscovery:
    def __init__(self, *, practice_id: str, workstation: str, port: int, addresses: list[str],
                 interfaces: list[str] | None = None) -> None:
        self.tag = practice_tag(practice_id)
        self.workstation = workstation
        self.port = port
        self.addresses = addresses
        self.interfaces = interfaces
        self.found: dict[str, tuple[str, int]] = {}
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def factory(cls, service: Any) -> ZeroconfDiscovery:
        """Build it for the practice's peers (agent.routing.peers.Peers) once their listener is open."""
        host = service.settings.peer_host
        loopback = host.startswith("127.") or host == "::1"
        addresses = [host] if loopback or host not in ("0.0.0.0", "::") else lan_addresses()  # noqa: S104
        return cls(practice_id=service.member.practice_id, workstation=service.member.workstation,
                   port=service.port, addresses=addresses, interfaces=["127.0.0.1"] if loopback else None)

    @property
    def instance(self) -> str:
        return f"{pki.slug(self.workstation)}-{self.tag[:6]}.{SERVICE_TYPE}"

    async def start(self) -> None:
        # Imported here, when a practice turns discovery on: zeroconf costs about 3 MB to every agent otherwise.
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        kwargs: dict[str, Any] = {"ip_version": IPVersion.V4Only}
        if self.interfaces is not None:
            kwargs["interfaces"] = self.interfaces
        self._zc = AsyncZeroconf(**kwargs)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE, self.instance, port=self.port, properties={"practice": self.tag, "v": "1"},
            addresses=[socket.inet_aton(a) for a in self.addresses],
            server=f"{pki.slug(self.workstation)}-{self.tag[:6]}.local.")
        await self._zc.async_register_service(self._info, allow_name_change=True)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])

    def _on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            self.found.pop(name, None)
            return
        task = asyncio.ensure_future(self._resolve(service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        if self._zc is None or name == self.instance:
            return
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zc.zeroconf, 3000):
            return
        properties = info.properties or {}
        if properties.get(b"practice") != self.tag.encode() or not info.port:
            return
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if addresses:
            self.found[name] = (addresses[0], int(info.port))
            log.info("pair annoncé par zeroconf : %s:%d (à vérifier par son certificat)", addresses[0], info.port)

    def hints(self) -> list[tuple[str, int]]:
        return sorted(set(self.found.values()))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            if self._info is not None:
                await self._zc.async_unregister_service(self._info)
            await self._zc.async_close()
