"""Where an INS came from: the record of every INS INSi returned as the active one (CR 00).

Only INS obtained through the INSi téléservice may be used to reach a DMP (CNDA DMP test book, EX_GEN-1530): a NIR
read from a carte Vitale never is, and a NIA never reaches a DMP. ``record_insi`` is called by the INSi routes on
every CR 00; ``insi_oid`` answers "was this INS obtained through INSi, and with which OID?" for the DMP's checks.
Rows name the INS, the OID, the operation (search by traits, by carte Vitale, verification), when, and who called
(RPPS or structure, workstation): never a name or a trait. Append-only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

OPERATIONS = frozenset({"search_traits", "search_vitale", "verify"})


@dataclass(frozen=True, slots=True)
class InsProvenance:
    ins: str
    oid: str
    obtained_at: str
    operation: str  # search_traits, search_vitale, verify
    rpps: str | None
    structure: str | None
    workstation: str

    def as_dict(self) -> dict[str, str | None]:
        return {"ins": self.ins, "oid": self.oid, "obtained_at": self.obtained_at, "operation": self.operation,
                "rpps": self.rpps, "structure": self.structure, "workstation": self.workstation}


def record_insi(conn: sqlite3.Connection, row: InsProvenance) -> None:
    if row.operation not in OPERATIONS:
        raise ValueError(f"unknown INSi operation {row.operation!r}")
    conn.execute("INSERT INTO ins_provenance(ins, oid, obtained_at, operation, rpps, structure, workstation) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (row.ins, row.oid, row.obtained_at, row.operation, row.rpps, row.structure, row.workstation))


def latest_insi(conn: sqlite3.Connection, ins: str) -> InsProvenance | None:
    """The last time INSi returned this INS as the active one, or None if it never did on this workstation."""
    found = conn.execute("SELECT ins, oid, obtained_at, operation, rpps, structure, workstation FROM ins_provenance "
                         "WHERE ins = ? ORDER BY id DESC LIMIT 1", (ins,)).fetchone()
    return InsProvenance(*tuple(found)) if found is not None else None


def insi_oid(conn: sqlite3.Connection, ins: str) -> str | None:
    """The OID INSi gave with this INS, or None when the INS was not obtained through INSi."""
    found = latest_insi(conn, ins)
    return found.oid if found is not None else None
