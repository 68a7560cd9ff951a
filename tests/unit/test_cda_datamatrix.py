"""The vaccine box's DataMatrix as scanners and doctors actually give it."""

from __future__ import annotations

from datetime import date

import pytest

from agent.cda.datamatrix import parse_datamatrix
from agent.errors import InvalidInput

GTIN = "03400932857241"


@pytest.mark.parametrize("scan", [
    "]d2" + "01" + GTIN + "17281231" + "10ABC123" + "\x1d" + "21XYZ789",  # scanner with symbology identifier
    "01" + GTIN + "17281231" + "10ABC123" + "\x1d" + "21XYZ789",  # without the prefix
    "01" + GTIN + "17281231" + "10ABC123" + "<GS>" + "21XYZ789",  # keyboard wedge showing the separator
    "(01)" + GTIN + "(17)281231(10)ABC123(21)XYZ789",  # human-readable form typed by hand
    "  ]d201" + GTIN + "1728123110ABC123\x1d21XYZ789\n",  # trailing newline from the scanner
])
def test_every_form_gives_the_same_pack(scan: str) -> None:
    pack = parse_datamatrix(scan)
    assert pack.gtin == GTIN
    assert pack.cip13 == "3400932857241"
    assert pack.expiry == date(2028, 12, 31)
    assert pack.lot == "ABC123"
    assert pack.serial == "XYZ789"


def test_fields_in_another_order() -> None:
    pack = parse_datamatrix("21SER1\x1d" + "10L0T\x1d" + "17270630" + "01" + GTIN)
    assert (pack.gtin, pack.lot, pack.serial, pack.expiry) == (GTIN, "L0T", "SER1", date(2027, 6, 30))


def test_a_wrong_check_digit_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_datamatrix("]d20103400932857242" + "17281231" + "10ABC123")
    assert refused.value.code == "datamatrix_invalid"
    assert "Clé de contrôle du GTIN fausse" in refused.value.message
    assert refused.value.errors[0].field == "data.datamatrix"


def test_a_foreign_pack_has_no_cip() -> None:
    pack = parse_datamatrix("(01)05012345678900(10)A1")
    assert pack.gtin == "05012345678900" and pack.cip13 is None


@pytest.mark.parametrize("scan", ["", "   ", "hello", "(10)LOTONLY", "x" * 600])
def test_unreadable_scans_are_refused(scan: str) -> None:
    with pytest.raises(InvalidInput):
        parse_datamatrix(scan)
