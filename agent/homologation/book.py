"""The CNDA's DMP test book (CDT_DMP) as CSV, and the plan it gives for a declared perimeter.

The book is read where it is (``[homologation] reference_dir``, ``RELAIS_REFERENCE`` or ``shared/reference``,
under ``cnda/dmp/``), never copied. Its tabs: ``Phase_1_Prerequis.csv``, ``Phase_2_Tests.csv``,
``Phase_2_Declarations.csv``. Each tab opens with a French notice, then a header row; columns are read by name.

The CNDA filters the book by the publisher's perimeter (the PDT_DMP it hands over after the prerequisites). The
rules below are Relais's reading of the book's filter columns (no public source states them):

- Profil DMP-C: ``commun`` always; ``alimentation`` / ``consultation`` when the profile is declared;
- Authentification: ``Tous`` always; ``Directe``, ``Indirecte``, ``AIR``, ``Directe via PSC`` when declared;
- Mode: ``Normal`` always; ``centre-15``, ``BDG``, ``Connexion secrète`` (both for ``BDG et Connexion secrète``)
  when declared;
- Autres filtrages: an optional feature (médecin traitant, INSI, STRUCT, VAC, IMAGERIE, EJ/EG, TNR...): a test
  tagged with features is in the plan when one of them is declared (an option matches a tag equal to it or
  starting with it: ``vac`` matches ``VAC - alimentation``). PSC, AIR, centre-15 and BDG are implied by the
  authentication modes and modes declared.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import InvalidInput, NotFound
from agent.reference import find_reference

TESTS = "Phase_2_Tests.csv"
PREREQUISITES = "Phase_1_Prerequis.csv"
DECLARATIONS = "Phase_2_Declarations.csv"

PROFILES = ("alimentation", "consultation")
AUTHS = ("indirecte", "directe", "psc", "air")
MODES = ("centre-15", "bdg", "connexion-secrete")


def book_dir(configured: str = "") -> Path:
    """The folder of the CNDA's DMP test book (…/cnda/dmp)."""
    reference = find_reference(configured, marker="cnda")
    if reference is None or not (reference / "cnda" / "dmp" / TESTS).is_file():
        raise NotFound("Cahier de tests du CNDA introuvable : indiquez le dossier de référence "
                       "([homologation] reference_dir ou RELAIS_REFERENCE, contenant cnda/dmp/).",
                       code="cnda_book_missing")
    return reference / "cnda" / "dmp"


def norm(text: str) -> str:
    """Lower case, no accents, single spaces: how filter values and options are compared."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"\s+", " ", text).strip().lower()


def _rows(path: Path, first_column: str) -> tuple[dict[str, int], list[list[str]]]:
    """The header (normalised name -> index) and the rows after it; the header is the first row whose first cell
    is ``first_column`` (the tab's notice comes before)."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    for i, row in enumerate(rows):
        if row and norm(row[0]) == norm(first_column):
            header = {norm(name): j for j, name in enumerate(row)}
            return header, rows[i + 1:]
    raise NotFound(f"En-tête introuvable dans {path.name}.", code="cnda_book_unreadable")


def _cell(row: list[str], header: dict[str, int], name: str) -> str:
    j = header.get(norm(name))
    return row[j].strip() if j is not None and j < len(row) else ""


def _tags(text: str) -> tuple[str, ...]:
    return tuple(norm(p) for p in re.split(r"[\n,]", text) if norm(p))


@dataclass(frozen=True, slots=True)
class Perimeter:
    """What the publisher declares: DMP-C profiles, authentication modes, modes and optional features."""

    profiles: frozenset[str]
    auths: frozenset[str] = frozenset({"indirecte"})
    modes: frozenset[str] = frozenset()
    options: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, profiles: str, auths: str = "indirecte", modes: str = "", options: Iterable[str] = ()) -> Perimeter:
        def split(text: str, allowed: tuple[str, ...], what: str) -> frozenset[str]:
            values = frozenset(norm(v).replace(" ", "-") for v in text.split(",") if v.strip())
            unknown = sorted(values - set(allowed))
            if unknown:
                raise InvalidInput(f"{what} inconnu(s) : {', '.join(unknown)} (attendu : {', '.join(allowed)}).")
            return values
        return cls(profiles=split(profiles, PROFILES, "Profil(s)"), auths=split(auths, AUTHS, "Authentification(s)"),
                   modes=split(modes, MODES, "Mode(s)"), options=frozenset(norm(o) for o in options if o.strip()))

    @property
    def features(self) -> frozenset[str]:
        implied = {"psc"} & self.auths | {"air"} & self.auths | self.modes
        return self.options | implied | ({"centre 15"} if "centre-15" in self.modes else set())

    def has_feature(self, tags: tuple[str, ...]) -> bool:
        if not tags:
            return True
        return any(tag == option or tag.startswith(option + " ") for tag in tags for option in self.features)

    def has_auth(self, value: str) -> bool:
        v = norm(value)
        if v in ("tous", ""):
            return True
        if "psc" in v:
            return "psc" in self.auths
        wanted = {"directe": "directe", "indirecte": "indirecte", "air": "air", "indirecte renforcee": "air"}
        words = [w.strip() for w in v.split(" et ")]
        return any(wanted.get(w) in self.auths for w in words)

    def has_mode(self, value: str) -> bool:
        v = norm(value)
        if v in ("normal", ""):
            return True
        needed = {"centre-15" if "centre" in part else "bdg" if "bdg" in part else "connexion-secrete"
                  for part in v.split(" et ")}
        return needed <= self.modes

    def has_profile(self, value: str) -> bool:
        v = norm(value)
        return v in ("commun", "tous", "general", "acces", "") or v in self.profiles


