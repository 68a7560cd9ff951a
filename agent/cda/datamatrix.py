"""The vaccine box's GS1 DataMatrix: GTIN (AI 01), expiry (17), lot (10), serial (21), and the CIP13.

The only biip importer. A scanner gives the raw string, with or without the ``]d2`` symbology prefix and with
ASCII 29 group separators (some keyboard-wedge scanners send them as a visible ``<GS>`` or ``\\x1d`` text); a
doctor may type the human-readable form ``(01)...(17)...(10)...``. A wrong check digit is a clear error, never
a silently wrong vaccine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from agent.errors import InvalidInput

GS = "\x1d"
FIELD = "data.datamatrix"


@dataclass(frozen=True, slots=True)
class VaccinePack:
    gtin: str
    cip13: str | None  # French packs: the GTIN-14 "0340..." without its leading 0
    expiry: date | None
    lot: str | None
    serial: str | None


def _normalise(raw: str) -> str:
    text = raw.strip()
    for visible in ("<GS>", "\\x1d", "\\u001d", "{GS}"):
        text = text.replace(visible, GS)
    return text


def parse_datamatrix(raw: str) -> VaccinePack:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput.field(FIELD, "Code DataMatrix vide.")
    if len(raw) > 512:
        raise InvalidInput.field(FIELD, "Code DataMatrix trop long.")
    from biip import ParseError
    from biip.gs1_messages import GS1Message

    text = _normalise(raw)
    try:
        if text.startswith("("):
            message = GS1Message.parse_hri(text)
        else:
            if text.startswith("]d2") or text.startswith("]C1") or text.startswith("]Q3"):
                text = text[3:]
            message = GS1Message.parse(text)
    except ParseError as exc:
        raise InvalidInput.field(FIELD, f"Code DataMatrix illisible : {exc}", code="datamatrix_invalid") from exc
    values: dict[str, str] = {}
    expiry: date | None = None
    for element in message.element_strings:
        ai = element.ai.ai
        if ai == "01" and element.gtin_error:
            raise InvalidInput.field(
                FIELD, "Clé de contrôle du GTIN fausse : rescannez la boîte ou saisissez le code à la main.",
                code="datamatrix_invalid",
            )
        values[ai] = element.value
        if ai == "17":
            expiry = element.date
    gtin = values.get("01")
    if not gtin:
        raise InvalidInput.field(FIELD, "Le DataMatrix ne contient pas de GTIN (AI 01).", code="datamatrix_invalid")
    cip13 = gtin[1:] if gtin.startswith("03400") else None
    return VaccinePack(gtin, cip13, expiry, values.get("10"), values.get("21"))
