"""The carte Vitale: its beneficiaries, its serial number and the byte layout Relais reads, as pure code.

What public sources give (cardpeek's reverse-engineered ``vitale_2.lua``, GPL, read for this module; the GIE
SESAM-Vitale's own specification is not public):

- the application "VITALE", AID ``D250000002564954414C45``;
- in it, EF ``2001`` is a pointer map: a constructed ``E0`` holding an ``A0`` list of applications (tag ``82``:
  2-byte entry number, 2 bytes, then the application's AID) followed by one ``80`` per data file (8 characters of
  name, the 2-byte entry number of its application, the 2-byte EF identifier). A reader follows it instead of
  assuming where the data sit;
- the data files are BER-TLV: one constructed ``65`` per beneficiary holding ``90`` nationalité, ``93`` NIR,
  ``80`` nom, ``81`` prénom and ``82`` date de naissance, ASCII ``AAAAMMJJ``; a constructed ``66`` for the card,
  whose ``80`` is the date the card's validity starts (``AAAAMMJJ``).

What is NOT public and is a Relais convention (the virtual Vitale follows it; a real card may differ): inside
``65``, ``83`` rang de naissance (ASCII digits), ``84`` qualité (2 ASCII digits: ``00`` assuré, ``02`` conjoint,
``06`` enfant...), ``85`` nom de naissance; inside ``66``, ``81`` the card's serial number (the "numéro de série"
the CNDA's INSi test 1.01 quotes for card INSi 01). The protected files of a real card need a SAM and the GIE's
licensed reading API: in production the beneficiaries come from the SESAM-Vitale API or the ApCV through the
``VitaleSource`` seam (``agent/cards/vitale.py``); this layout serves the PC/SC path and the tests.

Two facts to remember when using the result: the NIR on a Vitale card is the *ouvrant droit*'s (a child on a
parent's card carries the parent's NIR), so it is never the patient's INS by itself; and birth dates may be
"lunar" (day or month 00, or over 31/12): they are kept as ``AAAA-MM-JJ`` text without calendar validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.domain.apdu import Tlv, encode_tlv, parse_tlv

VITALE_AID = bytes.fromhex("D250000002564954414C45")
EF_POINTERS = 0x2001

TAG_MAP, TAG_MAP_APPS, TAG_MAP_APP, TAG_MAP_FILE = 0xE0, 0xA0, 0x82, 0x80
TAG_BENEFICIARY = 0x65
TAG_NATIONALITY = 0x90
TAG_NIR = 0x93
TAG_NAME = 0x80
TAG_GIVEN = 0x81
TAG_BIRTH_DATE = 0x82
TAG_BIRTH_RANK = 0x83  # Relais convention
TAG_QUALITY = 0x84  # Relais convention
TAG_BIRTH_NAME = 0x85  # Relais convention
TAG_CARD = 0x66
TAG_CARD_VALIDITY = 0x80
TAG_CARD_SERIAL = 0x81  # Relais convention

MAX_FILE_BYTES = 8192
MAX_FILES = 16
_DATE = re.compile(r"^\d{8}$")
_NIR = re.compile(r"^[1-478]\d{4}(?:\d{2}|2A|2B)\d{6}(?:\d{2})?$", re.IGNORECASE)
_SERIAL = re.compile(r"^[0-9A-Za-z]{1,32}$")


@dataclass(frozen=True, slots=True)
class VitaleBeneficiary:
    """One person a carte Vitale covers. Patient data: never logged, never put in events."""

    index: int
    nir: str
    family_name: str
    given_names: list[str] = field(default_factory=list)
    birth_name: str = ""
    birth_date: str = ""  # AAAA-MM-JJ, possibly "lunar" (00 day or month)
    birth_rank: int = 1
    quality: str = "00"

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "nir": self.nir,
            "family_name": self.family_name,
            "given_names": list(self.given_names),
            "birth_name": self.birth_name,
            "birth_date": self.birth_date,
            "birth_rank": self.birth_rank,
            "quality": self.quality,
        }


@dataclass(frozen=True, slots=True)
class VitaleCard:
    """What a reading of the card gives: its serial number (to tell two cards apart), its validity start, and
    the beneficiaries in card order (``index`` is their position)."""

    beneficiaries: list[VitaleBeneficiary]
    serial: str = ""
    validity_start: str = ""  # AAAA-MM-JJ


@dataclass(frozen=True, slots=True)
class PointedFile:
    """One data file of the pointer map: its name, the AID of its application, its EF identifier."""

    name: str
    aid: bytes
    ef: int


class VitaleFormatError(ValueError):
    """The card's bytes do not follow the layout (truncated, missing NIR, pointer map unreadable...)."""


