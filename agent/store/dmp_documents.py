"""The visibility a DMP document was last given from this workstation by TD3.3a/b (a metadata update keeps the
document's uniqueId), so that a replacement (TD2.1b) compares with what the patient now sees, not only with what
the document was first sent with (MEMENTO "MASQUAGE", EX_3.3-1040/1045). Rows name a document uniqueId and three
flags: no patient data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

FLAGS = ("masked_to_ps", "invisible_to_patient", "invisible_to_legal_reps")


def record_visibility(conn: sqlite3.Connection, unique_id: str, flags: Mapping[str, bool]) -> None:
    conn.execute("INSERT INTO dmp_visibility(unique_id, masked_to_ps, invisible_to_patient, invisible_to_legal_reps) "
                 "VALUES (?, ?, ?, ?) ON CONFLICT(unique_id) DO UPDATE SET masked_to_ps = excluded.masked_to_ps, "
                 "invisible_to_patient = excluded.invisible_to_patient, "
                 "invisible_to_legal_reps = excluded.invisible_to_legal_reps",
                 (unique_id, *(int(bool(flags.get(f, False))) for f in FLAGS)))


def last_visibility(conn: sqlite3.Connection, unique_id: str) -> dict[str, bool] | None:
    """The flags TD3.3a/b last set here for this document, or None when it was never changed here."""
    row = conn.execute("SELECT masked_to_ps, invisible_to_patient, invisible_to_legal_reps FROM dmp_visibility "
                       "WHERE unique_id = ?", (unique_id,)).fetchone()
    return dict(zip(FLAGS, (bool(v) for v in row), strict=True)) if row is not None else None
