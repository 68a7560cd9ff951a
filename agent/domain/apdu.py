"""ISO 7816-4 command/response APDUs and BER-TLV, as pure functions: no reader, no socket.

The card code (``agent/cards``) and the card emulators (``relais_sandbox``) speak through these, so the same
bytes are tested on both sides without hardware. Status words become domain errors in the card sessions that
know what they mean, never in the callers.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass


@enum.unique
class Sw(enum.IntEnum):
    OK = 0x9000
    END_OF_FILE = 0x6282
    WRONG_LENGTH = 0x6700
    SECURITY_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    CONDITIONS_NOT_SATISFIED = 0x6985
    WRONG_DATA = 0x6A80
    FILE_NOT_FOUND = 0x6A82
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00


@dataclass(frozen=True, slots=True)
class Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def encode(self) -> bytes:
        """Short APDU encoding (Lc and Le up to 255; Le 256 is encoded as 00)."""
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            if len(self.data) > 255:
                raise ValueError("command data over 255 bytes needs chaining")
            out += bytes([len(self.data)]) + self.data
        if self.le is not None:
            out += bytes([self.le & 0xFF])
        return out

    @classmethod
    def decode(cls, raw: bytes) -> Command:
        if len(raw) < 4:
            raise ValueError("APDU shorter than its header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or 256)
        lc = body[0]
        data = body[1 : 1 + lc]
        if len(data) != lc:
            raise ValueError("APDU shorter than its Lc")
        rest = body[1 + lc :]
        le = (rest[0] or 256) if rest else None
        return cls(cla, ins, p1, p2, data, le)


@dataclass(frozen=True, slots=True)
class Response:
    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == Sw.OK

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def decode(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise ValueError("response APDU without a status word")
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))


def sw_name(sw: int) -> str:
    try:
        return f"SW={sw:04X} ({Sw(sw).name})"
    except ValueError:
        return f"SW={sw:04X}"


def select_aid(aid: bytes) -> Command:
    """SELECT by DF name (AID), first occurrence, FCI not requested."""
    return Command(0x00, 0xA4, 0x04, 0x0C, aid)


def select_file(fid: int) -> Command:
    """SELECT an elementary file by its identifier under the current DF, FCI not requested."""
    return Command(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big"))


def read_binary(offset: int, length: int) -> Command:
    if not 0 <= offset <= 0x7FFF:
        raise ValueError("READ BINARY offset out of range")
    return Command(0x00, 0xB0, offset >> 8, offset & 0xFF, le=length)


# --- BER-TLV --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes

    @property
    def constructed(self) -> bool:
        first = self.tag.to_bytes((self.tag.bit_length() + 7) // 8 or 1, "big")[0]
        return bool(first & 0x20)

    def children(self) -> list[Tlv]:
        return list(parse_tlv(self.value))


def parse_tlv(data: bytes) -> Iterator[Tlv]:
    """BER-TLV objects at one level; raises ValueError on truncated or malformed input (cards lie too)."""
    i, n = 0, len(data)
    while i < n:
        if data[i] in (0x00, 0xFF):  # padding between objects
            i += 1
            continue
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:  # multi-byte tag
            while True:
                if i >= n:
                    raise ValueError("truncated TLV tag")
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
                if tag > 0xFFFFFF:
                    raise ValueError("TLV tag too long")
        if i >= n:
            raise ValueError("truncated TLV length")
        length = data[i]
        i += 1
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 3 or i + count > n:
                raise ValueError("bad TLV length")
            length = int.from_bytes(data[i : i + count], "big")
            i += count
        if i + length > n:
            raise ValueError("TLV value runs past the end")
        yield Tlv(tag, data[i : i + length])
        i += length


def encode_tlv(tag: int, value: bytes) -> bytes:
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n <= 0xFF:
        length = bytes([0x81, n])
    elif n <= 0xFFFF:
        length = bytes([0x82]) + n.to_bytes(2, "big")
    else:
        raise ValueError("TLV value too long")
    return tag_bytes + length + value
