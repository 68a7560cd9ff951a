"""The CPS (Carte de Professionnel de Santé): who holds it, and how a CPS is recognised, as pure code.

The holder comes from the card's certificates (IGC-Santé) and, when the PKCS#11 module exposes them, the CPS data
objects. In the certificate subject: the national identifier ``8`` + RPPS in ``serialNumber`` (or the CN), the
names in ``surname`` / ``givenName``, the profession code (TRE_G15, e.g. ``10`` médecin) in ``title`` and the
specialty (TRE_R38 savoir-faire, e.g. ``SM54`` médecine générale) in ``organizationalUnitName`` when it has that
shape. Real IGC-Santé subjects vary by generation: what cannot be read stays empty rather than guessed.

Over PC/SC a CPS3 is recognised by SELECT of its PKCS#15 application (AIDs as used by the ANS's OpenSC driver:
contact ``E828BD080F8025000001FF0010``, contactless ``...0020``); a CPS4 signs through the same PKCS#11 module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

CPS3_AID = bytes.fromhex("E828BD080F8025000001FF0010")
CPS3_CONTACTLESS_AID = bytes.fromhex("E828BD080F8025000001FF0020")

OID_SERIAL_NUMBER = "2.5.4.5"
OID_COMMON_NAME = "2.5.4.3"
OID_SURNAME = "2.5.4.4"
OID_GIVEN_NAME = "2.5.4.42"
OID_TITLE = "2.5.4.12"
OID_ORG_UNIT = "2.5.4.11"

_NATIONAL_ID = re.compile(r"^8(\d{11})$")
_RPPS = re.compile(r"^\d{11}$")
_SPECIALTY = re.compile(r"^(?:SM|SC|CEX|PAC|FON|DEC)\d{1,3}$")


@dataclass(frozen=True, slots=True)
class CpsHolder:
    """The doctor the inserted CPS identifies. ``national_id`` is what CDA and XDS carry (``8`` + RPPS)."""

    rpps: str
    family_name: str
    given_name: str
    profession: str = ""
    specialty: str = ""
    logged_in: bool = False
    reader: str = ""

    @property
    def national_id(self) -> str:
        return f"8{self.rpps}" if self.rpps else ""

    def with_state(self, *, logged_in: bool, reader: str) -> CpsHolder:
        return replace(self, logged_in=logged_in, reader=reader)

    def as_dict(self) -> dict[str, str]:
        return {"rpps": self.rpps, "family_name": self.family_name, "given_name": self.given_name,
                "profession": self.profession, "specialty": self.specialty}


def luhn_ok(digits: str) -> bool:
    """The RPPS ends with a Luhn key."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def rpps_from(value: str) -> str:
    """The RPPS in a subject value: ``8`` + 11 digits (national id) or 11 bare digits; else empty."""
    value = value.strip()
    match = _NATIONAL_ID.match(value)
    if match:
        return match.group(1)
    if _RPPS.match(value):
        return value
    # CNs like "801234567897/123" (identifier / card serial) on some generations.
    head = value.split("/", 1)[0].strip()
    match = _NATIONAL_ID.match(head)
    return match.group(1) if match else ""


def holder_from_subject(attributes: Iterable[tuple[str, str]]) -> CpsHolder:
    """A holder from (OID, value) pairs of a certificate subject."""
    values: dict[str, list[str]] = {}
    for oid, value in attributes:
        values.setdefault(oid, []).append(value)

    def first(oid: str) -> str:
        return values.get(oid, [""])[0].strip()

    rpps = ""
    for oid in (OID_SERIAL_NUMBER, OID_COMMON_NAME):
        for value in values.get(oid, []):
            rpps = rpps or rpps_from(value)
    specialty = next((v.strip() for v in values.get(OID_ORG_UNIT, []) if _SPECIALTY.match(v.strip())), "")
    return CpsHolder(rpps=rpps, family_name=first(OID_SURNAME), given_name=first(OID_GIVEN_NAME),
                     profession=first(OID_TITLE), specialty=specialty)
