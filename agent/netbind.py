"""Listening sockets that no other process can share: the API port and the peer port.

On Windows, ``SO_REUSEADDR`` lets a second socket bind a port that is already listening, so another user's
program on a shared Remote Desktop server could take over this agent's port and receive its clients' tokens.
There the listener sets ``SO_EXCLUSIVEADDRUSE`` instead, and never ``SO_REUSEADDR`` (asyncio's and aiohttp's
``reuse_address=True`` sets it). On Linux, macOS and the BSDs ``SO_REUSEADDR`` only lets a restarted agent bind
again while old connections linger in TIME_WAIT: a second live listener on the same address and port is still
refused (that would take ``SO_REUSEPORT``, which is never set here, and Linux grants it to the same user only).

This module binds and listens; it never accepts, and never binds anything but the address it is given.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from agent.errors import Unavailable

# Windows' value of SO_EXCLUSIVEADDRUSE (~SO_REUSEADDR); Python's socket module only defines it on Windows.
_SO_EXCLUSIVEADDRUSE = -5
_BACKLOG = 128


@dataclass(frozen=True, slots=True)
class SocketOption:
    """One setsockopt call, by name, so the choice per OS is testable anywhere."""

    level: str
    name: str
    value: int


def listen_options(os_name: str = os.name) -> tuple[SocketOption, ...]:
    """The options a listener sets before bind on ``os_name`` ("nt" or "posix")."""
    if os_name == "nt":
        return (SocketOption("SOL_SOCKET", "SO_EXCLUSIVEADDRUSE", 1),)
    return (SocketOption("SOL_SOCKET", "SO_REUSEADDR", 1),)


def _apply(sock: socket.socket, option: SocketOption) -> None:
    level = getattr(socket, option.level)
    name = getattr(socket, option.name, _SO_EXCLUSIVEADDRUSE if option.name == "SO_EXCLUSIVEADDRUSE" else None)
    if name is None:  # pragma: no cover - every option listed exists on its OS
        raise OSError(errno.ENOPROTOOPT, f"{option.name} indisponible")
    sock.setsockopt(level, name, option.value)


def _addresses(host: str, port: int) -> list[tuple[int, tuple[str, int]]]:
    found: list[tuple[int, tuple[str, int]]] = []
    for family, _, _, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE):
        entry = (int(family), (str(address[0]), int(address[1])))
        if entry not in found:
            found.append(entry)
    return found


def port_taken(exc: OSError) -> bool:
    """Whether a bind failed because something listens there already (not a bad address or a privileged port).

    Windows answers WSAEADDRINUSE (10048), or WSAEACCES (10013) when an exclusive socket holds the port.
    """
    return exc.errno == errno.EADDRINUSE or getattr(exc, "winerror", None) in (10048, 10013)


def bind_exclusive(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host`` at ``port`` (0: one port chosen by the OS for all).

    Raises ``OSError`` (``port_taken`` tells it apart) when any address cannot be had; nothing stays bound.
    """
    sockets: list[socket.socket] = []
    try:
        for family, (address, _) in _addresses(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            for option in listen_options():
                _apply(sock, option)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
            port = port or int(sock.getsockname()[1])  # the other addresses of the host share the chosen port
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def candidate_ports(port: int, search: int, skip: Iterable[int] = ()) -> list[int]:
    """``port``, then up to ``search`` following ports (never one of ``skip``, never past 65535)."""
    if port == 0:
        return [0]
    avoided = set(skip)
    following = [p for p in range(port + 1, min(port + 1 + search + len(avoided), 65536)) if p not in avoided]
    return [port, *following[:search]]


def bind_first_free(host: str, port: int, *, search: int = 0, skip: Iterable[int] = (),
                    what: str = "l'API locale") -> list[socket.socket]:
    """Bind ``port``, or the first free one of the ``search`` ports after it; a French error when none is."""
    tried = candidate_ports(port, search, skip)
    for candidate in tried:
        try:
            return bind_exclusive(host, candidate)
        except OSError as exc:
            if not port_taken(exc):
                raise Unavailable(f"Impossible d'écouter sur {host}:{candidate} pour {what} : {exc.strerror or exc}",
                                  code="port_unavailable") from exc
    span = f"{tried[0]}" if len(tried) == 1 else f"{tried[0]} à {tried[-1]}"
    raise Unavailable(
        f"Le port {span} est déjà utilisé par un autre programme (ou l'agent Relais d'une autre session) : "
        f"{what} ne peut pas démarrer. Choisissez un autre port dans la configuration.", code="port_in_use")


async def start_sites(runner: web.AppRunner, sockets: list[socket.socket], *,
                      ssl_context: ssl.SSLContext | None = None) -> int:
    """Serve ``runner`` on already bound ``sockets``; returns the port."""
    for sock in sockets:
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    return int(sockets[0].getsockname()[1])
