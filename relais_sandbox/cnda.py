"""The CNDA's INSi test identities and test cards, read from the reference kit at start (never copied here).

Sources, both under the reference folder (``RELAIS_REFERENCE``, else ``../shared/reference`` beside the
repository; absent on a user's clone, where the sandbox keeps its built-in identities only):

- ``cnda/insi/``: the identities of the CNDA INSi tests as DevBox-Santé republished them: the WS_INS4 lots to
  verify (``insi_a_verifier_lot*.json``: matricule, key, system INS_NIR / INS_NIA, strict traits), test 3.01
  (``test3_01.json``: one identity with its traits) and test 1.01 (``test1_01.json``: card INSi 01, its serial
  number, the NIR of its insured person, the beneficiary's birth date and rank);
- ``cnda/dmp/Referentiel_Patients.csv``: the CNDA DMP test book's patients (Ruth NESSI, used name DE VINCI, on
  card INSi 01; the INSFAMILLEQUATRE family on card INSi 04 with its beneficiary numbers; Jeff ERENTIEL, who has
  no INS; patient 103, known by a NIA).

The lots mix the real identities with deliberately wrong pairs (a verification must fail on them: NESSI NATHALIE
with Ruth's matricule, a matricule born in 1960 for someone born in 1980...). An entry becomes an INSi identity
only when its matricule's key checks and the matricule agrees with the traits (sex digit, year and month of
birth), and only the first set of traits per matricule counts, the test book's patients first: what is left is
what the INSi test platform answers for. The OIDs are those that platform answers with in the public fixtures
(1.2.250.1.213.1.4.8 for a NIR, .9 for a NIA), not the DMP book's test OID.

Card INSi 04's serial number is not public: it is invented here (``CARD_04_SERIAL``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.domain.ins import OID_INS_NIA, OID_INS_NIR, compute_key, key_is_valid
from agent.logs import get_logger
from relais_sandbox.identities import DemoBeneficiary, TestIdentity, VirtualCard

log = get_logger("sandbox.cnda")

ENV_REFERENCE = "RELAIS_REFERENCE"
CARD_01, CARD_04 = "cnda-insi-01", "cnda-insi-04"
CARD_04_SERIAL = "900000004"  # invented: the CNDA's card INSi 04 number is not in the public material
_SYSTEMS = {"INS_NIR": OID_INS_NIR, "INS_NIA": OID_INS_NIA}


def reference_dir() -> Path | None:
    """``RELAIS_REFERENCE``, else the ``shared/reference`` folder beside the repository, if it exists."""
    env = os.environ.get(ENV_REFERENCE)
    candidate = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "reference"
    return candidate if candidate.is_dir() else None


@dataclass
class CndaSet:
    people: list[TestIdentity] = field(default_factory=list)
    cards: dict[str, VirtualCard] = field(default_factory=dict)

    def person(self, matricule: str) -> TestIdentity | None:
        return next((p for p in self.people if p.ins == matricule), None)


def _consistent(matricule: str, sex: str, birth_date: str) -> bool:
    """The matricule's sex digit, year and month agree with the traits (months 20+ mean "unknown" in a NIR)."""
    if not key_is_valid(matricule) or len(birth_date) != 10:
        return False
    if {"1": "M", "3": "M", "7": "M", "2": "F", "4": "F", "8": "F"}.get(matricule[0]) != sex:
        return False
    month = matricule[3:5]
    return matricule[1:3] == birth_date[2:4] and (month == birth_date[5:7] or int(month) > 12)


@dataclass(frozen=True, slots=True)
class _Entry:
    matricule: str
    oid: str
    birth_name: str
    given_names: tuple[str, ...]
    sex: str
    birth_date: str
    birth_place: str
    used_name: str = ""
    rank: int = 1
    card: str = ""  # "carte 04 / Bénéficiaire 5" in the test book
    nia: bool = False


def _lot_entries(folder: Path) -> list[_Entry]:
    out: list[_Entry] = []
    documents: list[Any] = []
    for path in [*sorted(folder.glob("insi_a_verifier_lot*.json")), folder / "test3_01.json"]:
        if path.is_file():
            documents.append(json.loads(path.read_text(encoding="utf-8")))
    for document in documents:
        items = document.get("lotIdentifiants") or ([document["ins"]] if "ins" in document else [])
        for item in items:
            number, traits = item.get("matriculeINS") or {}, item.get("traitsIdentite") or {}
            matricule = f"{number.get('valeur', '')}{number.get('cle', '')}".upper()
            out.append(_Entry(
                matricule=matricule, oid=_SYSTEMS.get(number.get("identifiantSysteme", ""), OID_INS_NIR),
                birth_name=str(traits.get("nomFamille") or ""),
                given_names=tuple(str(traits.get("prenomActeNaissance") or "").split()),
                sex=str(traits.get("sexeAdministratif") or ""), birth_date=str(traits.get("dateNaissance") or ""),
                birth_place=str(traits.get("lieuNaissance") or ""),
                nia=number.get("identifiantSysteme") == "INS_NIA"))
    return out


