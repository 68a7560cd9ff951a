"""The XDS value sets the DMP checks codes against (JDV_J01, J02, J04, J07, J08, J10, J57).

Read from the ANS kit folder given by configuration (IHE SVS XML for the CI-SIS sets, FHIR ValueSet JSON for the
terminology sets). A code outside its set is an ``InvalidInput`` naming the metadata field, so the doctor learns
which header element to fix before anything leaves the workstation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import ConfigError, FieldError, InvalidInput
from agent.xml.safe import parse

SVS = "urn:ihe:iti:svs:2008"

# metadata field -> (value set name, path under the reference kit)
SETS: dict[str, tuple[str, str]] = {
    "typeCode": ("JDV_J07_XdsTypeCode_CISIS", "ci-sis/jeuxDeValeurs/JDV_J07_XdsTypeCode_CISIS.xml"),
    "confidentialityCode": ("JDV_J08_XdsConfidentialityCode_CISIS",
                            "ci-sis/jeuxDeValeurs/JDV_J08_XdsConfidentialityCode_CISIS.xml"),
    "healthcareFacilityTypeCode": ("JDV_J02_XdsHealthcareFacilityTypeCode_CISIS",
                                   "ci-sis/jeuxDeValeurs/JDV_J02_XdsHealthcareFacilityTypeCode_CISIS.xml"),
    "practiceSettingCode": ("JDV_J04_XdsPracticeSettingCode_CISIS",
                            "ci-sis/jeuxDeValeurs/JDV_J04_XdsPracticeSettingCode_CISIS.xml"),
    "authorSpecialty": ("JDV_J01_XdsAuthorSpecialty_CISIS",
                        "ci-sis/jeuxDeValeurs/JDV_J01_XdsAuthorSpecialty_CISIS.xml"),
    "classCode": ("JDV_J57_ClassCode_DMP",
                  "terminologies/ansforge-IG-terminologie-de-sante/derived/JDV_J57_ClassCode_DMP.DERIVED.json"),
    "formatCode": ("JDV_J10_XdsFormatCode_CISIS", "terminologies/ansforge-IG-terminologie-de-sante/derived/"
                   "JDV_J10_XdsFormatCode_CISIS.compose.DERIVED.json"),
}


@dataclass
class ValueSet:
    name: str
    codes: dict[str, set[str]] = field(default_factory=dict)  # code -> code systems ("" when unknown)

    def contains(self, code: str, scheme: str) -> bool:
        systems = self.codes.get(code)
        if systems is None:
            return False
        return "" in systems or not scheme or scheme in systems


def _load_svs(path: Path, name: str) -> ValueSet:
    root = parse(path.read_bytes(), what=name)
    vs = ValueSet(name)
    for concept in root.iter(f"{{{SVS}}}Concept"):
        vs.codes.setdefault(concept.get("code", ""), set()).add(concept.get("codeSystem", ""))
    return vs


def _load_fhir(path: Path, name: str) -> ValueSet:
    data = json.loads(path.read_text(encoding="utf-8"))
    vs = ValueSet(name)
    for include in data.get("compose", {}).get("include", []):
        for concept in include.get("concept", []):
            vs.codes.setdefault(concept["code"], set()).add("")
    return vs


class ValueSets:
    """Value sets by metadata field; ``check`` collects every violation before raising."""

    def __init__(self, sets: dict[str, ValueSet]) -> None:
        self.sets = sets

    @classmethod
    def load(cls, reference_dir: Path) -> ValueSets:
        sets: dict[str, ValueSet] = {}
        for fieldname, (name, rel) in SETS.items():
            path = reference_dir / rel
            if not path.exists():
                raise ConfigError(f"jeu de valeurs {name} introuvable ({path})", key="dmp.reference_dir")
            sets[fieldname] = _load_fhir(path, name) if path.suffix == ".json" else _load_svs(path, name)
        return cls(sets)

    def problems(self, codes: list[tuple[str, str, str]]) -> list[FieldError]:
        """(field, code, scheme) triples -> the fields whose code is not in its set."""
        out: list[FieldError] = []
        for fieldname, code, scheme in codes:
            vs = self.sets.get(fieldname)
            if vs is not None and not vs.contains(code, scheme):
                out.append(FieldError(f"metadata.{fieldname}",
                                      f"Le code « {code} » ({scheme or 'système inconnu'}) n'appartient pas au "
                                      f"jeu de valeurs {vs.name} attendu pour {fieldname}."))
        return out

    def check(self, codes: list[tuple[str, str, str]]) -> None:
        errors = self.problems(codes)
        if errors:
            raise InvalidInput("Métadonnées XDS hors des jeux de valeurs du DMP.", errors=errors,
                               code="xds_metadata_invalid")
