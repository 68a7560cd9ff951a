"""Identity traits as INSi expects them, the checks made before any INSi call, and identity-status transitions.

INSi compares "strict traits" (birth name, birth given names, sex, birth date, birth place) written the way the
civil-status registry writes them. The lexical rules are those of the INSi integration guide (GIE SESAM-Vitale
SEL-MP-043 v05.00.01, §2 "Limitations du téléservice" and §3.4.1, fields EF_INS01_03 / EF_INS10_01 for the birth
name and EF_INS10_02 for the given names) as a public third-party summary gives them (no public copy of the guide
itself was found):

- no lower case, no diacritic, no ligature: only the letters A-Z, the space, the apostrophe (ASCII 39) and the
  hyphen (ASCII 45), single or double (``DUPONT--DURAND``);
- the first character is neither a space nor a hyphen; it may be an apostrophe (``'T HOOFT``);
- a space and an apostrophe are never doubled nor put side by side;
- a given name has no double hyphen and does not end with a hyphen or an apostrophe.

A trait typed "Lefèvre" or "d’Arcy" becomes "LEFEVRE" / "D'ARCY" before the call (``normalize_name``); what
normalising cannot fix (a digit, a doubled apostrophe, no sex, an impossible date) is refused before the call with
the field named, never silently rewritten into another person's name.

Pure rules, stdlib only. Problems are (field, French message) pairs; the caller turns them into InvalidInput.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.domain.ins import IdentityStatus

Problems = list[tuple[str, str]]

# No public source gives INSi's field lengths: 100 is a Relais bound, far above any civil-status name.
MAX_NAME_LENGTH = 100
OLDEST_BIRTH_YEAR = 1880  # INSi refuses older dates; nobody alive was born before

_APOSTROPHES = "'’‘`´ʼʹ′＇"
_HYPHENS = "-‐‑‒–—―−﹣－"
_LIGATURES = {"Œ": "OE", "œ": "OE", "Æ": "AE", "æ": "AE", "ß": "SS"}
_CHARSET = re.compile(r"^[A-Z '\-]*$")
_BIRTH_PLACE = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class NameKind(enum.Enum):
    """Which INSi field a name goes to: the rules differ (SEL-MP-043 §3.4.1)."""

    BIRTH_NAME = "birth_name"  # EF_INS01_03, EF_INS10_01: a double hyphen is allowed
    GIVEN_NAME = "given_name"  # EF_INS10_02: no double hyphen, no hyphen or apostrophe at the end


def normalize_name(value: str) -> str:
    """A name or given name as INSi writes it: upper case, accents and ligatures removed, one kind of apostrophe
    and of hyphen, single spaces, no space around an apostrophe or a hyphen, no space at either end.

    Only what has one obvious reading is rewritten. A doubled apostrophe, a leading hyphen, a digit stay as typed,
    so that ``name_problems`` refuses them with the field named instead of changing the name; a double hyphen is
    kept, it is part of some names (``DUPONT--DURAND``), and so is a leading apostrophe (``'T HOOFT``)."""
    text = "".join(_LIGATURES.get(ch, ch) for ch in value)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = "".join("'" if ch in _APOSTROPHES else "-" if ch in _HYPHENS else ch for ch in text)
    text = text.upper()
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ?(-+) ?", r"\1", text)
    return re.sub(r" ?' ?", "'", text)


def normalize_given_names(value: str | Iterable[str]) -> tuple[str, ...]:
    """Birth given names in order. INSi lists them separated by spaces; a composed given name keeps its hyphen
    ("JEAN-PIERRE" is one given name, "JEAN PIERRE" two)."""
    items = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        names.extend(part for part in normalize_name(item).split(" ") if part)
    return tuple(names)


def name_problems(value: str, kind: NameKind) -> list[str]:
    """Every lexical rule of SEL-MP-043 §2 / §3.4.1 that ``value`` (already normalised) breaks, in French; the
    messages complete "Le nom ..." / "Le prénom ..." as the caller words it."""
    if not value:
        return ["est vide"]
    problems: list[str] = []
    if len(value) > MAX_NAME_LENGTH:
        problems.append(f"dépasse {MAX_NAME_LENGTH} caractères")
    if not _CHARSET.match(value):
        problems.append("contient des caractères que l'INSi n'accepte pas (lettres A à Z sans accent, espace, "
                        "apostrophe et tiret seulement)")
    if value[0] in " -":
        problems.append("ne peut pas commencer par un espace ou un tiret")
    if any(pair in value for pair in ("  ", "''", " '", "' ")):
        problems.append("ne peut pas contenir deux espaces ou deux apostrophes à la suite, ni une apostrophe "
                        "accolée à un espace")
    if "---" in value:
        problems.append("ne peut pas contenir plus de deux tirets à la suite")
    if kind is NameKind.GIVEN_NAME:
        if "--" in value:
            problems.append("ne peut pas contenir de double tiret (réservé au nom de naissance)")
        if value[-1] in "-'":
            problems.append("ne peut pas finir par un tiret ou une apostrophe")
    elif value[-1] == " ":
        problems.append("ne peut pas finir par un espace")
    if not re.search(r"[A-Z]", value):
        problems.append("ne contient aucune lettre")
    return problems


def is_valid_name(value: str, kind: NameKind) -> bool:
    return not name_problems(value, kind)


def normalize_sex(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    upper = value.strip().upper()
    return {"M": "M", "F": "F", "H": "M", "MALE": "M", "FEMALE": "F"}.get(upper)


@dataclass(frozen=True, slots=True)
class IdentityTraits:
    """The strict traits of a person, normalised."""

    birth_name: str
    given_names: tuple[str, ...]
    sex: str  # "M" or "F"
    birth_date: str  # ISO YYYY-MM-DD (a "lunar" date from a carte Vitale may have day or month 00)
    birth_place: str | None = None  # INSEE code of the commune at birth; 99xxx: country of birth abroad

    @property
    def first_given_name(self) -> str:
        return self.given_names[0] if self.given_names else ""

    def as_dict(self) -> dict[str, Any]:
        return {"birth_name": self.birth_name, "given_names": list(self.given_names), "sex": self.sex,
                "birth_date": self.birth_date, "birth_place": self.birth_place}


def _check_name(value: str, field: str, label: str, kind: NameKind) -> Problems:
    found = name_problems(value, kind)
    if not found:
        return []
    return [(field, f"{label} {' ; '.join(found)}.")]


def check_birth_date(value: Any, field: str, today: dt.date) -> Problems:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        return [(field, "Date de naissance attendue au format AAAA-MM-JJ.")]
    try:
        date = dt.date.fromisoformat(value)
    except ValueError:
        return [(field, f"La date de naissance {value} n'existe pas.")]
    if date > today:
        return [(field, "La date de naissance est dans le futur.")]
    if date.year < OLDEST_BIRTH_YEAR:
        return [(field, f"Date de naissance invraisemblable (avant {OLDEST_BIRTH_YEAR}).")]
    return []


def parse_traits(raw: Any, today: dt.date, *, prefix: str = "traits") -> tuple[IdentityTraits | None, Problems]:
    """Normalise typed traits and check them; the traits are None when a problem was found."""
    if not isinstance(raw, Mapping):
        return None, [(prefix, "Les traits d'identité sont attendus (objet JSON).")]
    problems: Problems = []
    birth_name_raw = raw.get("birth_name")
    birth_name = normalize_name(birth_name_raw) if isinstance(birth_name_raw, str) else ""
    if birth_name_raw is not None and not isinstance(birth_name_raw, str):
        problems.append((f"{prefix}.birth_name", "Le nom de naissance doit être une chaîne."))
    else:
        problems += _check_name(birth_name, f"{prefix}.birth_name", "Le nom de naissance", NameKind.BIRTH_NAME)

    given_raw = raw.get("given_names")
    given: tuple[str, ...] = ()
    if isinstance(given_raw, str) or (isinstance(given_raw, list) and all(isinstance(g, str) for g in given_raw)):
        given = normalize_given_names(given_raw)
    elif given_raw is not None:
        problems.append((f"{prefix}.given_names", "Les prénoms sont attendus en liste de chaînes."))
    if not given and not any(f == f"{prefix}.given_names" for f, _ in problems):
        problems.append((f"{prefix}.given_names", "Au moins un prénom de naissance est requis."))
    for name in given:
        found = _check_name(name, f"{prefix}.given_names", f"Le prénom « {name} »", NameKind.GIVEN_NAME)
        if found:
            problems += found
            break

    sex = normalize_sex(raw.get("sex"))
    if sex is None:
        problems.append((f"{prefix}.sex", "Le sexe est requis : M ou F."))

    problems += check_birth_date(raw.get("birth_date"), f"{prefix}.birth_date", today)

    place_raw = raw.get("birth_place")
    place: str | None = None
    if place_raw not in (None, ""):
        place = place_raw.strip().upper() if isinstance(place_raw, str) else None
        if place is None or not _BIRTH_PLACE.match(place):
            problems.append((f"{prefix}.birth_place", "Le lieu de naissance est le code INSEE à 5 caractères de la "
                                                     "commune de naissance (2A/2B en Corse, 99xxx à l'étranger)."))
    if problems:
        return None, problems
    assert sex is not None
    return IdentityTraits(birth_name, given, sex, str(raw["birth_date"]), place), []


def likely_not_found_causes(traits: IdentityTraits) -> list[str]:
    """What, in these traits, commonly makes INSi answer "not found" (French, for the doctor)."""
    causes: list[str] = []
    if len(traits.given_names) > 1:
        causes.append("Plusieurs prénoms ont été saisis : l'INSi compare le premier prénom de naissance (ou la "
                      "liste complète) ; vérifiez leur ordre sur la pièce d'identité.")
    if " " in traits.birth_name:
        causes.append("Le nom de naissance contient un espace : un nom composé s'écrit souvent avec un tiret "
                      "(ou l'inverse) ; vérifiez sur la pièce d'identité.")
    if traits.birth_date.endswith("-01-01"):
        causes.append("Une date de naissance au 1er janvier remplace souvent une date inconnue : vérifiez-la.")
    if traits.birth_place is not None:
        causes.append("Le lieu de naissance doit être le code INSEE de la commune au jour de la naissance "
                      "(99 suivi du code pays à l'étranger) ; essayez sans le lieu de naissance.")
    causes.append("Le nom saisi doit être le nom de naissance, pas le nom d'usage (nom d'épouse par exemple).")
    return causes


def traits_differences(local: IdentityTraits, reference: IdentityTraits, *,
                       all_given_names: bool = False) -> list[str]:
    """Which traits differ between the local record and the INSi reference (field names). A search compares the
    first given name (the one it sent); a verification, the whole list the record holds."""
    diffs = []
    if local.birth_name != reference.birth_name:
        diffs.append("birth_name")
    if (local.given_names != reference.given_names if all_given_names
            else local.first_given_name != reference.first_given_name):
        diffs.append("given_names")
    if local.sex != reference.sex:
        diffs.append("sex")
    if local.birth_date != reference.birth_date:
        diffs.append("birth_date")
    if local.birth_place and reference.birth_place and local.birth_place != reference.birth_place:
        diffs.append("birth_place")
    return diffs


class StatusEvent(enum.StrEnum):
    """What happens to an identity, as the national identity-vigilance reference (RNIV) names it."""

    INS_RETRIEVED = "ins_retrieved"  # INSi returned the INS for these traits (search or verification: CR 00)
    DOCUMENT_CHECKED = "document_checked"  # a high-trust identity document was seen (not the carte Vitale)
    INS_INVALIDATED = "ins_invalidated"  # INSi no longer confirms the INS (verification failed, INS withdrawn)
    DOUBT = "doubt"  # the identity is doubtful or a strict trait was changed by hand


_TRANSITIONS: dict[tuple[IdentityStatus, StatusEvent], IdentityStatus] = {
    (IdentityStatus.PROV, StatusEvent.INS_RETRIEVED): IdentityStatus.RECUP,
    (IdentityStatus.PROV, StatusEvent.DOCUMENT_CHECKED): IdentityStatus.VALI,
    (IdentityStatus.RECUP, StatusEvent.INS_RETRIEVED): IdentityStatus.RECUP,
    (IdentityStatus.RECUP, StatusEvent.DOCUMENT_CHECKED): IdentityStatus.QUAL,
    (IdentityStatus.RECUP, StatusEvent.INS_INVALIDATED): IdentityStatus.PROV,
    (IdentityStatus.VALI, StatusEvent.INS_RETRIEVED): IdentityStatus.QUAL,
    (IdentityStatus.VALI, StatusEvent.DOCUMENT_CHECKED): IdentityStatus.VALI,
    (IdentityStatus.QUAL, StatusEvent.INS_RETRIEVED): IdentityStatus.QUAL,
    (IdentityStatus.QUAL, StatusEvent.DOCUMENT_CHECKED): IdentityStatus.QUAL,
    (IdentityStatus.QUAL, StatusEvent.INS_INVALIDATED): IdentityStatus.VALI,
}


def next_status(current: IdentityStatus, event: StatusEvent) -> IdentityStatus:
    """The status after ``event``. A doubt always falls back to PROV; an INS invalidated on an identity that had
    none (PROV, VALI) changes nothing. The carte Vitale is not an identity document: reading it is never
    DOCUMENT_CHECKED, so an INS found from the Vitale alone gives RECUP, never QUAL."""
    if event is StatusEvent.DOUBT:
        return IdentityStatus.PROV
    return _TRANSITIONS.get((current, event), current)


def may_share(status: IdentityStatus) -> bool:
    """Only a qualified identity may be used to share documents (DMP, MSSanté) under the INS."""
    return status is IdentityStatus.QUAL
