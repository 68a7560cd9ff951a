"""The project's vaccine table: CIP13 (from the box's GTIN) -> CIS code, name and ATC class.

The table ships in ``agent/cda/data/vaccines.csv`` (one row per pack, from the BDPM: CIP13, CIS, the CIS
name, ATC and its label, the pack label). A practice can point ``cda.vaccines_file`` at a fuller extract with
the same columns. A pack missing from the table still makes a valid note: the CIP code is kept and the LGC may
send ``data.vaccine`` to name it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Vaccine:
    cip13: str
    cis: str
    name: str
    atc: str
    atc_display: str
    pack_display: str


class VaccineTable:
    def __init__(self, rows: dict[str, Vaccine]) -> None:
        self._rows = rows

    @classmethod
    def load(cls, path: Path | None = None) -> VaccineTable:
        if path is None:
            text = resources.files("agent.cda").joinpath("data/vaccines.csv").read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        rows = {}
        for row in csv.DictReader(io.StringIO(text)):
            vaccine = Vaccine(row["cip13"], row["cis"], row["name"], row["atc"], row["atc_display"],
                              row["pack_display"])
            rows[vaccine.cip13] = vaccine
        return cls(rows)

    def by_cip13(self, cip13: str) -> Vaccine | None:
        return self._rows.get(cip13)

    def __len__(self) -> int:
        return len(self._rows)
