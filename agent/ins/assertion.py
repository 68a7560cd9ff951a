"""The SAML 2.0 assertions an INSi request carries in its WS-Security header, as pure builders: no signing here.

The professional's assertion ("assertion PS") follows the public INSi material (the INSi integration guide
SEL-MP-043 §3.2 as a public summary quotes it, and an open-source INSi client's ``AssertionPsSecurity``):

- ``Issuer`` in format ``X509SubjectName``: the subject DN of the certificate that signs (the CPS, or the
  structure's INSI-AUTO / INSI-MANU certificate);
- ``Subject/NameID`` with a ``NameQualifier``: who acts (the professional's national identifier, or the
  structure's); the qualifiers are configuration, as no public source gives them for a CPS (the guide's Pro Santé
  Connect example uses ``PSC``);
- attributes ``identifiantFacturation`` (AM billing number, FINESS or SIRET), ``codeSpecialiteAMO`` (mandatory
  for doctors and doctors in training), ``secteurActivite``.

The carte Vitale assertion of a search by carte Vitale has no public description (the Pyxistem templates only
name it ``AssertionCV``; in production the SESAM-Vitale API produces it). Relais builds its own, documented here
and in ``relais_sandbox/insi_wire.py``, which reads it: a SAML 2.0 assertion built at send time (never at
selection: CNDA INSi 1.02 waits 20 minutes in between), valid ``VITALE_VALIDITY``, whose NameID is the card's
serial number (NameQualifier ``numSerieCarte``) and whose attributes are ``nirOuvrantDroit`` (13 characters),
``dateNaissance`` (``JJMMAAAA``) and ``rangNaissance`` of the selected beneficiary, signed by the same key as
the professional's assertion. Both go through ``agent.xml.signing.sign_enveloped``: the ``ds:Signature`` slot sits
right after ``Issuer``, where the SAML schema wants it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from lxml import etree

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
X509_SUBJECT_NAME = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
SERIAL_QUALIFIER = "numSerieCarte"
PS_VALIDITY = dt.timedelta(minutes=5)
VITALE_VALIDITY = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ProfessionalIdentity:
    """What the professional's assertion says (no patient data)."""

    issuer_dn: str  # the signing certificate's subject, RFC 4514
    name_id: str  # the professional's national identifier (8 + RPPS), or the structure's identifier
    name_qualifier: str
    billing_id: str  # identifiantFacturation
    amo_specialty: str  # codeSpecialiteAMO; empty only for professions that have none
    activity_sector: str  # secteurActivite


@dataclass(frozen=True, slots=True)
class VitaleCardData:
    """What the carte Vitale assertion says of the card and the selected beneficiary."""

    serial: str
    insured_nir: str  # the ouvrant droit's NIR: 13 characters are sent
    birth_date: str  # AAAA-MM-JJ, possibly lunar
    birth_rank: int


def subject_dn(certificate_der: bytes) -> str:
    """The certificate's subject as the X509SubjectName format writes it (RFC 4514, most specific first)."""
    return x509.load_der_x509_certificate(certificate_der).subject.rfc4514_string()


def stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def vitale_date(iso: str) -> str:
    """``AAAA-MM-JJ`` to the ``JJMMAAAA`` the CNDA's Vitale test data uses (lunar dates kept as they are)."""
    year, month, day = iso.split("-")
    return f"{day}{month}{year}"


def _sub(parent: etree._Element, name: str, text: str | None = None, **attrs: str) -> etree._Element:
    node = etree.SubElement(parent, f"{{{SAML}}}{name}", attrs)
    if text is not None:
        node.text = text
    return node


def _skeleton(assertion_id: str, now: dt.datetime, issuer: str, validity: dt.timedelta, name_id: str,
              qualifier: str) -> tuple[etree._Element, etree._Element]:
    issued = stamp(now)
    root = etree.Element(f"{{{SAML}}}Assertion", {"ID": assertion_id, "IssueInstant": issued, "Version": "2.0"},
                         nsmap={"saml2": SAML})
    _sub(root, "Issuer", issuer, Format=X509_SUBJECT_NAME)
    etree.SubElement(root, f"{{{DS}}}Signature", {"Id": "placeholder"}, nsmap={"ds": DS})
    _sub(_sub(root, "Subject"), "NameID", name_id, NameQualifier=qualifier)
    _sub(root, "Conditions", NotBefore=issued, NotOnOrAfter=stamp(now + validity))
    return root, _sub(root, "AttributeStatement")


def _attribute(statement: etree._Element, name: str, value: str) -> None:
    _sub(_sub(statement, "Attribute", Name=name), "AttributeValue", value)


def professional_assertion(who: ProfessionalIdentity, assertion_id: str, now: dt.datetime) -> etree._Element:
    """The professional's assertion, ready for ``sign_enveloped``."""
    root, statement = _skeleton(assertion_id, now, who.issuer_dn, PS_VALIDITY, who.name_id, who.name_qualifier)
    _attribute(statement, "identifiantFacturation", who.billing_id)
    if who.amo_specialty:
        _attribute(statement, "codeSpecialiteAMO", who.amo_specialty)
    _attribute(statement, "secteurActivite", who.activity_sector)
    return root


def vitale_assertion(card: VitaleCardData, issuer_dn: str, assertion_id: str, now: dt.datetime) -> etree._Element:
    """The carte Vitale assertion (a Relais convention, see the module docstring), ready for ``sign_enveloped``."""
    root, statement = _skeleton(assertion_id, now, issuer_dn, VITALE_VALIDITY, card.serial, SERIAL_QUALIFIER)
    _attribute(statement, "nirOuvrantDroit", card.insured_nir[:13])
    _attribute(statement, "dateNaissance", vitale_date(card.birth_date))
    _attribute(statement, "rangNaissance", str(card.birth_rank))
    return root
