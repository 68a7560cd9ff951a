"""The VIHF: the SAML 2.0 assertion that tells the DMP who acts, for which patient, from which structure.

Two modes ([CDT] 0.1-110...180): INDIRECTE, the structure's certificate signs the assertion and the professional's
identity comes from the CPS (or the demo configuration); DIRECTE, the professional's own card (CPS) signs it.
XML-DSig enveloped, exc-c14n, RSA-SHA256. Pro Santé Connect (``dmp/psc.py``): the structure's certificate signs,
the mode and the AuthnContextClassRef are configuration (no public source).
Attributes follow the ANS VIHF table (hl7v2-transmission-cda, mapping.md). The access mode (PurposeOfUse, in
1.2.250.1.213.1.1.4.248) is "normal" unless the professional uses bris de glace or centre 15; the codes of those
two are not in any public source found (they are configuration, ``[dmp] purpose_bris_de_glace``, ``..._centre15``).
Connexion secrète ([CDT] 0.1-300/340, EX_GEN-1550; DevBox): the attribute
``urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code`` = INVISIBLE_REPRESENTANTS_LEGAUX in
1.2.250.1.213.1.1.4.13 tells the DMP that a minor's documents are hidden from the legal representatives.
Never logs the assertion (it names the patient).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from cryptography import x509
from lxml import etree

from agent.dmp.models import Professional
from agent.domain.signing import Signer
from agent.xml.signing import DS, sign_enveloped

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
HL7 = "urn:hl7-org:v3"
VIHF_VERSION = "4.0"  # the ANS table's constant (its worked example and DRIMbox still show 3.0: configuration)
MODE_INDIRECT, MODE_DIRECT = "INDIRECTE", "DIRECTE"
PURPOSE_NORMAL = "normal"
PROFESSION_PHYSICIAN, PROFESSION_PHARMACIST = "10", "21"  # TRE_G15 ProfessionSante
CONFIDENTIALITY_ATTRIBUTE = "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code"
HIDDEN_FROM_LEGAL_REPS = "INVISIBLE_REPRESENTANTS_LEGAUX"
MASKING_SCHEME = "1.2.250.1.213.1.1.4.13"


@dataclass(frozen=True, slots=True)
class VihfSettings:
    structure_id: str  # Identifiant_Structure (e.g. 3 + FINESS, or the cabinet's id)
    sector: str = "SA07^1.2.250.1.71.4.2.4"  # Secteur_Activite (JDV_J61): cabinet individuel
    lps_name: str = "Relais"
    lps_version: str = "0.1.0"
    lps_id: str = ""
    lps_homologation: str = ""
    mode: str = MODE_INDIRECT  # INDIRECTE (structure certificate) or DIRECTE (the CPS signs)
    version: str = VIHF_VERSION
    purpose_bris_de_glace: str = "BRIS_DE_GLACE"  # no public source: configuration
    purpose_centre15: str = "CENTRE_15"  # no public source: configuration
    # The attribute carrying the reason of a bris de glace / centre 15 access. [CDT] MEMENTO "BRIS de GLACE" (the
    # PS "doit justifier son choix en saisissant le motif") and 0.1-220 want the reason; neither the ANS VIHF table
    # (hl7v2-transmission-cda mapping.md), nor DRIMbox (VIHFField.java), nor the CNDA book names a VIHF attribute
    # for it: configuration ([dmp] vihf_reason_attribute); empty, the reason is traced locally and not sent.
    reason_attribute: str = ""
    # The pharmacist's second role: the ANS VIHF table (mapping.md, subject:role 2nd occurrence) says "pour les
    # pharmaciens : JDV_J65_SubjectRole_DMP avec un codeSystem provenant de TRE_G05_SousSectionTableauCNOP"; the
    # OID of TRE_G05 is in none of the sources at hand: configuration ([dmp] pharmacist_role_scheme); empty, a
    # pharmacist's VIHF has no second role (the DMP may refuse it: set it from the NOS).
    pharmacist_role_scheme: str = ""

    def purpose(self, access_mode: str) -> str:
        """The PurposeOfUse code of an access mode (normal, bris_de_glace, centre_15)."""
        return {"bris_de_glace": self.purpose_bris_de_glace, "centre_15": self.purpose_centre15}.get(
            access_mode, PURPOSE_NORMAL)


def _attr(stmt: etree._Element, name: str, value: str | etree._Element) -> None:
    a = etree.SubElement(stmt, f"{{{SAML}}}Attribute", Name=name)
    v = etree.SubElement(a, f"{{{SAML}}}AttributeValue")
    if isinstance(value, str):
        v.text = value
    else:
        v.append(value)


def _ce(tag: str, code: str, system: str, display: str) -> etree._Element:
    el = etree.Element(f"{{{HL7}}}{tag}", nsmap={None: HL7, "xsi": XSI}, code=code, codeSystem=system,
                       displayName=display)
    el.set(f"{{{XSI}}}type", "CE")
    return el


def build_assertion(settings: VihfSettings, professional: Professional, ins: str, ins_oid: str,
                    issuer_dn: str, now: dt.datetime, *, purpose: str = PURPOSE_NORMAL, secret: bool = False,
                    assertion_id: str | None = None, authn_context: str = "", reason: str = "") -> etree._Element:
    instant = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    a = etree.Element(f"{{{SAML}}}Assertion", nsmap={"saml2": SAML, "xsi": XSI},
                      ID=assertion_id or f"_{uuid.uuid4()}", IssueInstant=instant, Version="2.0")
    issuer = etree.SubElement(a, f"{{{SAML}}}Issuer",
                              Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName")
    issuer.text = issuer_dn
    subject = etree.SubElement(a, f"{{{SAML}}}Subject")
    etree.SubElement(subject, f"{{{SAML}}}NameID").text = professional.national_id
    authn = etree.SubElement(a, f"{{{SAML}}}AuthnStatement", AuthnInstant=instant)
    ctx = etree.SubElement(authn, f"{{{SAML}}}AuthnContext")
    etree.SubElement(ctx, f"{{{SAML}}}AuthnContextClassRef").text = authn_context or (
        "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI" if professional.rpps
        else "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified")
    stmt = etree.SubElement(a, f"{{{SAML}}}AttributeStatement")
    _attr(stmt, "VIHF_Version", settings.version)
    _attr(stmt, "Authentification_Mode", settings.mode)
    _attr(stmt, "Secteur_Activite", settings.sector)
    _attr(stmt, "urn:oasis:names:tc:xacml:2.0:resource:resource-id", f"{ins}^^^&{ins_oid}&ISO^NH")
    _attr(stmt, "Ressource_URN", "urn:dmp")
    _attr(stmt, "urn:oasis:names:tc:xspa:1.0:subject:subject-id",
          f"{professional.family_name} {professional.given_name}".strip())
    _attr(stmt, "Identifiant_Structure", settings.structure_id)
    _attr(stmt, "LPS_Nom", settings.lps_name)
    _attr(stmt, "LPS_Version", settings.lps_version)
    if settings.lps_id:
        _attr(stmt, "LPS_ID", settings.lps_id)
    if settings.lps_homologation:
        _attr(stmt, "LPS_ID_HOMOLOGATION_DMP", settings.lps_homologation)
    _attr(stmt, "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
          _ce("PurposeOfUse", purpose, "1.2.250.1.213.1.1.4.248",
              "Accès normal" if purpose == PURPOSE_NORMAL else purpose))
    if reason and purpose != PURPOSE_NORMAL and settings.reason_attribute:
        _attr(stmt, settings.reason_attribute, reason)
    if secret:
        _attr(stmt, CONFIDENTIALITY_ATTRIBUTE,
              _ce("ConfidentialityCode", HIDDEN_FROM_LEGAL_REPS, MASKING_SCHEME, "Invisible aux représentants légaux"))
    _attr(stmt, "urn:oasis:names:tc:xacml:2.0:subject:role",
          _ce("Role", professional.profession, "1.2.250.1.71.1.2.7", "Profession"))
    second = second_role(settings, professional)
    if second is not None:
        _attr(stmt, "urn:oasis:names:tc:xacml:2.0:subject:role", _ce("Role", *second))
    return a


def second_role(settings: VihfSettings, professional: Professional) -> tuple[str, str, str] | None:
    """The VIHF's second subject:role (code, codeSystem, displayName) per the ANS VIHF table: a physician's
    savoir-faire in TRE_R01 (1.2.250.1.71.4.2.5), a pharmacist's CNOP sub-section in TRE_G05 (its OID is
    configuration, see ``VihfSettings.pharmacist_role_scheme``); None for the other professions."""
    if not professional.specialty:
        return None
    if professional.profession == PROFESSION_PHYSICIAN:
        return professional.specialty, "1.2.250.1.71.4.2.5", "Savoir-faire"
    if professional.profession == PROFESSION_PHARMACIST and settings.pharmacist_role_scheme:
        return professional.specialty, settings.pharmacist_role_scheme, "Sous-section du tableau de l'Ordre"
    return None


def signed_assertion(settings: VihfSettings, professional: Professional, ins: str, ins_oid: str,
                     signer: Signer, now: dt.datetime, *, purpose: str = PURPOSE_NORMAL,
                     secret: bool = False, authn_context: str = "", reason: str = "") -> etree._Element:
    """Build and sign (blocking: run in a thread) the VIHF for one request; ``signer`` is the structure's
    certificate in indirect mode, the professional's card in direct mode."""
    cert = x509.load_der_x509_certificate(signer.certificate_der)
    assertion = build_assertion(settings, professional, ins, ins_oid, cert.subject.rfc4514_string(), now,
                                purpose=purpose, secret=secret, authn_context=authn_context, reason=reason)
    # The signature goes right after Issuer, as SAML's schema wants.
    placeholder = etree.Element(f"{{{DS}}}Signature", nsmap={"ds": DS}, Id="placeholder")
    assertion.insert(1, placeholder)
    return sign_enveloped(assertion, signer)


def read_assertion(assertion: etree._Element) -> dict[str, list[str]]:
    """Attribute name -> values (text or the CE code) of a verified assertion."""
    out: dict[str, list[str]] = {}
    for attr in assertion.iter(f"{{{SAML}}}Attribute"):
        for value in attr.iterfind(f"{{{SAML}}}AttributeValue"):
            child = value[0] if len(value) else None
            text = child.get("code", "") if child is not None else (value.text or "").strip()
            out.setdefault(attr.get("Name", ""), []).append(text)
    nameid = assertion.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    out["NameID"] = [(nameid.text or "").strip()] if nameid is not None else []
    return out
