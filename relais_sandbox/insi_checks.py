"""The INSi simulator's checks of who calls: the assertions' signatures against the test PKI, their content, their age.

What the simulator demands (the real service's rules as far as public material gives them, see
``agent/ins/assertion.py``; where it is silent, the simulator is strict so that the client cannot drift):

- on the CPx endpoint, one professional's assertion; on the mutual-TLS endpoint TLS already authenticated the
  structure and its assertion, if any, is checked the same way;
- every assertion signed (XML-DSig) by a certificate the sandbox's test CA issued: a self-signed certificate or one
  from another CA is refused; ``Issuer`` in X509SubjectName format naming that very certificate's subject;
  ``NameID`` with a ``NameQualifier``; ``Conditions`` in force now;
- the professional's attributes: ``identifiantFacturation`` and ``secteurActivite``; ``codeSpecialiteAMO`` when
  the certificate names a doctor (profession 10 in its ``title``, as the test CPS carries it);
- a search by carte Vitale carries a carte Vitale assertion built less than ``VITALE_MAX_AGE`` ago, whose card data
  agree with the COUVERTURE and the RECVITALE body; a card the sandbox knows must belong to that insured person.

Only the element the signature covers is read after verification (signature wrapping).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree

from agent.errors import RelaisError
from agent.xml.signing import verify_enveloped
from relais_sandbox.identities import VirtualCard
from relais_sandbox.insi_wire import VITALE, AssertionView, Fault, SearchRequest, read_assertion, refusal

X509_SUBJECT_NAME = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
CARD_QUALIFIER = "numSerieCarte"
VITALE_MAX_AGE = dt.timedelta(minutes=5)
SKEW = dt.timedelta(seconds=60)


class Refused(Exception):
    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.detail)
        self.fault = fault


def _refuse(detail: str, code: str = "sandbox_authentication") -> Refused:
    return Refused(refusal(code, detail))


def _time(value: str, what: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _refuse(f"{what} illisible") from exc
    if parsed.tzinfo is None:
        raise _refuse(f"{what} sans fuseau horaire")
    return parsed


def _verified(assertion: etree._Element, ca: x509.Certificate, now: dt.datetime
              ) -> tuple[AssertionView, x509.Certificate]:
    try:
        verified = verify_enveloped(assertion, [ca], now, id_attribute="ID")
    except RelaisError as exc:
        raise _refuse(f"assertion refusée : {exc.message}") from exc
    view = read_assertion(verified.signed)
    if view.issuer_format != X509_SUBJECT_NAME:
        raise _refuse("Issuer attendu au format X509SubjectName")
    try:
        named = x509.Name.from_rfc4514_string(view.issuer)
    except ValueError as exc:
        raise _refuse("Issuer n'est pas un nom distinctif X.509") from exc
    if named != verified.certificate.subject:
        raise _refuse("Issuer ne nomme pas le certificat qui signe l'assertion")
    if not view.name_id or not view.name_qualifier:
        raise _refuse("NameID et son NameQualifier sont requis")
    if not (_time(view.not_before, "NotBefore") - SKEW <= now < _time(view.not_on_or_after, "NotOnOrAfter") + SKEW):
        raise _refuse("assertion hors de sa période de validité")
    return view, verified.certificate


def _is_doctor(certificate: x509.Certificate) -> bool:
    return any(a.value == "10" for a in certificate.subject.get_attributes_for_oid(NameOID.TITLE))


def check(request: SearchRequest, *, channel: str, ca: x509.Certificate, now: dt.datetime,
          cards: Mapping[str, VirtualCard]) -> None:
    """Raise ``Refused`` (with the fault to send) when the caller or its assertions do not pass."""
    professional = [a for a in request.assertions if read_assertion(a).name_qualifier != CARD_QUALIFIER]
    vitale = [a for a in request.assertions if read_assertion(a).name_qualifier == CARD_QUALIFIER]
    if len(professional) > 1 or (channel == "cpx" and not professional):
        raise _refuse("une assertion du professionnel (et une seule) est attendue dans wsse:Security")
    for assertion in professional:
        view, certificate = _verified(assertion, ca, now)
        for name in ("identifiantFacturation", "secteurActivite"):
            if not view.attributes.get(name):
                raise _refuse(f"attribut {name} absent de l'assertion du professionnel")
        if _is_doctor(certificate) and not view.attributes.get("codeSpecialiteAMO"):
            raise _refuse("attribut codeSpecialiteAMO obligatoire pour un médecin")
    if request.action != VITALE:
        return
    if len(vitale) != 1:
        raise _refuse("une assertion carte Vitale (et une seule) est attendue pour une recherche par carte Vitale")
    view, _ = _verified(vitale[0], ca, now)
    issued = _time(view.issue_instant, "IssueInstant")
    if not now - VITALE_MAX_AGE <= issued <= now + SKEW:
        raise _refuse("assertion carte Vitale périmée : elle doit être produite au moment de l'appel",
                      "sandbox_vitale_assertion")
    _check_card(request, view, cards)


def _check_card(request: SearchRequest, view: AssertionView, cards: Mapping[str, VirtualCard]) -> None:
    if not (request.coverage_insured and request.coverage_birth_date and request.coverage_rank):
        raise _refuse("COUVERTURE sans ASSURE ni BENEFICIAIRE pour une recherche par carte Vitale", "sandbox_request")
    attrs = view.attributes
    expected = {
        "nirOuvrantDroit": {request.od_number[:13], request.coverage_insured[:13]},
        "dateNaissance": {request.card_birth_date, request.coverage_birth_date},
        "rangNaissance": {request.rank, request.coverage_rank},
    }
    for name, values in expected.items():
        if len(values) != 1 or attrs.get(name) not in values:
            raise _refuse(f"{name} diffère entre l'assertion carte Vitale, COUVERTURE et RECVITALE",
                          "sandbox_vitale_assertion")
    known = cards.get(view.name_id)
    if known is not None and known.insured_nir[:13] != request.od_number[:13]:
        raise _refuse("la carte Vitale de ce numéro de série n'appartient pas à cet assuré", "sandbox_vitale_assertion")
