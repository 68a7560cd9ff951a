"""Virtual cards: a CPS and a carte Vitale that answer the APDUs Relais sends, in process or through vpcd.

The applets are pure (bytes in, bytes out): the in-process simulated reader calls them directly, and
``VpcdCard`` puts one behind the vsmartcard ``vpcd`` reader driver of a real pcscd, so the agent's PC/SC code
sees a real card come and go. vpcd protocol: TCP to 127.0.0.1:35963 (reader "Virtual PCD 00 00") or 35964
("... 00 01") with vsmartcard's own configuration, or to the port a private configuration names (``RELAIS_VPCD_PORT``,
see ``write_reader_conf``); frames are a 2-byte big-endian length then the payload; a 1-byte payload is a control
(0 power off, 1 power on, 2 reset, 4 get ATR, answered with the ATR), any other payload is a C-APDU answered
with an R-APDU. Connecting inserts the card; closing the socket pulls it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Protocol

from agent.domain.apdu import Command, Response, Sw
from agent.domain.cps import CPS3_AID
from agent.domain.vitale import (
    EF_POINTERS,
    VITALE_AID,
    PointedFile,
    VitaleBeneficiary,
    encode_beneficiaries,
    encode_card_block,
    encode_pointer_map,
)

VPCD_PORT = 35963  # vsmartcard's /etc/reader.conf.d/vpcd (0x8C7B); slot 1 listens on the next port
# For a pcscd of our own: below Linux's ephemeral range (32768-60999), so that no client socket of another program
# can hold it. vsmartcard's default lies inside that range: once, on CI, a connection that happened to get 35963 as
# its local port made vpcd's bind fail, and pcscd came up with no reader at all.
PRIVATE_VPCD_PORT = 29963
VPCD_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")


def vpcd_port() -> int:
    """The port of slot 0: ``RELAIS_VPCD_PORT`` when a private pcscd configuration set it, else vsmartcard's."""
    return int(os.environ.get("RELAIS_VPCD_PORT", VPCD_PORT))


