"""A minimal XLSX writer (one sheet of text cells), for the results the CNDA reads in Excel.

Office Open XML SpreadsheetML with inline strings only: the five parts a spreadsheet needs, written with the
standard library (no dependency for one table).
"""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '</Types>')
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>')
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/></Relationships>')
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _column(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def _cell(row: int, col: int, value: str) -> str:
    text = escape(_ILLEGAL.sub("", value))
    return f'<c r="{_column(col)}{row}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def write_xlsx(path: Path, sheet: str, rows: Sequence[Sequence[str]]) -> None:
    """Write ``rows`` (the first is the header) as the one sheet ``sheet`` of a workbook at ``path``."""
    body = "".join(
        f'<row r="{r}">' + "".join(_cell(r, c, str(v)) for c, v in enumerate(values)) + "</row>"
        for r, values in enumerate(rows, start=1))
    worksheet = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="{MAIN}">'
                 f"<sheetData>{body}</sheetData></worksheet>")
    workbook = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="{MAIN}" '
                'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
                f'<sheets><sheet name="{escape(sheet[:31])}" sheetId="1" r:id="rId1"/></sheets></workbook>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        archive.writestr("xl/workbook.xml", workbook)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        archive.writestr("xl/worksheets/sheet1.xml", worksheet)


# The test books' results columns (Phase 2 - Tests), the same for the DMP and the INSi cases.
RESULT_COLUMNS = ["Transaction", "Code test", "Libellé cas de test", "Résultat attendu en retour", "Code retour",
                  "Commentaire éditeur", "Résultat"]


def verdict(played: bool, passed: bool) -> str:
    """The "Résultat" column: OK, KO, or "Non joué" (a case the LGC's screens must show)."""
    return ("OK" if passed else "KO") if played else "Non joué"


def write_results(path: Path, sheet: str, rows: Sequence[Sequence[str]]) -> None:
    """The results table in the book's columns: ``path`` as CSV (« ; ») and the same as XLSX beside it."""
    table = [RESULT_COLUMNS, *rows]
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(table)
    write_xlsx(path.with_suffix(".xlsx"), sheet, table)
