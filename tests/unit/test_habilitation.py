"""The habilitation matrix as data: its legal source, the rule per profession, replacement by a practice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.domain.habilitation import load_matrix
from agent.errors import ConfigError

SYNTHESE_PSY = "68599-0"  # Synthèse psychiatrique
CR_CONSULTATION = "11488-4"


def entries() -> list[dict[str, str]]:
    return [
        {"entry_uuid": "a", "type_code": CR_CONSULTATION, "class_code": "10"},
        {"entry_uuid": "b", "type_code": SYNTHESE_PSY, "class_code": "11"},
        {"entry_uuid": "c", "type_code": "ATTEST-RESID", "class_code": "95"},
    ]


def test_the_builtin_matrix_names_its_legal_source():
    matrix = load_matrix()
    assert "26 octobre 2023" in matrix.source
    assert matrix.origin == "(matrice intégrée)"


def test_the_matrix_hides_a_document_type_from_a_profession_that_may_not_read_it():
    matrix = load_matrix()
    dentist = [e["entry_uuid"] for e in matrix.filter(entries(), "40", None)]
    doctor = [e["entry_uuid"] for e in matrix.filter(entries(), "10", "SM26")]
    assert dentist == ["a"]
    assert doctor == ["a", "b"]  # a médecin reads all but the attestation de résidence


def test_a_profession_given_by_its_label_is_recognised():
    matrix = load_matrix()
    assert matrix.may_read("Médecin", None, SYNTHESE_PSY, "11")
    assert matrix.may_read("chirurgien-dentiste", None, SYNTHESE_PSY, "11") is False


def test_an_unknown_or_missing_profession_reads_nothing():
    matrix = load_matrix()
    assert matrix.filter(entries(), "99", None) == []
    assert matrix.filter(entries(), None, None) == []
    assert matrix.column_for(None, None) is None


def test_objects_with_attributes_are_filtered_too():
    class Entry:
        def __init__(self, type_code: str) -> None:
            self.type_code = type_code
            self.class_code = "11"

    kept = load_matrix().filter([Entry(CR_CONSULTATION), Entry(SYNTHESE_PSY)], "40", None)
    assert [e.type_code for e in kept] == [CR_CONSULTATION]


def test_a_practice_replaces_the_matrix_with_specialty_columns_and_class_rules(tmp_path: Path):
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps({
        "source": "Arrêté du 26 octobre 2023, version du cabinet",
        "columns": {
            "60": {"label": "Infirmier", "read": ["class:10", "87273-9"]},
            "10": {"label": "Médecin", "read": "all", "deny_classes": ["60"]},
            "10/SM40": {"label": "Médecin (psychiatrie)", "read": "all"},
        },
    }), encoding="utf-8")
    matrix = load_matrix(path)
    assert matrix.may_read("60", None, CR_CONSULTATION, "10")
    assert matrix.may_read("60", None, "87273-9", "11")
    assert matrix.may_read("60", None, SYNTHESE_PSY, "11") is False
    assert matrix.may_read("10", "SM26", "REMB", "60") is False
    assert matrix.may_read("10", "SM40", "REMB", "60") is True  # the specialty's column wins


@pytest.mark.parametrize("content, message", [
    ("{not json", "illisible"),
    (json.dumps({"columns": {}}), "source"),
    (json.dumps({"source": "x", "columns": {"10": {"read": "some"}}}), "read"),
    (json.dumps({"source": "x", "columns": {"10": {"read": "all", "deny_types": "REMB"}}}), "liste"),
])
def test_a_malformed_replacement_stops_with_the_key_and_file(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_matrix(path)
    assert message in caught.value.message
    assert caught.value.key == "habilitation.matrix"
    assert str(path) in caught.value.message


def test_a_missing_replacement_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="introuvable"):
        load_matrix(tmp_path / "absent.json")
