"""What crosses the wire on the INSi simulator's side: requests read with XPath, answers and faults written out.

Written from the element names of the public INSi material (open-source clients' requests, the CNAM answer and
fault fixtures, the Pyxistem templates) and deliberately NOT from the agent's builders (``agent/ins``): the
client and the simulator must not share one reading of the service. Requests are read with XPath on the real
element names, whatever prefixes the sender chose; answers are written in the layout of the CNAM fixtures
(``RESULTAT`` in its default namespace inside ``env:Body``, ``INSHISTO`` dates first, ``TIQ`` with ``Prenom`` and
``ListePrenom``); faults as the CNAM writes them (``S:Receiver`` / ``S:siram_40``, ``siram:Erreur`` in the Detail).

Only ``siram_40`` with ``insi_101`` / ``insi_102`` (temporary) and ``siram_100`` with ``desir_550`` (software
not authorised) are public CNAM codes. The simulator's own refusals (bad signature, stale carte Vitale
assertion, malformed request) use codes starting with ``sandbox_``: no public source names the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from agent.errors import RelaisError
from agent.xml.safe import parse

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "bam": "urn:siram:bam:ctxbam",
    "lps": "urn:siram:lps:ctxlps",
    "sans": "http://www.cnamts.fr/INSiRecSans",
    "vit": "http://www.cnamts.fr/INSiRecVit",
}
TRAITS = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
VITALE = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
MAX_REQUEST = 1 << 20


class BadRequest(ValueError):
    """Not an INSi request the simulator can read (the message is for the fault's Detail)."""


def _one(node: etree._Element, path: str) -> str:
    found = node.xpath(f"string({path})", namespaces=NS)
    return str(found).strip()


@dataclass
class SearchRequest:
    action: str
    message_id: str
    emitter: str  # ContexteBAM/Emetteur
    idam: str
    assertions: list[etree._Element] = field(default_factory=list)
    # search by traits
    birth_name: str = ""
    given: str = ""  # Prenom as sent: one given name or several, space-separated
    sex: str = ""
    birth_date: str = ""
    birth_place: str = ""
    # search by carte Vitale (body, then the ContexteBAM's COUVERTURE)
    od_number: str = ""  # MatriculeOD/NumIdentifiant, 13 characters
    individual_number: str = ""
    card_birth_date: str = ""  # JJMMAAAA as sent
    rank: str = ""
    coverage_insured: str = ""
    coverage_birth_date: str = ""
    coverage_rank: str = ""


def read_request(data: bytes) -> SearchRequest:
    try:
        root = parse(data, max_bytes=MAX_REQUEST, what="de requête INSi")
    except (ValueError, RelaisError) as exc:
        raise BadRequest(str(exc)) from exc
    if root.xpath("local-name(.)") != "Envelope" or root.xpath("namespace-uri(.)") != NS["s"]:
        raise BadRequest("pas une enveloppe SOAP 1.2")
    header = root.xpath("s:Header", namespaces=NS)
    body = root.xpath("s:Body", namespaces=NS)
    if not header or not body:
        raise BadRequest("en-tête ou corps SOAP absent")
    h = header[0]
    if not h.xpath("bam:ContexteBAM", namespaces=NS) or not h.xpath("lps:ContexteLPS/lps:LPS", namespaces=NS):
        raise BadRequest("ContexteBAM ou ContexteLPS absent")
    request = SearchRequest(
        action=_one(h, "wsa:Action"), message_id=_one(h, "wsa:MessageID"),
        emitter=_one(h, "bam:ContexteBAM/bam:Emetteur"), idam=_one(h, "lps:ContexteLPS/lps:LPS/lps:IDAM"),
        assertions=list(h.xpath("wsse:Security/saml:Assertion", namespaces=NS)))
    if not request.emitter or _one(h, "lps:ContexteLPS/lps:Emetteur") != request.emitter:
        raise BadRequest("Emetteur absent ou différent entre ContexteBAM et ContexteLPS")
    b = body[0]
    if request.action == TRAITS:
        sans = b.xpath("sans:RECSANSVITALE", namespaces=NS)
        if not sans:
            raise BadRequest("RECSANSVITALE absent")
        node = sans[0]
        if len(node.xpath("sans:Prenom", namespaces=NS)) != 1:
            raise BadRequest("un élément Prenom est attendu")
        request.birth_name, request.given = _one(node, "sans:NomNaissance"), _one(node, "sans:Prenom")
        request.sex, request.birth_date = _one(node, "sans:Sexe"), _one(node, "sans:DateNaissance")
        request.birth_place = _one(node, "sans:LieuNaissance")
    elif request.action == VITALE:
        vit = b.xpath("vit:RECVITALE", namespaces=NS)
        if not vit:
            raise BadRequest("RECVITALE absent")
        node = vit[0]
        request.od_number = _one(node, "vit:MatriculeOD/vit:NumIdentifiant")
        request.individual_number = _one(node, "vit:MatriculeIndividu/vit:NumIdentifiant")
        request.birth_name = _one(node, "vit:NomNaissance")
        request.card_birth_date, request.rank = _one(node, "vit:DateNaissance"), _one(node, "vit:RangNaissance")
        cover = "bam:ContexteBAM/bam:COUVERTURE"
        request.coverage_insured = _one(h, f"{cover}/bam:ASSURE/bam:Id/bam:Num")
        request.coverage_birth_date = _one(h, f"{cover}/bam:BENEFICIAIRE/bam:DateNai")
        request.coverage_rank = _one(h, f"{cover}/bam:BENEFICIAIRE/bam:Rang")
    else:
        raise BadRequest(f"action inconnue : {request.action[:80]}")
    return request


@dataclass(frozen=True, slots=True)
class AssertionView:
    """An assertion's fields as the simulator checks them (read from the element the signature covers)."""

    issuer: str
    issuer_format: str
    name_id: str
    name_qualifier: str
    issue_instant: str
    not_before: str
    not_on_or_after: str
    attributes: dict[str, str]


def read_assertion(assertion: etree._Element) -> AssertionView:
    attributes = {str(a.get("Name")): _one(a, "saml:AttributeValue")
                  for a in assertion.xpath("saml:AttributeStatement/saml:Attribute", namespaces=NS)}
    return AssertionView(
        issuer=_one(assertion, "saml:Issuer"), issuer_format=_one(assertion, "saml:Issuer/@Format"),
        name_id=_one(assertion, "saml:Subject/saml:NameID"),
        name_qualifier=_one(assertion, "saml:Subject/saml:NameID/@NameQualifier"),
        issue_instant=_one(assertion, "@IssueInstant"), not_before=_one(assertion, "saml:Conditions/@NotBefore"),
        not_on_or_after=_one(assertion, "saml:Conditions/@NotOnOrAfter"), attributes=attributes)


# --- answers ------------------------------------------------------------------------------------------------

LABELS = {"00": "OK", "01": "Aucune identite trouvee", "02": "Plusieurs identites trouvees"}
_OPEN = ('<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
         '<env:Body xmlns:S="http://www.w3.org/2003/05/soap-envelope" '
         'xmlns:env="http://www.w3.org/2003/05/soap-envelope">')
_CLOSE = "</env:Body></soap:Envelope>"


@dataclass(frozen=True, slots=True)
class Former:
    matricule: str
    oid: str
    start: str = ""
    end: str = ""


@dataclass(frozen=True, slots=True)
class Found:
    matricule: str  # 15 characters
    oid: str
    birth_name: str
    given_names: tuple[str, ...]
    sex: str
    birth_date: str
    birth_place: str = ""
    history: tuple[Former, ...] = ()


def _el(name: str, text: str) -> str:
    return f"<{name}>{escape(text)}</{name}>"


def _id(matricule: str, oid: str) -> str:
    return ("<IdIndividu>" + _el("NumIdentifiant", matricule[:13]) + _el("Cle", matricule[13:]) + "</IdIndividu>"
            + _el("OID", oid))


def answer_xml(code: str, found: Found | None = None) -> bytes:
    parts = [_OPEN, '<RESULTAT xmlns="http://www.cnamts.fr/INSiResultat" xmlns:ns0="http://www.cnamts.fr/INSiRecVit"'
             ' xmlns:ns1="http://www.cnamts.fr/INSiRecSans">',
             "<CR>", _el("CodeCR", code), _el("LibelleCR", LABELS.get(code, "")), "</CR>"]
    if code == "00" and found is not None:
        parts += ["<INDIVIDU><INSACTIF>", _id(found.matricule, found.oid), "</INSACTIF>"]
        for former in found.history:
            parts.append("<INSHISTO>")
            if former.start:
                parts.append(_el("DateDeb", former.start))
            if former.end:
                parts.append(_el("DateFin", former.end))
            parts += [_id(former.matricule, former.oid), "</INSHISTO>"]
        parts += ["<TIQ>", _el("NomNaissance", found.birth_name), _el("Prenom", found.given_names[0]),
                  _el("ListePrenom", " ".join(found.given_names)), _el("Sexe", found.sex),
                  _el("DateNaissance", found.birth_date)]
        if found.birth_place:
            parts.append(_el("LieuNaissance", found.birth_place))
        parts.append("</TIQ></INDIVIDU>")
    parts += ["</RESULTAT>", _CLOSE]
    return "".join(parts).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Fault:
    receiver: bool  # S:Receiver (the service's side: temporary) or S:Sender (the request: refused)
    subcode: str
    reason: str
    detail_code: str
    detail: str
    severity: str = "fatal"

    @property
    def http_status(self) -> int:
        return 500 if self.receiver else 400


TEMPORARY_REASON = ("Le service est temporairement inaccessible. Veuillez renouveler votre demande ultérieurement. "
                    "Si le problème persiste, contactez l'éditeur du progiciel ou votre responsable informatique.")


def technical_error(vitale: bool) -> Fault:
    """siram_40: the CNAM's public fixture (insi_102 for the traits search; insi_101 for the carte Vitale one, whose
    wording here is by analogy)."""
    what = "avec la carte Vitale" if vitale else "avec les traits d'identité"
    return Fault(True, "siram_40", TEMPORARY_REASON, "insi_101" if vitale else "insi_102",
                 f"L'appel au service de recherche {what} renvoie une erreur technique.")


def refusal(code: str, detail: str) -> Fault:
    """One of the simulator's own refusals (``sandbox_*``: no public source gives the CNAM's codes for these)."""
    return Fault(False, code, "La requête a été refusée par le service.", code, detail)


def fault_xml(fault: Fault) -> bytes:
    return (f'{_OPEN}<S:Fault xmlns:ns4="http://schemas.xmlsoap.org/soap/envelope/"><S:Code>'
            f'<S:Value>S:{"Receiver" if fault.receiver else "Sender"}</S:Value><S:Subcode>'
            f"<S:Value>S:{escape(fault.subcode)}</S:Value></S:Subcode></S:Code>"
            f'<S:Reason><S:Text xml:lang="en">{escape(fault.reason)}</S:Text></S:Reason>'
            f"<S:Detail><siram:Erreur severite={quoteattr(fault.severity)} code={quoteattr(fault.detail_code)} "
            f'xmlns:siram="urn:siram">{escape(fault.detail)}</siram:Erreur></S:Detail></S:Fault>{_CLOSE}'
            ).encode()