@dataclass(frozen=True, slots=True)
class TestCase:
    transaction: str
    code: str
    title: str
    instructions: str
    proofs: str
    auth: str
    profile: str
    mode: str
    tags: tuple[str, ...]
    expected: str
    expected_label: str
    return_code: str
    patient: str
    raw_tags: str = ""

    @property
    def transaction_key(self) -> str:
        """``TD2.1``, ``TD0.2``… (the book writes ``TD 2.1``, ``TD2.2`` or nothing)."""
        text = re.sub(r"\s+", "", self.transaction)
        if not text:
            text = "TD" + self.code.split("-")[0]
        return text


@dataclass(frozen=True, slots=True)
class Prerequisite:
    code: str
    profile: str
    auth: str
    transaction: str
    actor: str
    specificity: str
    instructions: str


@dataclass(frozen=True, slots=True)
class Declaration:
    code: str
    transaction: str
    instructions: str
    proofs: str
    section: str
    delegable: str
    kind: str  # E or R
    auth: str
    declaration_type: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Book:
    tests: list[TestCase] = field(default_factory=list)
    prerequisites: list[Prerequisite] = field(default_factory=list)
    declarations: list[Declaration] = field(default_factory=list)


def load_book(directory: Path) -> Book:
    header, rows = _rows(directory / TESTS, "Transaction")
    tests = []
    for row in rows:
        code = _cell(row, header, "Code test")
        if not code:
            continue
        raw_tags = _cell(row, header, "Autres filtrages")
        tests.append(TestCase(
            transaction=_cell(row, header, "Transaction"), code=code, title=_cell(row, header, "Libellé cas de test"),
            instructions=_cell(row, header, "Consignes de test"),
            proofs=next((row[j].strip() for name, j in header.items() if name.startswith("elements a fournir")
                         and j < len(row)), ""),
            auth=_cell(row, header, "Authentification"), profile=_cell(row, header, "Profil DMP-C"),
            mode=_cell(row, header, "Mode"), tags=_tags(raw_tags), raw_tags=raw_tags,
            expected=_cell(row, header, "Résultat attendu en retour"),
            expected_label=_cell(row, header, "Libellé du retour"), return_code=_cell(row, header, "Code retour"),
            patient=_cell(row, header, "Données patient")))
    prerequisites = []
    if (directory / PREREQUISITES).is_file():
        header, rows = _rows(directory / PREREQUISITES, "Profil DMP-C")
        for row in rows:
            code = _cell(row, header, "Code prérequis")
            if code:
                prerequisites.append(Prerequisite(
                    code=code, profile=_cell(row, header, "Profil DMP-C"), auth=_cell(row, header, "Authentification"),
                    transaction=_cell(row, header, "Transaction"), actor=_cell(row, header, "Acteur"),
                    specificity=_cell(row, header, "Spécificité"),
                    instructions=_cell(row, header, "Consignes des prérequis")))
    declarations = []
    if (directory / DECLARATIONS).is_file():
        header, rows = _rows(directory / DECLARATIONS, "Transactions DMP pour LPS")
        for row in rows:
            code = next((c for c in [_cell(row, header, "Référence EX. ou REC. du guide d'intégration")] if c), "")
            if not code:
                continue
            declarations.append(Declaration(
                code=code, transaction=_cell(row, header, "Transactions DMP pour LPS"),
                instructions=_cell(row, header, "Consigne"),
                proofs=next((row[j].strip() for name, j in header.items()
                             if name.startswith("elements specifiques") and j < len(row)), ""),
                section=_cell(row, header, "§ réf. Guide d'intégration"), delegable=_cell(row, header, "Délégable ?"),
                kind=_cell(row, header, "(E)xigence / (R)ecommandation"), auth=_cell(row, header, "Filtre Authent."),
                declaration_type=_cell(row, header, "Type déclaration"),
                tags=_tags(_cell(row, header, "Autres filtrages"))))
    return Book(tests, prerequisites, declarations)


