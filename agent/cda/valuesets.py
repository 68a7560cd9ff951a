"""The CI-SIS value sets (``jeuxDeValeurs/JDV_*.xml`` of the kit, IHE SVS format), read at run time.

Every coded answer a builder writes takes its code system and display name from here, never from a literal in the
code: the LGC sends ``{"code": ..., "display": ...}`` (``system`` optional), ``concept`` finds the code in the value
set the volet's schematron checks that element against, and refuses (422 naming the field) a code that is not in
it. So a document the builders accept cannot fail a ``dansJeuDeValeurs`` assertion, and a newer kit brings its
new codes without a release.

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


def parse_value_set(name: str, data: bytes) -> ValueSet:
    root = safe.parse(data, max_bytes=MAX_VALUE_SET_BYTES, what=f"jeu de valeurs {name}")
    node = root.find(f"{SVS}ValueSet")
    concepts = tuple(
        Concept(c.get("code", ""), c.get("codeSystem", ""), c.get("displayName", ""))
        for c in root.iter(f"{SVS}Concept") if c.get("code") and c.get("codeSystem")
    )
    return ValueSet(name, node.get("id", "") if node is not None else "", concepts)
