"""The DMP metadata codes from one table each: class codes, format codes by template, the contentTypeCode scheme."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agent.dmp.submission import CONSULTATION, SubmissionDefaults, format_code
from agent.domain.catalogue import CATALOGUE, class_code_of
from agent.xml.cda_header import CdaHeader, parse_cda_header
from relais_sandbox.dmp import reidentify
from relais_sandbox.identities import PAT_TROIS


def test_submission_set_content_type_is_in_tre_r209() -> None:
    # TRE_R209-TypeActivite is 1.2.250.1.213.2.2 (NOS); the ebXML slot codingScheme must say so.
    assert CONSULTATION.scheme == "1.2.250.1.213.2.2"
    assert SubmissionDefaults(source_id="1.2.3").content_type.scheme == "1.2.250.1.213.2.2"


def test_every_catalogue_type_has_the_catalogue_class() -> None:
    for document in CATALOGUE:
        if document.type_code != "CERT_DECL":
            assert class_code_of(document.type_code) == document.class_code, document.key


def test_prescriptions_go_out_as_class_42() -> None:
    for code in ("57833-6", "PRESC-BIO", "PRESC-KINE", "PRESC-INF"):
        assert class_code_of(code) == "42"


def _header_with_templates(reference_dir: Path, *templates: str) -> CdaHeader:
    data = (reference_dir / "ci-sis" / "ExemplesCDA" / "VAC-NOTE_2023.01.xml").read_bytes()
    cda, _ = reidentify(data, PAT_TROIS.ins, PAT_TROIS.oid, PAT_TROIS.birth_name, PAT_TROIS.first_given_name,
                        PAT_TROIS.sex, PAT_TROIS.birth_date, "1.2.250.1.999.1")
    return dataclasses.replace(parse_cda_header(cda), template_ids=tuple(templates))


def test_format_codes_follow_ass_a11(reference_dir: Path) -> None:
    vac = _header_with_templates(reference_dir, "2.16.840.1.113883.10.12.1", "1.2.250.1.213.1.1.1.37")
    ips = _header_with_templates(reference_dir, "1.2.250.1.213.1.1.1.51")
    other = _header_with_templates(reference_dir, "1.2.250.1.213.1.1.1.6")
    assert format_code(vac).code == "urn:asip:ci-sis:vac:2019"
    assert format_code(ips).code == "urn:ihe:pcc:ips:2020"
    assert format_code(other).code != "urn:asip:ci-sis:vac:2019"
