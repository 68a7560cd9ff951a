"""The VIHF's second role (physicians, pharmacists) and the reason of an emergency access: what the assertion says,
per the ANS VIHF table (hl7v2-transmission-cda mapping.md) and, where no source names it, the configuration."""

from __future__ import annotations

import datetime as dt

from agent.dmp.models import Professional
from agent.dmp.vihf import VihfSettings, build_assertion, read_assertion

NOW = dt.datetime(2026, 12, 7, 17, 0, tzinfo=dt.UTC)
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
REASON = "Motif_Acces"  # a name chosen by configuration: no public source names the attribute
PHYSICIAN = Professional(rpps="10001234567", family_name="DEMO", given_name="Alice", specialty="SM26")
PHARMACIST = Professional(rpps="10001234568", family_name="OFFICINE", given_name="Paul", profession="21",
                          specialty="G05_A")


def _roles(settings: VihfSettings, who: Professional) -> list[tuple[str | None, str | None]]:
    assertion = build_assertion(settings, who, "279035121518989", "1.2.250.1.213.1.4.10", "CN=x", NOW)
    return [(el.get("code"), el.get("codeSystem"))
            for attr in assertion.iter("{urn:oasis:names:tc:SAML:2.0:assertion}Attribute") if attr.get("Name") == ROLE
            for el in attr.iter("{urn:hl7-org:v3}Role")]


def test_cdt_0_1_110_physician_second_role_is_the_savoir_faire() -> None:
    assert _roles(VihfSettings(structure_id="1"), PHYSICIAN) == [("10", "1.2.250.1.71.1.2.7"),
                                                                  ("SM26", "1.2.250.1.71.4.2.5")]


def test_cdt_0_1_130_pharmacist_second_role_in_the_configured_tre_g05() -> None:
    configured = VihfSettings(structure_id="1", pharmacist_role_scheme="9.9.9.5")
    assert _roles(configured, PHARMACIST) == [("21", "1.2.250.1.71.1.2.7"), ("G05_A", "9.9.9.5")]
    # Not configured (the OID is in no source at hand): the profession alone, never a guessed code system.
    assert _roles(VihfSettings(structure_id="1"), PHARMACIST) == [("21", "1.2.250.1.71.1.2.7")]


def test_the_reason_of_bris_de_glace_goes_in_the_configured_attribute_only() -> None:
    configured = VihfSettings(structure_id="1", reason_attribute=REASON)

    def attrs(settings: VihfSettings, purpose: str) -> dict[str, list[str]]:
        return read_assertion(build_assertion(settings, PHYSICIAN, "279035121518989", "1.2.250.1.213.1.4.10",
                                              "CN=x", NOW, purpose=purpose, reason="Patient inconscient"))

    sent = attrs(configured, configured.purpose("bris_de_glace"))
    assert sent[REASON] == ["Patient inconscient"]
    assert sent["urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"] == ["BRIS_DE_GLACE"]
    assert REASON not in attrs(configured, "normal")  # a normal access has no reason
    assert not any("Patient" in v for vs in attrs(VihfSettings(structure_id="1"), "BRIS_DE_GLACE").values()
                   for v in vs)  # not configured: traced locally, not sent
