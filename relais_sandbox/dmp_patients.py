"""The simulated DMP's patient files: who has a DMP, closed or not, and each professional's authorisation.

The CNDA test patients come from the test book's "Référentiel Patients" (read where the reference kit is, never
copied): a patient "non créé" has no DMP (TD0.2 answers NF), "fermé" a closed one with the reason the book gives,
"OK" an active one on which no professional is authorised yet (0.2-030, 0.3-010). The book's "Cas" patients get
their INS at the CNDA's initialisation, so their states (authorisation expired, blocked, treating physician) are set
by a test through ``set_authorization``, as the CNDA sets them through Web-PS. The demo patients (any other INS)
have an active DMP on which every professional is already authorised, so that the demo can consult at once.
Holds no document: that is ``dmp_registry``.
"""

from __future__ import annotations

import csv
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.dmp.hl7v3 import DmpState

CNDA_CSV = Path("cnda") / "dmp" / "Referentiel_Patients.csv"
VALID, NONE = "VALIDE", "NON_EXISTE"


@dataclass(frozen=True, slots=True)
class PatientFile:
    exists: bool
    closed_on: str = ""  # YYYYMMDD
    closure_reason: str = ""
    default_authorization: str = VALID


def _rpps(national_id: str) -> str:
    return national_id[-11:]


class DmpPatients:
    def __init__(self, files: dict[str, PatientFile] | None = None) -> None:
        self.files = dict(files or {})
        self._auth: dict[tuple[str, str], str] = {}
        self._treating: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_reference(cls, reference_dir: Path | None) -> DmpPatients:
        """The CNDA test patients with an INS, when the test book is in the reference kit."""
        files: dict[str, PatientFile] = {}
        path = reference_dir / CNDA_CSV if reference_dir is not None else None
        if path is None or not path.is_file():
            return cls(files)
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        header = next((i for i, r in enumerate(rows) if r and r[0].strip() == "ID patient"), None)
        if header is None:
            return cls(files)
        names = [c.split("\n")[0].strip() for c in rows[header]]
        col = {name: names.index(name) for name in ("Matricule INS (NIR)", "STATUT DMP DV", "Commentaire/Remarques")
               if name in names}
        if len(col) < 3:
            return cls(files)
        for row in rows[header + 1:]:
            if len(row) <= max(col.values()):
                continue
            ins, status = row[col["Matricule INS (NIR)"]].strip(), row[col["STATUT DMP DV"]].strip().lower()
            if not (len(ins) == 15 and ins.isdigit()):
                continue
            remark = row[col["Commentaire/Remarques"]]
            if status.startswith("non"):
                files[ins] = PatientFile(exists=False)
            elif status.startswith("ferm"):
                reason = remark.split(":", 1)[1].strip() if ":" in remark else remark.strip()
                # The book gives no closing date: the simulator says the DMP was closed on the book's date.
                files[ins] = PatientFile(exists=True, closed_on="20251127", closure_reason=reason,
                                         default_authorization=NONE)
            else:
                files[ins] = PatientFile(exists=True, default_authorization=NONE)
        return cls(files)

    def without_dmp(self, ins: str) -> None:
        self.files[ins] = PatientFile(exists=False)

    def file(self, ins: str) -> PatientFile:
        return self.files.get(ins, PatientFile(exists=True))

    def state(self, ins: str, national_id: str) -> DmpState:
        f = self.file(ins)
        if not f.exists:
            return DmpState(exists=False)
        key = (ins, _rpps(national_id))
        with self._lock:
            auth = self._auth.get(key, f.default_authorization)
            treating = key in self._treating
        return DmpState(exists=True, closed_on=f.closed_on, closure_reason=f.closure_reason, authorization=auth,
                        treating_physician=treating and auth == VALID)

    def authorized(self, ins: str, national_id: str) -> bool:
        return self.state(ins, national_id).authorization == VALID

    def set_authorization(self, ins: str, national_id: str, state: str, treating: bool = False) -> None:
        key = (ins, _rpps(national_id))
        with self._lock:
            self._auth[key] = state
            if treating:
                self._treating.add(key)
            else:
                self._treating.discard(key)

    def td03(self, ins: str, national_id: str, add: bool) -> tuple[bool, str]:
        """Add or remove this professional's authorisation: (accepted, the DMP's code). The refusal codes are the
        simulator's own: the DMP's error table (SEL-MP-037) is not public."""
        f = self.file(ins)
        if not f.exists or f.closed_on:
            return False, "DMPNotFound" if not f.exists else "DMPClosed"
        current = self.state(ins, national_id).authorization
        if add and current == "INTERDITE":
            return False, "DMPAccessDeniedByPatient"  # a blocked professional cannot authorise himself
        self.set_authorization(ins, national_id, VALID if add else NONE)
        return True, "DMPOk"