def _text(value: bytes) -> str:
    return value.decode("latin-1").strip()


def card_date_to_iso(value: str) -> str:
    """``AAAAMMJJ`` (the card's order, as cardpeek reads tag 82) to ``AAAA-MM-JJ``, lunar dates kept."""
    if not _DATE.match(value):
        raise VitaleFormatError("date is not AAAAMMJJ")
    return f"{value[0:4]}-{value[4:6]}-{value[6:8]}"


def iso_to_card_date(value: str) -> str:
    parts = value.split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError("date is not AAAA-MM-JJ")
    return f"{parts[0]:0>4}{parts[1]:0>2}{parts[2]:0>2}"


# --- the pointer map (EF 2001) ------------------------------------------------------------------------------

def parse_pointer_map(data: bytes) -> list[PointedFile]:
    """The data files EF 2001 lists, with the AID of the application each belongs to."""
    try:
        outer = [t for t in parse_tlv(data) if t.tag == TAG_MAP]
        if len(outer) != 1:
            raise VitaleFormatError("pointer map without its E0 object")
        apps: dict[bytes, bytes] = {}
        files: list[PointedFile] = []
        for item in outer[0].children():
            if item.tag == TAG_MAP_APPS:
                for app in item.children():
                    if app.tag == TAG_MAP_APP and len(app.value) > 4:
                        apps[app.value[0:2]] = app.value[4:]
            elif item.tag == TAG_MAP_FILE and len(item.value) >= 12:
                entry = item.value[8:10]
                if entry not in apps:
                    raise VitaleFormatError("file pointer to an unlisted application")
                files.append(PointedFile(_text(item.value[0:8]), apps[entry],
                                         int.from_bytes(item.value[10:12], "big")))
    except VitaleFormatError:
        raise
    except ValueError as exc:
        raise VitaleFormatError(str(exc)) from exc
    if not files or len(files) > MAX_FILES:
        raise VitaleFormatError("pointer map without data files")
    return files


def encode_pointer_map(files: list[PointedFile]) -> bytes:
    entries: dict[bytes, bytes] = {}
    for pointed in files:
        entries.setdefault(pointed.aid, len(entries).to_bytes(2, "big"))
    apps = b"".join(encode_tlv(TAG_MAP_APP, number + b"\x00\x00" + aid) for aid, number in entries.items())
    pointers = b"".join(
        encode_tlv(TAG_MAP_FILE, pointed.name.encode("latin-1")[:8].ljust(8) + entries[pointed.aid]
                   + pointed.ef.to_bytes(2, "big"))
        for pointed in files)
    return encode_tlv(TAG_MAP, encode_tlv(TAG_MAP_APPS, apps) + pointers)


# --- the data files -----------------------------------------------------------------------------------------

