"""The INS (Identifiant National de Santé): matricule, key, OIDs and identity statuses.

The matricule is the NIR (or a NIA) of 13 characters plus a 2-digit key: key = 97 - (number mod 97), where
the Corsican departments 2A and 2B count as 19 and 18 for the computation. The OID says which kind it is;
the test and demo OIDs are accepted only where the configuration allows them (the sandbox does).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"
OID_INS_NIR_TEST = "1.2.250.1.213.1.4.10"
OID_INS_NIR_DEMO = "1.2.250.1.213.1.4.11"
PRODUCTION_OIDS = frozenset({OID_INS_NIR, OID_INS_NIA})
TEST_OIDS = frozenset({OID_INS_NIR_TEST, OID_INS_NIR_DEMO})

_MATRICULE = re.compile(r"^[1-478]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}$", re.IGNORECASE)


class IdentityStatus(enum.StrEnum):
    """Statuses of the national identity-vigilance reference (RNIV)."""

    PROV = "PROV"  # provisional: traits typed, no proof of identity seen
    RECUP = "RECUP"  # INS retrieved from INSi, identity document not checked
    VALI = "VALI"  # identity document checked, INS not retrieved
    QUAL = "QUAL"  # INS retrieved (and verified) AND identity document checked: the only one that may be shared


def _numeric(thirteen: str) -> int:
    upper = thirteen.upper()
    if upper[5:7] == "2A":
        upper = upper[:5] + "19" + upper[7:]
    elif upper[5:7] == "2B":
        upper = upper[:5] + "18" + upper[7:]
    return int(upper)


def compute_key(thirteen: str) -> int:
    """The 2-digit key of a 13-character NIR/NIA (Corsica handled)."""
    return 97 - (_numeric(thirteen) % 97)


def key_is_valid(matricule: str) -> bool:
    if not _MATRICULE.match(matricule):
        return False
    return compute_key(matricule[:13]) == int(matricule[13:])


@dataclass(frozen=True, slots=True)
class Ins:
    value: str  # 15 characters: 13 + key
    oid: str

    @property
    def kind(self) -> str:
        return "NIA" if self.oid == OID_INS_NIA else "NIR"

    def as_dict(self) -> dict[str, str]:
        return {"value": self.value, "oid": self.oid, "kind": self.kind}

    @classmethod
    def from_parts(cls, thirteen: str, key: str, oid: str) -> Ins:
        """An INS from INSi's ``NumIdentifiant`` (13 characters) and ``Cle`` (2 digits)."""
        return cls(f"{thirteen.upper()}{key.zfill(2)}", oid)


def normalize_matricule(value: str) -> str:
    """The matricule as typed (spaces, dots, lower-case 2a) to its 15-character form."""
    return re.sub(r"[\s.]", "", value).upper()


def accepted_oids(*, allow_test_oids: bool) -> frozenset[str]:
    return PRODUCTION_OIDS | (TEST_OIDS if allow_test_oids else frozenset())


def matricule_sex(matricule: str) -> str | None:
    """The sex the matricule's first digit encodes (1, 3, 7: M; 2, 4, 8: F), None when unknown."""
    return {"1": "M", "3": "M", "7": "M", "2": "F", "4": "F", "8": "F"}.get(matricule[:1])


def matricule_birth(matricule: str) -> tuple[str, str]:
    """(two-digit birth year, birth month) encoded by the matricule; months 20-42 or 50+ mean "unknown"."""
    return matricule[1:3], matricule[3:5]


def check_ins(value: str, oid: str, *, allow_test_oids: bool) -> list[tuple[str, str]]:
    """Problems with an INS as (field, French message); empty when the INS is acceptable."""
    problems: list[tuple[str, str]] = []
    if not isinstance(value, str) or not _MATRICULE.match(value):
        problems.append(("ins", "Le matricule INS doit compter 15 caractères (13 + clé), 2A/2B admis pour la Corse."))
    elif not key_is_valid(value):
        problems.append(("ins", "La clé du matricule INS est fausse : vérifiez la saisie."))
    if oid not in accepted_oids(allow_test_oids=allow_test_oids):
        if oid in TEST_OIDS:
            problems.append(("oid", "OID d'INS de test refusé hors du mode démonstration."))
        else:
            problems.append(("oid", "OID d'INS inconnu (attendu 1.2.250.1.213.1.4.8 pour un NIR, .9 pour un NIA)."))
    return problems
