"""The DMP's parameters (the "fichier des paramètres" of the GIE integration guide, § 3.1.1) as the rules use them:
pure values and the decisions that depend on them.

What the test book says of them ([CDT] ``../shared/reference/cnda/dmp/Phase_2_Declarations.csv``):
- EX_GEN-1540: the software refreshes them from the file at least once a week; the file's URL ([FI URL]) may
  answer an HTTPS 3xx redirect, which must be followed; EX_GEN-1222: a new URL is taken quickly (configuration);
- EX_GEN-1550: when ``fonctions-gestion-mineurs`` is true, minority is decided before the DMP is accessed: a patient
  is a minor when their age in years is strictly below ``age-majorite``;
- EX_2.1-1050 / REC_2.1-1065: a document cannot be both masked to professionals and invisible to the patient while
  ``cumul-invisible_patient-masque_ps`` is false;
- a production flag: DevBox's public client (``DMPCParametres``: fonctionsGestionMineurs, cumulInvisiblePatient-
  MasquePs, ageMajorite, production) reads one; its name in the file is not public.

The "âge minimum" of EX_0.1-1115 is NOT a DMP parameter: it is the professional's own setting, under which the
connexion secrète is not proposed systematically to a minor; it never forbids one the professional asks for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace

from agent.domain.dmp_rules import age_on

# Where the values came from: the file just downloaded, the copy kept on disk, or the configuration (never read).
SOURCES = ("dmp", "cache", "configuration")


@dataclass(frozen=True, slots=True)
class DmpParameters:
    majority_age: int = 18  # age-majorite
    minors_management: bool = True  # fonctions-gestion-mineurs
    allow_masked_and_invisible: bool = False  # cumul-invisible_patient-masque_ps
    production: bool | None = None  # the production flag; None: the file did not say
    source: str = "configuration"
    fetched_at: dt.datetime | None = None  # when the file was downloaded (None: never)

    def as_dict(self) -> dict[str, object]:
        return {"majority_age": self.majority_age, "minors_management": self.minors_management,
                "allow_masked_and_invisible": self.allow_masked_and_invisible, "production": self.production}


@dataclass(frozen=True, slots=True)
class ParameterNames:
    """The names of the parameters in the file: the test book's, except the production flag's (not public)."""

    majority_age: str = "age-majorite"
    minors_management: str = "fonctions-gestion-mineurs"
    allow_masked_and_invisible: str = "cumul-invisible_patient-masque_ps"
    production: str = "production"


_TRUE = {"true", "vrai", "oui", "yes", "1", "o", "y"}
_FALSE = {"false", "faux", "non", "no", "0", "n"}


def _bool(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"paramètre {name} : booléen attendu, lu « {raw.strip()[:40]} »")


def from_values(values: Mapping[str, str], names: ParameterNames, fallback: DmpParameters) -> DmpParameters:
    """The parameters a file gives (name -> raw text), the fallback's where a name is absent. A value that cannot
    be read is an error (ValueError): a wrong file must not silently change a rule. At least one of the known
    names must be there, or the file is not the parameters file."""
    known = [n for n in (names.majority_age, names.minors_management, names.allow_masked_and_invisible,
                         names.production) if n in values]
    if not known:
        raise ValueError("aucun paramètre connu dans le fichier ("
                         f"{names.majority_age}, {names.minors_management}, {names.allow_masked_and_invisible})")
    out = fallback
    if names.majority_age in values:
        raw = values[names.majority_age].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= 30:
            raise ValueError(f"paramètre {names.majority_age} : âge entre 1 et 30 attendu, lu « {raw[:40]} »")
        out = replace(out, majority_age=int(raw))
    if names.minors_management in values:
        out = replace(out, minors_management=_bool(values[names.minors_management], names.minors_management))
    if names.allow_masked_and_invisible in values:
        out = replace(out, allow_masked_and_invisible=_bool(values[names.allow_masked_and_invisible],
                                                            names.allow_masked_and_invisible))
    if names.production in values:
        out = replace(out, production=_bool(values[names.production], names.production))
    return out


@dataclass(frozen=True, slots=True)
class SecretConnectionOffer:
    """What the LGC shows for this patient: is it a minor (EX_GEN-1550), and is the connexion secrète proposed
    (EX_0.1-1100), or not systematically because of the professional's "âge minimum" (EX_0.1-1115). ``minor``
    None: the birth date could not be read, or the DMP's minors management is off."""

    minor: bool | None
    offered: bool
    allowed: bool  # may the professional still ask for it (always, for a minor: EX_0.1-1115)
    age: int | None
    majority_age: int
    minimum_age: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"minor": self.minor, "offered": self.offered, "allowed": self.allowed, "age": self.age,
                "majority_age": self.majority_age, "minimum_age": self.minimum_age, "reason": self.reason}


def secret_connection_offer(birth: str, today: dt.date, params: DmpParameters, minimum_age: int
                            ) -> SecretConnectionOffer:
    age = age_on(birth, today)

    def offer(minor: bool | None, offered: bool, allowed: bool, reason: str) -> SecretConnectionOffer:
        return SecretConnectionOffer(minor, offered, allowed, age, params.majority_age, minimum_age, reason)

    if not params.minors_management:
        return offer(None, False, False, "La gestion des mineurs est désactivée par le DMP (paramètre "
                                         "fonctions-gestion-mineurs).")
    if age is None:
        return offer(None, False, False, "Date de naissance illisible : impossible de savoir si le patient est "
                                         "mineur.")
    if age >= params.majority_age:
        return offer(False, False, False, f"Patient majeur ({age} ans, majorité à {params.majority_age} ans) : pas "
                                          "de connexion secrète.")
    if age < minimum_age:
        return offer(True, False, True, f"Patient mineur de {age} ans, sous l'âge minimum que vous avez choisi "
                                        f"({minimum_age} ans) : la connexion secrète n'est pas proposée "
                                        "systématiquement, vous pouvez toujours la demander.")
    return offer(True, True, True, f"Patient mineur ({age} ans) : proposez-lui la connexion secrète (documents "
                                   "invisibles à ses représentants légaux).")
