"""The carte Vitale: its beneficiaries and the byte layout Relais reads, as pure code.

What is public and used here: the application "VITALE" (AID ``D250000002564954414C45``) and BER-TLV records,
one constructed tag ``65`` per beneficiary, holding ``93`` NIR, ``80`` nom (usual name), ``81`` prénom (one per
given name, in order) and ``82`` date de naissance (``JJMMAAAA``, ASCII).

What is NOT public and is a Relais convention (the emulators follow it; a real card may differ): ``83`` rang de
naissance (ASCII digit), ``84`` qualité du bénéficiaire (2 ASCII digits: ``00`` assuré, ``01`` ascendant,
descendant, collatéral..., ``02`` conjoint, ``06`` enfant...), ``85`` nom de naissance; the records are read from
the selected application's current EF with READ BINARY in chunks until a short answer or end of file. The
protected files of the real card (which need a SAM, the "lecteur homologué" and the GIE SESAM-Vitale API) are not
read. In production, the beneficiaries come from the SESAM-Vitale reading API or the ApCV (app carte Vitale) through
the ``VitaleReader`` seam (``agent/cards/vitale.py``); this layout serves the PC/SC path and the tests.

Two facts to remember when using the result: the NIR on a Vitale card is the *ouvrant droit*'s (a child on a
parent's card carries the parent's NIR), so it is never the patient's INS by itself: the INSi search by carte
Vitale uses the traits; and birth dates may be "lunar" (day or month 00, or over 31/12, for people whose exact
date is unknown): they are kept as ``AAAA-MM-JJ`` text without calendar validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.domain.apdu import Tlv, encode_tlv, parse_tlv

VITALE_AID = bytes.fromhex("D250000002564954414C45")

TAG_BENEFICIARY = 0x65
TAG_NIR = 0x93
TAG_NAME = 0x80
TAG_GIVEN = 0x81
TAG_BIRTH_DATE = 0x82
TAG_BIRTH_RANK = 0x83  # Relais convention
TAG_QUALITY = 0x84  # Relais convention
TAG_BIRTH_NAME = 0x85  # Relais convention

MAX_FILE_BYTES = 8192
_DATE = re.compile(r"^\d{8}$")
_NIR = re.compile(r"^[1-478]\d{4}(?:\d{2}|2A|2B)\d{6}(?:\d{2})?$", re.IGNORECASE)


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


class VitaleFormatError(ValueError):
    """The card's bytes do not follow the layout (truncated, missing NIR...)."""


def _text(value: bytes) -> str:
    return value.decode("latin-1").strip()


def card_date_to_iso(value: str) -> str:
    """``JJMMAAAA`` to ``AAAA-MM-JJ``, keeping lunar dates as they are."""
    if not _DATE.match(value):
        raise VitaleFormatError("birth date is not JJMMAAAA")
    return f"{value[4:8]}-{value[2:4]}-{value[0:2]}"


def iso_to_card_date(value: str) -> str:
    parts = value.split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError("birth date is not AAAA-MM-JJ")
    return f"{parts[2]:0>2}{parts[1]:0>2}{parts[0]:0>4}"


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
    """Every beneficiary record of the card file, numbered from 0 in card order."""
    try:
        records = [t for t in parse_tlv(data) if t.tag == TAG_BENEFICIARY]
        return [parse_beneficiary(record, i) for i, record in enumerate(records)]
    except VitaleFormatError:
        raise
    except ValueError as exc:
        raise VitaleFormatError(str(exc)) from exc


def encode_beneficiaries(beneficiaries: list[VitaleBeneficiary]) -> bytes:
    """The card file for these beneficiaries (emulators and tests)."""
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