_SPECIFICITY = {"connexion secrete": "connexion-secrete", "bdg": "bdg", "centre 15": "centre-15"}
_SPECIFICITY_FEATURES = {"documents structures": "struct", "ej/eg": "ej/eg", "vaccination": "vac",
                         "imagerie": "imagerie"}


@dataclass(frozen=True, slots=True)
class Plan:
    perimeter: Perimeter
    prerequisites: list[Prerequisite]
    tests: list[TestCase]
    declarations: list[Declaration]


def plan(book: Book, perimeter: Perimeter) -> Plan:
    tests = [t for t in book.tests if perimeter.has_profile(t.profile) and perimeter.has_auth(t.auth)
             and perimeter.has_mode(t.mode) and perimeter.has_feature(t.tags)]
    prerequisites = []
    for p in book.prerequisites:
        if not (perimeter.has_profile(p.profile) and perimeter.has_auth(p.auth)):
            continue
        spec = norm(p.specificity)
        mode = next((m for key, m in _SPECIFICITY.items() if key in spec), None)
        if mode is not None and mode not in perimeter.modes:
            continue
        feature = next((f for key, f in _SPECIFICITY_FEATURES.items() if key in spec), None)
        if feature is not None and not perimeter.has_feature((feature,)):
            continue
        prerequisites.append(p)
    declarations = [d for d in book.declarations if perimeter.has_profile(d.declaration_type)
                    and perimeter.has_auth(d.auth) and perimeter.has_feature(d.tags)]
    return Plan(perimeter, prerequisites, tests, declarations)


PATIENTS = "Referentiel_Patients.csv"


@dataclass(frozen=True, slots=True)
class BookPatient:
    """A patient of the book's "Référentiel Patients", as the CNDA's test platforms know them."""

    ins: str
    oid: str
    birth_name: str
    given_names: tuple[str, ...]
    sex: str
    birth_date: str  # ISO

    @property
    def first_given_name(self) -> str:
        return self.given_names[0] if self.given_names else ""


def book_patient(directory: Path, ins: str, oid: str) -> BookPatient | None:
    """The book's patient whose INS matricule is ``ins`` (None when the book has none)."""
    path = directory / PATIENTS
    if not path.is_file():
        return None
    header, rows = _rows(path, "ID patient")

    def cell(row: list[str], start: str) -> str:
        j = next((i for name, i in header.items() if name.startswith(norm(start))), None)
        return row[j].strip() if j is not None and j < len(row) else ""

    for row in rows:
        if cell(row, "Matricule INS") == ins:
            return BookPatient(ins, oid, cell(row, "Nom de naissance").upper(),
                               tuple(cell(row, "Liste prénoms").upper().split()), cell(row, "Sexe").upper(),
                               cell(row, "Date de naissance")[:10])
    return None
