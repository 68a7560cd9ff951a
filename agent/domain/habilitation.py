"""The habilitation matrix: which professions may read which DMP document types and classes.

The rules are data (``data/habilitation_matrix.json``, which names its legal source, the arrêté of 26 October
2023); a practice replaces the file with the configuration key ``habilitation.matrix``. A column is a
profession (TRE_G15 code, as on the CPS) or a profession with a specialty (``"10/SM26"``, which takes precedence).
A professional whose profession is not in the matrix reads nothing: the default is refusal.

Pure: reads a file when asked, never the network; no store.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

BUILTIN = "habilitation_matrix.json"


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    read_all: bool
    allow_types: frozenset[str]
    allow_classes: frozenset[str]
    deny_types: frozenset[str]
    deny_classes: frozenset[str]

    def may_read(self, type_code: str | None, class_code: str | None) -> bool:
        if type_code and type_code in self.deny_types:
            return False
        if class_code and class_code in self.deny_classes:
            return False
        if self.read_all:
            return True
        return bool((type_code and type_code in self.allow_types) or (class_code and class_code in self.allow_classes))


@dataclass(frozen=True, slots=True)
class HabilitationMatrix:
    source: str
    version: str
    status: str
    columns: Mapping[str, Column]
    origin: str  # the file it came from, for messages and /v1/status

    def column_for(self, profession: str | None, specialty: str | None) -> Column | None:
        code = profession_code(profession, self.columns)
        if code is None:
            return None
        if specialty:
            found = self.columns.get(f"{code}/{specialty.strip().upper()}")
            if found is not None:
                return found
        return self.columns.get(code)

    def may_read(self, profession: str | None, specialty: str | None, type_code: str | None,
                 class_code: str | None) -> bool:
        column = self.column_for(profession, specialty)
        return column is not None and column.may_read(type_code, class_code)

    def filter(self, entries: Iterable[Any], profession: str | None, specialty: str | None) -> list[Any]:
        """The entries (objects or dicts with ``type_code`` / ``class_code``) this professional may read."""
        column = self.column_for(profession, specialty)
        if column is None:
            return []
        return [e for e in entries if column.may_read(_member(e, "type_code"), _member(e, "class_code"))]


def _member(entry: Any, name: str) -> str | None:
    value = entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)
    return str(value) if value else None


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def profession_code(profession: str | None, columns: Mapping[str, Column]) -> str | None:
    """The TRE_G15 code of a profession given as a code ("10") or a label ("Médecin")."""
    if not profession:
        return None
    text = profession.strip()
    if text in columns or any(key.split("/")[0] == text for key in columns):
        return text
    folded = _fold(text)
    for key, column in columns.items():
        if "/" not in key and _fold(column.label) == folded:
            return key
    return None


def load_matrix(path: str | Path | None = None) -> HabilitationMatrix:
    """The configured matrix file, or the built-in one; a malformed file is a ConfigError naming it."""
    if path:
        origin = str(path)
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError("matrice d'habilitation introuvable", key="habilitation.matrix", path=origin) from exc
        except (OSError, ValueError) as exc:
            raise ConfigError(f"matrice d'habilitation illisible : {exc}", key="habilitation.matrix",
                              path=origin) from exc
    else:
        origin = "(matrice intégrée)"
        raw = json.loads(resources.files("agent.domain.data").joinpath(BUILTIN).read_text(encoding="utf-8"))
    return parse_matrix(raw, origin)


def parse_matrix(raw: Any, origin: str) -> HabilitationMatrix:
    def bad(message: str) -> ConfigError:
        return ConfigError(f"matrice d'habilitation invalide : {message}", key="habilitation.matrix", path=origin)

    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict):
        raise bad("un objet avec « columns » est attendu")
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise bad("« source » doit nommer le texte juridique dont la matrice est tirée")
    columns: dict[str, Column] = {}
    for key, spec in raw["columns"].items():
        if not isinstance(spec, dict):
            raise bad(f"colonne {key!r} : un objet est attendu")
        read = spec.get("read", [])
        if read != "all" and not _strings(read):
            raise bad(f"colonne {key!r} : « read » vaut \"all\" ou une liste de codes")
        deny_types, deny_classes = _split_codes(spec.get("deny_types", []), key, bad)
        raw_deny_classes = spec.get("deny_classes", [])
        if not _strings(raw_deny_classes):
            raise bad(f"colonne {key!r} : une liste de codes est attendue")
        extra_deny_classes = frozenset(raw_deny_classes)
        allow_types, allow_classes = _split_codes([] if read == "all" else read, key, bad)
        columns[str(key)] = Column(
            key=str(key), label=str(spec.get("label", key)), read_all=read == "all",
            allow_types=allow_types, allow_classes=allow_classes,
            deny_types=deny_types, deny_classes=deny_classes | extra_deny_classes,
        )
    return HabilitationMatrix(source=source, version=str(raw.get("version", "")), status=str(raw.get("status", "")),
                              columns=columns, origin=origin)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _split_codes(codes: Any, key: str, bad: Any) -> tuple[frozenset[str], frozenset[str]]:
    if not _strings(codes):
        raise bad(f"colonne {key!r} : une liste de codes est attendue")
    types = frozenset(c for c in codes if not c.startswith("class:"))
    classes = frozenset(c.removeprefix("class:") for c in codes if c.startswith("class:"))
    return types, classes
