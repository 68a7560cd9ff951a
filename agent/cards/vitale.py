"""Reading the carte Vitale: the one seam for every way a workstation gets the card's beneficiaries.

``VitaleSource.read(reader, transmit) -> VitaleCard`` is that seam. ``ApduVitaleSource`` is the PC/SC path and
follows the public layout (``agent/domain/vitale.py``): SELECT the VITALE application, SELECT and read EF 2001
(the pointer map), then SELECT and read each data file it points to, READ BINARY in chunks; the beneficiaries
(tag 65) and the card block (tag 66: validity start, serial number) come out of those files. A card that does not
answer the SELECT is simply not a Vitale. It runs for every card the service sees inserted.

Production integration point: a certified LGC reads the Vitale through the GIE SESAM-Vitale components (the "API
de lecture" of the SESAM-Vitale 1.40 / SRT stack, which needs the PC/SC reader to be released to it) or the ApCV
(application carte Vitale, read through the same API after a QR/NFC handshake). Such a source implements
``VitaleSource`` and returns a ``VitaleCard``: the serial number the API reports (Relais refuses an INSi search
when the card in the reader is not the one the beneficiary was selected on, CNDA INSi 1.03), and the
beneficiaries in the API's order. Wiring one needs the GIE's licensed libraries, which are not part of Relais;
``CardService(vitale_source=...)`` takes it and the rest of the agent does not change.
"""

from __future__ import annotations

from typing import Protocol

from agent.cards.cps import Transmit
from agent.domain.apdu import Sw, read_binary, select_aid, select_file
from agent.domain.vitale import (
    EF_POINTERS,
    MAX_FILE_BYTES,
    VITALE_AID,
    VitaleCard,
    VitaleFormatError,
    parse_card,
    parse_pointer_map,
)
from agent.errors import Unavailable

CHUNK = 0xE0


class VitaleSource(Protocol):
    """Where a card's content comes from on a workstation (APDUs over PC/SC, SESAM-Vitale API, ApCV)."""

    def read(self, reader: str, transmit: Transmit) -> VitaleCard: ...


def is_vitale(transmit: Transmit) -> bool:
    return transmit(select_aid(VITALE_AID)).ok


def _unreadable() -> Unavailable:
    return Unavailable("La carte Vitale n'a pas pu être lue : retirez-la et réinsérez-la.", code="vitale_unreadable")


def read_file(transmit: Transmit) -> bytes:
    """The selected EF, read until a short chunk, end of file, or the size cap."""
    data = bytearray()
    while len(data) < MAX_FILE_BYTES:
        response = transmit(read_binary(len(data), CHUNK))
        if response.sw in (Sw.WRONG_P1P2,) and data:
            break  # offset past the end
        if response.sw not in (Sw.OK, Sw.END_OF_FILE):
            raise _unreadable()
        data += response.data
        if len(response.data) < CHUNK or response.sw == Sw.END_OF_FILE:
            break
    return bytes(data)


def _read_ef(transmit: Transmit, ef: int) -> bytes:
    if not transmit(select_file(ef)).ok:
        raise VitaleFormatError(f"EF {ef:04X} cannot be selected")
    return read_file(transmit)


def read_card(transmit: Transmit) -> VitaleCard:
    """The card behind ``transmit``: the pointer map first, then every data file of the VITALE application."""
    if not is_vitale(transmit):
        raise Unavailable("Cette carte n'est pas une carte Vitale.", code="vitale_absent")
    try:
        pointed = [p for p in parse_pointer_map(_read_ef(transmit, EF_POINTERS)) if p.aid == VITALE_AID]
        contents: list[bytes] = []
        for entry in pointed:
            contents.append(_read_ef(transmit, entry.ef))
        return parse_card(contents)
    except VitaleFormatError as exc:
        raise Unavailable("La carte Vitale a un contenu illisible : essayez de la relire ou utilisez la saisie "
                          "des traits d'identité.", code="vitale_unreadable") from exc


class ApduVitaleSource:
    """The PC/SC source: our own APDUs over the reader's transaction."""

    def read(self, reader: str, transmit: Transmit) -> VitaleCard:
        return read_card(transmit)
