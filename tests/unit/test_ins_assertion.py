"""The INSi assertions: valid SAML 2.0 (OASIS schema), signatures an independent verifier (xmlsec1) accepts, and the
content INSi expects (CNDA INSi 2.02: Issuer X509SubjectName, NameID with NameQualifier, billing number, AMO
specialty, activity sector; INSi 1.01 / 1.02: a carte Vitale assertion built at send time).

The schemas come from Debian's opensaml-schemas and xmltooling-schemas (``scripts/system-packages.txt``); the
folders can be moved with ``RELAIS_SAML_SCHEMAS`` (colon-separated)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from agent.errors import Unavailable
from agent.ins.assertion import (
    SAML,
    X509_SUBJECT_NAME,
    ProfessionalIdentity,
    VitaleCardData,
    professional_assertion,
    subject_dn,
    vitale_assertion,
)
from agent.ins.client import InsiSettings
from agent.ins.search import cps_caller
from agent.softkey import SoftwareSigner
from agent.xml.signing import sign_enveloped
from relais_sandbox.pki import SandboxPki

NOW = dt.datetime(2026, 12, 7, 9, 30, tzinfo=dt.UTC)
SCHEMA_DIRS = os.environ.get("RELAIS_SAML_SCHEMAS", "/usr/share/xml/opensaml:/usr/share/xml/xmltooling").split(":")


class _LocalSchemas(etree.Resolver):
    """The W3C schemas the SAML schema imports by URL, from the local folders (never the network)."""

    def resolve(self, url: str | None, public_id: str | None, context: object) -> object:
        name = (url or "").rsplit("/", 1)[-1]
        for folder in SCHEMA_DIRS:
            if (Path(folder) / name).is_file():
                return self.resolve_filename(str(Path(folder) / name), context)
        return None


@pytest.fixture(scope="module")
def saml_schema() -> etree.XMLSchema:
    main = next((Path(d) / "saml-schema-assertion-2.0.xsd" for d in SCHEMA_DIRS
                 if (Path(d) / "saml-schema-assertion-2.0.xsd").is_file()), None)
    if main is None:
        pytest.skip("schéma SAML 2.0 absent : apt-get install opensaml-schemas xmltooling-schemas")
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalSchemas())
    return etree.XMLSchema(etree.parse(str(main), parser))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return SandboxPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def signer(pki: SandboxPki) -> SoftwareSigner:
    creds = pki.issue("doctor", common_name="Dr Claire DURAND", client=True)
    return SoftwareSigner.from_files(creds.cert_path, creds.key_path)


def xmlsec_verifies(signed: etree._Element, ca: Path, tmp_path: Path) -> bool:
    """xmlsec1, a verifier that shares no code with signxml, with the test CA as the only trust anchor."""
    if shutil.which("xmlsec1") is None:
        pytest.skip("xmlsec1 absent : apt-get install xmlsec1")
    path = tmp_path / "assertion.xml"
    path.write_bytes(etree.tostring(signed))
    done = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(ca),
                           "--id-attr:ID", f"{SAML}:Assertion", str(path)],
                          capture_output=True, timeout=30, check=False)
    return done.returncode == 0


def _attributes(assertion: etree._Element) -> dict[str, str]:
    return {str(a.get("Name")): str(a.findtext(f"{{{SAML}}}AttributeValue"))
            for a in assertion.iter(f"{{{SAML}}}Attribute")}


def test_insi_2_02_professional_assertion(saml_schema: etree.XMLSchema, signer: SoftwareSigner, pki: SandboxPki,
                                           tmp_path: Path) -> None:
    who = ProfessionalIdentity(subject_dn(signer.certificate_der), "810003456789", "1.2.250.1.71.4.2.1",
                               "123456789", "01", "SA07")
    signed = sign_enveloped(professional_assertion(who, "_ps1", NOW), signer)
    saml_schema.assertValid(signed)
    assert xmlsec_verifies(signed, pki.ca_path, tmp_path)
    issuer = signed.find(f"{{{SAML}}}Issuer")
    assert issuer is not None and issuer.get("Format") == X509_SUBJECT_NAME
    assert issuer.text == "CN=Dr Claire DURAND,O=Relais sandbox (test only),C=FR"
    name_id = signed.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    assert name_id is not None and (name_id.text, name_id.get("NameQualifier")) == (
        "810003456789", "1.2.250.1.71.4.2.1")
    assert _attributes(signed) == {"identifiantFacturation": "123456789", "codeSpecialiteAMO": "01",
                                   "secteurActivite": "SA07"}
    # The DMP's VIHF names have no place here.
    vihf = ("Identifiant_Structure", "Secteur_Activite", "LPS_")
    assert not any(name.startswith(vihf) for name in _attributes(signed))


def test_a_tampered_assertion_fails_the_independent_verifier(signer: SoftwareSigner, pki: SandboxPki,
                                                             tmp_path: Path) -> None:
    who = ProfessionalIdentity(subject_dn(signer.certificate_der), "810003456789", "q", "123456789", "01", "SA07")
    signed = sign_enveloped(professional_assertion(who, "_ps2", NOW), signer)
    billing = next(a for a in signed.iter(f"{{{SAML}}}AttributeValue"))
    billing.text = "999999999"
    assert not xmlsec_verifies(signed, pki.ca_path, tmp_path)
    other = SandboxPki(tmp_path / "other")
    untampered = sign_enveloped(professional_assertion(who, "_ps3", NOW), signer)
    assert not xmlsec_verifies(untampered, other.ca_path, tmp_path)


def test_insi_1_01_carte_vitale_assertion(saml_schema: etree.XMLSchema, signer: SoftwareSigner, pki: SandboxPki,
                                          tmp_path: Path) -> None:
    card = VitaleCardData(serial="468929507", insured_nir="277076322082910", birth_date="1977-07-14", birth_rank=1)
    signed = sign_enveloped(vitale_assertion(card, subject_dn(signer.certificate_der), "_cv1", NOW), signer)
    saml_schema.assertValid(signed)
    assert xmlsec_verifies(signed, pki.ca_path, tmp_path)
    name_id = signed.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    assert name_id is not None and name_id.text == "468929507"
    assert _attributes(signed) == {"nirOuvrantDroit": "2770763220829", "dateNaissance": "14071977",
                                   "rangNaissance": "1"}


def test_insi_1_02_the_vitale_assertion_is_dated_when_it_is_built() -> None:
    card = VitaleCardData("468929507", "277076322082910", "1977-07-14", 1)
    later = NOW + dt.timedelta(minutes=20)
    built = vitale_assertion(card, "CN=x", "_cv2", later)
    assert built.get("IssueInstant") == "2026-12-07T09:50:00.000Z"
    conditions = built.find(f"{{{SAML}}}Conditions")
    assert conditions is not None and conditions.get("NotBefore") == "2026-12-07T09:50:00.000Z"


def test_a_doctor_without_amo_specialty_or_a_caller_without_billing_number_is_stopped_before_insi(
        signer: SoftwareSigner) -> None:
    settings = InsiSettings(url="https://insi.invalid/lps", billing_id="123456789")
    with pytest.raises(Unavailable) as stopped:
        cps_caller(settings, signer, "810003456789", "10")
    assert stopped.value.code == "insi_not_configured" and "amo_specialty" in stopped.value.message
    assert cps_caller(settings, signer, "810003456789", "40").channel == "cpx"  # a dentist: no AMO specialty needed
    with pytest.raises(Unavailable) as no_billing:
        cps_caller(InsiSettings(url="https://insi.invalid/lps", amo_specialty="01"), signer, "810003456789", "10")
    assert "billing_id" in no_billing.value.message