def parse_beneficiary(record: Tlv, index: int) -> VitaleBeneficiary:
    nir = name = birth_name = date = quality = ""
    rank = 1
    given: list[str] = []
    for item in record.children():
        if item.tag == TAG_NIR:
            nir = _text(item.value).replace(" ", "")
        elif item.tag == TAG_NAME:
            name = _text(item.value)
        elif item.tag == TAG_GIVEN:
            # One tag per given name; a single tag with spaces is split the same way.
            given.extend(part for part in _text(item.value).split(" ") if part)
        elif item.tag == TAG_BIRTH_DATE:
            date = card_date_to_iso(_text(item.value))
        elif item.tag == TAG_BIRTH_RANK:
            text = _text(item.value)
            if not text.isdigit():
                raise VitaleFormatError("birth rank is not a number")
            rank = int(text)
        elif item.tag == TAG_QUALITY:
            quality = _text(item.value)
        elif item.tag == TAG_BIRTH_NAME:
            birth_name = _text(item.value)
    if not _NIR.match(nir):
        raise VitaleFormatError("beneficiary without a valid NIR")
    if not name:
        raise VitaleFormatError("beneficiary without a name")
    return VitaleBeneficiary(index=index, nir=nir.upper(), family_name=name, given_names=given,
                             birth_name=birth_name or name, birth_date=date, birth_rank=rank,
                             quality=quality or "00")


def parse_beneficiaries(data: bytes) -> list[VitaleBeneficiary]:
    """Every beneficiary record of one data file, numbered from 0 in card order."""
    return parse_card([data]).beneficiaries


def parse_card(files: list[bytes]) -> VitaleCard:
    """The card from the contents of its data files, in pointer-map order: beneficiaries are numbered across
    files in that order; the card block (``66``) gives the serial number and the validity start."""
    beneficiaries: list[VitaleBeneficiary] = []
    serial = validity = ""
    try:
        for data in files:
            for item in parse_tlv(data):
                if item.tag == TAG_BENEFICIARY:
                    beneficiaries.append(parse_beneficiary(item, len(beneficiaries)))
                elif item.tag == TAG_CARD:
                    for part in item.children():
                        if part.tag == TAG_CARD_VALIDITY:
                            validity = card_date_to_iso(_text(part.value))
                        elif part.tag == TAG_CARD_SERIAL:
                            serial = _text(part.value)
    except VitaleFormatError:
        raise
    except ValueError as exc:
        raise VitaleFormatError(str(exc)) from exc
    if serial and not _SERIAL.match(serial):
        raise VitaleFormatError("card serial number is not alphanumeric")
    return VitaleCard(beneficiaries, serial, validity)


def encode_beneficiaries(beneficiaries: list[VitaleBeneficiary]) -> bytes:
    """One data file holding these beneficiaries (emulators and tests)."""
    out = bytearray()
    for b in beneficiaries:
        inner = encode_tlv(TAG_NIR, b.nir.encode("latin-1"))
        inner += encode_tlv(TAG_NAME, b.family_name.encode("latin-1"))
        for given in b.given_names:
            inner += encode_tlv(TAG_GIVEN, given.encode("latin-1"))
        if b.birth_date:
            inner += encode_tlv(TAG_BIRTH_DATE, iso_to_card_date(b.birth_date).encode())
        inner += encode_tlv(TAG_BIRTH_RANK, str(b.birth_rank).encode())
        inner += encode_tlv(TAG_QUALITY, b.quality.encode())
        if b.birth_name:
            inner += encode_tlv(TAG_BIRTH_NAME, b.birth_name.encode("latin-1"))
        out += encode_tlv(TAG_BENEFICIARY, inner)
    if len(out) > MAX_FILE_BYTES:
        raise ValueError("too many beneficiaries for one card file")
    return bytes(out)


def encode_card_block(serial: str, validity_start: str) -> bytes:
    inner = b""
    if validity_start:
        inner += encode_tlv(TAG_CARD_VALIDITY, iso_to_card_date(validity_start).encode())
    if serial:
        inner += encode_tlv(TAG_CARD_SERIAL, serial.encode("ascii"))
    return encode_tlv(TAG_CARD, inner)