def write_reader_conf(folder: Path, port: int = PRIVATE_VPCD_PORT, driver: Path = VPCD_DRIVER) -> Path:
    """A reader.conf.d folder declaring the vpcd readers on ``port`` (and ``port + 1``), for ``pcscd -c folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vpcd").write_text(f"FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{port:04X}\n"
                                 f"LIBPATH {driver}\nCHANNELID 0x{port:04X}\n")
    return folder


def make_atr(historical: bytes) -> bytes:
    """A T=1 ATR with these historical bytes and its check byte."""
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


class Applet(Protocol):
    atr: bytes

    def process(self, apdu: bytes) -> bytes: ...

    def reset(self) -> None: ...


class _SelectableApplet:
    aid: bytes = b""
    atr: bytes = b""

    def __init__(self) -> None:
        self.selected = False
        self.commands = 0

    def reset(self) -> None:
        self.selected = False

    def process(self, apdu: bytes) -> bytes:
        self.commands += 1
        try:
            command = Command.decode(apdu)
        except ValueError:
            return Response(b"", Sw.WRONG_LENGTH).encode()
        if command.cla != 0x00:
            return Response(b"", Sw.CLA_NOT_SUPPORTED).encode()
        if command.ins == 0xA4 and command.p1 == 0x04:
            self.selected = command.data == self.aid
            return Response(b"", Sw.OK if self.selected else Sw.FILE_NOT_FOUND).encode()
        return self.handle(command).encode()

    def handle(self, command: Command) -> Response:
        return Response(b"", Sw.INS_NOT_SUPPORTED)


class VitaleApplet(_SelectableApplet):
    """The VITALE application as ``agent/domain/vitale.py`` lays it out: EF 2001 points to a beneficiaries file
    and a card file (their EF numbers and names are the emulator's own: no public source gives a real card's).
    Without a given serial number the card gets one derived from its content, so two different virtual cards
    never share it."""

    aid = VITALE_AID
    atr = make_atr(b"RLS-VITALE")
    EF_BENEFICIARIES, EF_CARD = 0x2002, 0x2004

    def __init__(self, beneficiaries: list[VitaleBeneficiary], *, serial: str = "",
                 validity_start: str = "2020-01-01") -> None:
        super().__init__()
        self.file = encode_beneficiaries(beneficiaries)
        self.serial = serial or str(int.from_bytes(hashlib.sha256(self.file).digest()[:4], "big") % 10**9).zfill(9)
        self.files = {
            EF_POINTERS: encode_pointer_map([PointedFile("BENEFIC", VITALE_AID, self.EF_BENEFICIARIES),
                                             PointedFile("CARTE", VITALE_AID, self.EF_CARD)]),
            self.EF_BENEFICIARIES: self.file,
            self.EF_CARD: encode_card_block(self.serial, validity_start),
        }
        self.current: bytes | None = None

    def reset(self) -> None:
        super().reset()
        self.current = None

    def handle(self, command: Command) -> Response:
        if not self.selected:
            return Response(b"", Sw.CONDITIONS_NOT_SATISFIED)
        if command.ins == 0xA4 and command.p1 in (0x00, 0x02):
            fid = int.from_bytes(command.data, "big") if len(command.data) == 2 else -1
            self.current = self.files.get(fid)
            return Response(b"", Sw.OK if self.current is not None else Sw.FILE_NOT_FOUND)
        if command.ins != 0xB0:
            return Response(b"", Sw.INS_NOT_SUPPORTED)
        if self.current is None:
            return Response(b"", Sw.CONDITIONS_NOT_SATISFIED)
        offset = (command.p1 << 8) | command.p2
        if offset > len(self.current):
            return Response(b"", Sw.WRONG_P1P2)
        want = command.le or 256
        chunk = self.current[offset : offset + want]
        return Response(chunk, Sw.OK if len(chunk) == want else Sw.END_OF_FILE)


class CpsApplet(_SelectableApplet):
    """A CPS3 as far as Relais talks to it over PC/SC: its PKCS#15 application answers SELECT. Keys and PIN are
    the PKCS#11 module's business (SoftHSM2 in tests, the software token in the demo)."""

    aid = CPS3_AID
    atr = make_atr(b"RLS-CPS3")


class VpcdCard:
    """One applet plugged into a vpcd reader slot, served from its own thread until ``pull``."""

    def __init__(self, applet: Applet, *, slot: int = 0, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.applet = applet
        self.port = (vpcd_port() if port is None else port) + slot
        self.reader = VPCD_READERS[slot]
        self._host = host
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.powered = False

    def insert(self, timeout: float = 5.0) -> VpcdCard:
        sock = socket.create_connection((self._host, self.port), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), name=f"vpcd-{self.port}", daemon=True)
        self._thread.start()
        return self

    def pull(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> VpcdCard:
        return self.insert()

    def __exit__(self, *exc: object) -> None:
        self.pull()

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                header = _recv_exact(sock, 2)
                if header is None:
                    return
                (size,) = struct.unpack(">H", header)
                payload = _recv_exact(sock, size)
                if payload is None:
                    return
                answer = self._answer(payload)
                if answer is not None:
                    sock.sendall(struct.pack(">H", len(answer)) + answer)

    def _answer(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            control = payload[0]
            if control == 0:
                self.powered = False
                self.applet.reset()
            elif control in (1, 2):
                self.powered = True
                self.applet.reset()
            elif control == 4:
                return self.applet.atr
            return None
        return self.applet.process(payload)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
        # vpcd writes a frame's length and payload separately: with Nagle on its side and delayed ACKs on ours,
        # each APDU would wait ~40 ms for an ACK. Acknowledge at once (Linux; a no-op elsewhere).
        if _QUICKACK is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    return bytes(data)


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
