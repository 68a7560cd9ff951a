"""The CI-SIS value sets (``jeuxDeValeurs/JDV_*.xml`` of the kit, IHE SVS format), read at run time.

Every coded answer a builder writes takes its code system and display name from here, never from a literal in the
code: the LGC sends ``{"code": ..., "display": ...}`` (``system`` optional), ``concept`` finds the code in the value
set the volet's schematron checks that element against, and refuses (422 naming the field) a code that is not in
it. So a document the builders accept cannot fail a ``dansJeuDeValeurs`` assertion, and a newer kit brings its
new codes without a release.

A code the volet fixes (a problem observation's "interprétation diagnostique", an allergy's "propension aux
réactions indésirables", a treatment's DRUG) is also read from the value set the content profile checks it against
(``fixed``): its system and display are the kit's, and a kit that no longer lists it stops the build (503) rather
than writing a code the kit's own check refuses.

Open terminologies (CIM-10, CCAM, CIS, ATC, EMDN, SNOMED CT...) are too large for the kit: no value set lists them,
and their codes are the LGC's. ``TERMINOLOGIES`` names each one once, with the OID the kit's value sets and its
IPS-FR example write for it (a test compares them), and ``open_code`` lets a field accept only the terminologies
its volet allows: the request may name one (by name or OID), never an arbitrary code system.

The kit is trusted local data but is read with the hardened parser all the same. Files are read once and kept.
Never logs what it is asked to look up (answers can be health data).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import InvalidInput, Unavailable
from agent.xml import safe

SVS = "{urn:ihe:iti:svs:2008}"
MAX_VALUE_SET_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Concept:
    code: str
    system: str
    display: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "system": self.system, "display": self.display}


@dataclass(frozen=True)
class ValueSet:
    name: str
    oid: str
    concepts: tuple[Concept, ...]

    def find(self, code: str, system: str = "") -> Concept | None:
        for concept in self.concepts:
            if concept.code == code and (not system or concept.system == system):
                return concept
        return None

    @property
    def codes(self) -> list[str]:
        return [c.code for c in self.concepts]


@dataclass(frozen=True, slots=True)
class Terminology:
    name: str  # as the kit writes codeSystemName
    oid: str


# Open terminologies, each under the name and OID the kit uses (jeuxDeValeurs/, ExemplesCDA/IPS-FR_2024.01.xml).
TERMINOLOGIES = {t.name: t for t in (
    Terminology("CIM-10", "2.16.840.1.113883.6.3"),
    Terminology("CISP-2", "2.16.840.1.113883.6.139"),
    Terminology("OrphaCodes", "1.2.250.1.213.2.49"),
    Terminology("SNOMED CT", "2.16.840.1.113883.6.96"),
    Terminology("CCAM", "1.2.250.1.215.300.1"),
    Terminology("CIS", "1.2.250.1.213.2.3.1"),
    Terminology("CIP", "1.2.250.1.213.2.3.2"),
    Terminology("ATC", "2.16.840.1.113883.6.73"),
    Terminology("EMDN", "1.2.250.1.213.2.68"),
)}
_CODE_TEXT = 64


def terminology(requested: Any, allowed: tuple[str, ...], field: str) -> Terminology:
    """The terminology a request names for a code (its name or OID; absent: the first of ``allowed``), refused
    with a 422 on ``field`` when its volet does not allow it there."""
    if requested is None or requested == "":
        return TERMINOLOGIES[allowed[0]]
    if isinstance(requested, str):
        wanted = requested.strip()
        for name in allowed:
            known = TERMINOLOGIES[name]
            if wanted in (known.oid, known.name) or wanted.casefold() == known.name.casefold():
                return known
    names = ", ".join(f"{n} ({TERMINOLOGIES[n].oid})" for n in allowed)
    raise InvalidInput.field(field, f"Système de codes {str(requested)[:_CODE_TEXT]!r} non admis ici : attendu "
                             f"{names}.", code="code_system_not_allowed")


class ValueSets:
    """The value sets of one kit folder (``jeuxDeValeurs/`` beside ``schematrons/``); ``None``: no kit."""

    def __init__(self, kit_dir: Path | None) -> None:
        self.kit_dir = kit_dir
        self._lock = threading.Lock()
        self._loaded: dict[str, ValueSet] = {}

    @property
    def available(self) -> bool:
        return self.kit_dir is not None and (self.kit_dir / "jeuxDeValeurs").is_dir()

    def get(self, name: str) -> ValueSet:
        """The value set ``name`` (file name without ``.xml``, e.g. ``JDV_TypeGarde_CISIS``)."""
        with self._lock:
            cached = self._loaded.get(name)
        if cached is not None:
            return cached
        if self.kit_dir is None:
            raise Unavailable("Kit CI-SIS non configuré (cda.kit_dir ou relais kit install) : les réponses codées "
                              "de ce document ne peuvent pas être contrôlées.", code="cda_kit_missing")
        path = self.kit_dir / "jeuxDeValeurs" / f"{name}.xml"
        if not path.is_file():
            raise Unavailable(f"Jeu de valeurs {name} absent du kit CI-SIS ({self.kit_dir}).", code="cda_kit_missing")
        value_set = parse_value_set(name, path.read_bytes())
        with self._lock:
            return self._loaded.setdefault(name, value_set)

    def concept(self, name: str, value: Any, field: str, *, required: bool = True) -> Concept | None:
        """The concept an answer ``{"code", "display"?, "system"?}`` (or a bare code string) names in ``name``.

        Refuses (422 on ``field``) what is not such an object or a code outside the value set.
        """
        if value is None or value == "":
            if required:
                raise InvalidInput.field(field, f"Réponse codée obligatoire (jeu de valeurs {name}).",
                                         code="code_required")
            return None
        if isinstance(value, str):
            code, system = value, ""
        elif isinstance(value, dict) and isinstance(value.get("code"), str) and value["code"]:
            code, system = value["code"], str(value.get("system") or "")
        else:
            raise InvalidInput.field(field, "Réponse codée attendue : {code, display}.", code="code_invalid")
        value_set = self.get(name)
        concept = value_set.find(code.strip(), system.strip())
        if concept is None:
            allowed = ", ".join(f"{c.code} ({c.display})" for c in value_set.concepts[:12])
            more = " ..." if len(value_set.concepts) > 12 else ""
            raise InvalidInput.field(field, f"Code {code!r} absent du jeu de valeurs {name} : attendu {allowed}{more}.",
                                     code="code_not_in_value_set")
        return concept

    def fixed(self, name: str, code: str) -> Concept:
        """The concept ``code`` that a volet fixes, as the value set ``name`` (the one the kit checks it against)
        writes it; a kit whose value set lacks it is an unusable kit (503), not a request error."""
        concept = self.get(name).find(code)
        if concept is None:
            raise Unavailable(f"Le jeu de valeurs {name} du kit CI-SIS ne contient plus le code {code} que ce "
                              "document exige : kit incomplet ou d'une autre version.", code="cda_kit_missing")
        return concept


def open_code(code: Any, display: str, requested_system: Any, allowed: tuple[str, ...], field: str, *,
              code_field: str = "") -> Concept:
    """A code of an open terminology (``allowed``, the first by default), with the LGC's display. ``field`` is the
    coded item (its ``.code`` and ``.system`` are named in a 422), ``code_field`` another key holding the code.
    A JSON integer is taken as its digits (a CIS or CCAM code an LGC stores as a number)."""
    if isinstance(code, int) and not isinstance(code, bool) and code >= 0:
        code = str(code)
    if not isinstance(code, str) or not code.strip() or len(code.strip()) > _CODE_TEXT or any(
            c.isspace() for c in code.strip()):
        raise InvalidInput.field(code_field or f"{field}.code", "Code attendu (une chaîne sans espace, 64 "
                                 "caractères au plus).", code="code_invalid")
    system = terminology(requested_system, allowed, f"{field}.system")
    return Concept(code.strip(), system.oid, display)


def parse_value_set(name: str, data: bytes) -> ValueSet:
    root = safe.parse(data, max_bytes=MAX_VALUE_SET_BYTES, what=f"jeu de valeurs {name}")
    node = root.find(f"{SVS}ValueSet")
    concepts = tuple(
        Concept(c.get("code", ""), c.get("codeSystem", ""), c.get("displayName", ""))
        for c in root.iter(f"{SVS}Concept") if c.get("code") and c.get("codeSystem")
    )
    return ValueSet(name, node.get("id", "") if node is not None else "", concepts)