def _column(header: list[str], start: str) -> int:
    return next(i for i, name in enumerate(header) if name.strip().startswith(start))


def _book_entries(path: Path, lots: dict[str, _Entry]) -> list[_Entry]:
    if not path.is_file():
        return []
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines(keepends=True)))
    start = next(i for i, row in enumerate(rows) if row and row[0].strip() == "ID patient")
    header = rows[start]
    cols = {key: _column(header, key) for key in ("ID patient", "Liste prénoms", "Nom de naissance", "NOM utilisé",
                                                 "Matricule INS", "Date de naissance", "Rang de naissance", "Sexe",
                                                 "Carte CV", "Autres filtrages")}
    out: list[_Entry] = []
    for row in rows[start + 1:]:
        if len(row) <= cols["Sexe"]:
            continue
        matricule = row[cols["Matricule INS"]].strip().upper()
        if len(matricule) != 15 or not key_is_valid(matricule):
            continue  # no INS (Jeff ERENTIEL, the "Cas" patients to initialise): INSi does not know them
        lot = lots.get(matricule)
        filters = row[cols["Autres filtrages"]] if len(row) > cols["Autres filtrages"] else ""
        nia = "NIA" in filters.split() or (lot is not None and lot.nia)
        rank = row[cols["Rang de naissance"]].strip()
        out.append(_Entry(
            matricule=matricule, oid=OID_INS_NIA if nia else OID_INS_NIR,
            birth_name=row[cols["Nom de naissance"]].strip(), given_names=tuple(row[cols["Liste prénoms"]].split()),
            sex=row[cols["Sexe"]].strip(), birth_date=row[cols["Date de naissance"]].strip()[:10],
            birth_place=lot.birth_place if lot is not None else "", used_name=row[cols["NOM utilisé"]].strip(),
            rank=int(rank) if rank.isdigit() else 1, card=row[cols["Carte CV"]].strip(), nia=nia))
    return out


def load(reference: Path) -> CndaSet:
    """The CNDA identities and cards under ``reference`` (missing files are skipped, never invented)."""
    insi_folder = reference / "cnda" / "insi"
    lots = _lot_entries(insi_folder) if insi_folder.is_dir() else []
    by_matricule = {e.matricule: e for e in reversed(lots)}  # the first entry per matricule wins
    book = _book_entries(reference / "cnda" / "dmp" / "Referentiel_Patients.csv", by_matricule)
    found = CndaSet()
    seen: set[str] = set()
    for entry in [*book, *lots]:
        if entry.matricule in seen or not _consistent(entry.matricule, entry.sex, entry.birth_date):
            continue
        seen.add(entry.matricule)
        found.people.append(TestIdentity(
            key=f"cnda-{entry.matricule}", ins=entry.matricule, oid=entry.oid, birth_name=entry.birth_name,
            given_names=entry.given_names, sex=entry.sex, birth_date=entry.birth_date,
            birth_place=entry.birth_place, used_name=entry.used_name if entry.used_name != entry.birth_name else ""))
    _card_01(insi_folder / "test1_01.json", found)
    _card_04(book, found)
    log.info("identités CNDA chargées : %d personnes, %d cartes", len(found.people), len(found.cards))
    return found


def _card_01(path: Path, found: CndaSet) -> None:
    if not path.is_file():
        return
    test = json.loads(path.read_text(encoding="utf-8"))
    insured = str(test.get("nirOuvrantDroit", ""))
    person = found.person(insured)
    if person is None:
        return
    quality = "00"  # the beneficiary is the insured person herself
    rank = int(test.get("rangNaissance") or 1)
    found.cards[CARD_01] = VirtualCard(CARD_01, str(test.get("numSerieCarte", "")),
                                       (DemoBeneficiary(0, person, quality, insured, rank),))


def _card_04(book: list[_Entry], found: CndaSet) -> None:
    numbered: list[tuple[int, _Entry]] = []
    for entry in book:
        card, _, beneficiary = entry.card.lower().partition("bénéficiaire")
        digits = "".join(ch for ch in card if ch.isdigit())
        if digits and int(digits) == 4 and beneficiary.strip().isdigit():
            numbered.append((int(beneficiary.strip()), entry))
    if not numbered:
        return
    numbered.sort(key=lambda pair: pair[0])
    insured = numbered[0][1].matricule  # beneficiary 1: the insured person (ouvrant droit)
    beneficiaries: list[DemoBeneficiary] = []
    for entry in (e for _, e in numbered):
        person = found.person(entry.matricule)
        if person is not None:
            quality = "00" if entry.matricule == insured else "06"
            beneficiaries.append(DemoBeneficiary(len(beneficiaries), person, quality, insured, entry.rank))
    if beneficiaries:
        found.cards[CARD_04] = VirtualCard(CARD_04, CARD_04_SERIAL, tuple(beneficiaries))


def check_key(thirteen: str) -> str:
    """The 15-character matricule of a 13-character NIR (a helper for tests reading the lots)."""
    return f"{thirteen}{compute_key(thirteen):02d}"
