"""Reading the carte Vitale's beneficiaries.

``read_beneficiaries(transmit)`` is the PC/SC path: SELECT the VITALE application, READ BINARY in chunks, parse
the TLV records (layout and its known limits in ``agent/domain/vitale.py``). It runs for every card the service
sees inserted; a card that does not answer the SELECT is simply not a Vitale.

Production integration point: a certified LGC reads the Vitale through the GIE SESAM-Vitale components (the
"API de lecture" of the SESAM-Vitale 1.40 / SRT stack, which needs the PC/SC reader to be released to it) or the
ApCV (application carte Vitale, read through the same API with a QR/NFC handshake). Such a source plugs in as a
``VitaleSource``: anything that yields the beneficiaries of the card in a reader. The service takes one and falls back
to the APDU reader; wiring a SESAM-Vitale source needs the GIE's licensed libraries, which are not part of Relais.
"""

from __future__ import annotations

from typing import Protocol

from agent.cards.cps import Transmit
from agent.domain.apdu import Sw, read_binary, select_aid
from agent.domain.vitale import MAX_FILE_BYTES, VITALE_AID, VitaleBeneficiary, VitaleFormatError, parse_beneficiaries
from agent.errors import Unavailable

CHUNK = 0xE0


class VitaleSource(Protocol):
    """Where beneficiaries come from on a workstation (APDUs over PC/SC, SESAM-Vitale API, ApCV)."""

    def read(self, reader: str, transmit: Transmit) -> list[VitaleBeneficiary]: ...


def is_vitale(transmit: Transmit) -> bool:
    return transmit(select_aid(VITALE_AID)).ok


def read_file(transmit: Transmit) -> bytes:
    """The selected EF, read until a short chunk, end of file, or the size cap."""
    data = bytearray()
    while len(data) < MAX_FILE_BYTES:
        response = transmit(read_binary(len(data), CHUNK))
        if response.sw in (Sw.WRONG_P1P2,) and data:
            break  # offset past the end
        if response.sw not in (Sw.OK, Sw.END_OF_FILE):
            raise Unavailable("La carte Vitale n'a pas pu être lue : retirez-la et réinsérez-la.",
                              code="vitale_unreadable")
        data += response.data
        if len(response.data) < CHUNK or response.sw == Sw.END_OF_FILE:
            break
    return bytes(data)


def read_beneficiaries(transmit: Transmit) -> list[VitaleBeneficiary]:
    """The beneficiaries of the Vitale card behind ``transmit`` (its application must be selectable)."""
    if not is_vitale(transmit):
        raise Unavailable("Cette carte n'est pas une carte Vitale.", code="vitale_absent")
    try:
        return parse_beneficiaries(read_file(transmit))
    except VitaleFormatError as exc:
        raise Unavailable("La carte Vitale a un contenu illisible : essayez de la relire ou utilisez la saisie "
                          "des traits d'identité.", code="vitale_unreadable") from exc


class ApduVitaleSource:
    """The PC/SC source: our own APDUs over the reader's transaction."""

    def read(self, reader: str, transmit: Transmit) -> list[VitaleBeneficiary]:
        return read_beneficiaries(transmit)
