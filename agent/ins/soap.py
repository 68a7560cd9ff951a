"""INSi messages (téléservice INSi, ServiceIdentiteCertifiee 1.0.0) both ways, as pure functions: no sockets.

A request is a SOAP 1.2 envelope whose header carries the ContexteBAM and ContexteLPS (who calls, from which
software), the WS-Addressing Action and MessageID, and a WS-Security header holding a SAML 2.0 assertion signed
by the professional's CPS (or the structure certificate). The body is ``RECSANSVITALE`` (search by traits) or
``RECVITALE`` (search by carte Vitale); the answer is ``RESULTAT`` with a ``CR`` (00 found, 01 not found,
02 several) and, when found, the active INS, the former ones (``INSHISTO``) and the reference traits (``TIQ``).

The agent's client and the sandbox simulator both use this module, so they speak the same dialect. Answers are
parsed with the hardened parser only; patient data never reaches a log from here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from lxml import etree

from agent.domain.ins import Ins
from agent.domain.traits import IdentityTraits, normalize_given_names
from agent.errors import PermanentRemoteError, TransientRemoteError
from agent.xml.safe import UnsafeXml, parse

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
CTXBAM = "urn:siram:bam:ctxbam"
CTXLPS = "urn:siram:lps:ctxlps"
RECSANS = "http://www.cnamts.fr/INSiRecSans"
RECVIT = "http://www.cnamts.fr/INSiRecVit"
RESULTAT = "http://www.cnamts.fr/INSiResultat"

ACTION_VITALE = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
ACTION_TRAITS = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
CONTENT_TYPE = "application/soap+xml; charset=utf-8"
MAX_ANSWER_BYTES = 1 << 20

CR_FOUND, CR_NOT_FOUND, CR_SEVERAL = "00", "01", "02"
RESULTS = {CR_FOUND: "found", CR_NOT_FOUND: "not_found", CR_SEVERAL: "several"}
LABELS = {CR_FOUND: "OK", CR_NOT_FOUND: "Aucune identite trouvee", CR_SEVERAL: "Plusieurs identites trouvees"}

_NSMAP = {"soap": SOAP, "wsa": WSA, "wsse": WSSE, "ctxbam": CTXBAM, "ctxlps": CTXLPS}


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _sub(parent: etree._Element, ns: str, name: str, text: str | None = None,
         **attrs: str) -> etree._Element:
    node = etree.SubElement(parent, _q(ns, name), attrs)
    if text is not None:
        node.text = text
    return node


def _stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class LpsInfo:
    """The calling software as the ContexteLPS names it (IDAM: the CNAM authorisation number)."""

    idam: str
    name: str
    version: str
    instance: str  # this installation's UUID


@dataclass(frozen=True, slots=True)
class CallContext:
    message_id: str  # "uuid:..." is added when missing
    now: dt.datetime
    emitter: str  # the professional's RPPS, or the structure's identifier when it calls
    lps: LpsInfo
    structure_id: str = ""
    activity_sector: str = "SA07"  # cabinet individuel (TRE_R02-SecteurActivite)


@dataclass(frozen=True, slots=True)
class VitaleQuery:
    """What the carte Vitale says of one beneficiary, as ``RECVITALE`` sends it."""

    insured_nir: str  # the ouvrant droit's NIR carried by the card (13 or 15 characters)
    birth_name: str
    birth_date: str  # AAAA-MM-JJ, possibly lunar
    birth_rank: int = 1
    individual_nir: str | None = None  # the beneficiary's own NIR when the card holds it


@dataclass(frozen=True, slots=True)
class HistoricIns:
    ins: Ins
    start: str | None = None
    end: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {**self.ins.as_dict(), "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class InsiAnswer:
    code: str
    label: str = ""
    ins: Ins | None = None
    traits: IdentityTraits | None = None
    history: tuple[HistoricIns, ...] = field(default_factory=tuple)

    @property
    def result(self) -> str:
        return RESULTS[self.code]


# --- requests ------------------------------------------------------------------------------------------------

def build_assertion(ctx: CallContext, assertion_id: str, *, validity: dt.timedelta = dt.timedelta(minutes=5)
                    ) -> etree._Element:
    """The SAML 2.0 assertion to sign (``agent.xml.signing.sign_enveloped``): who calls, for which structure."""
    issued = _stamp(ctx.now)
    root = etree.Element(_q(SAML, "Assertion"), {"ID": assertion_id, "IssueInstant": issued, "Version": "2.0"},
                         nsmap={"saml2": SAML})
    _sub(root, SAML, "Issuer", ctx.emitter)
    etree.SubElement(root, _q(DS, "Signature"), {"Id": "placeholder"}, nsmap={"ds": DS})
    subject = _sub(root, SAML, "Subject")
    _sub(subject, SAML, "NameID", ctx.emitter)
    _sub(root, SAML, "Conditions", NotBefore=issued, NotOnOrAfter=_stamp(ctx.now + validity))
    statement = _sub(root, SAML, "AttributeStatement")
    for name, value in (("Identifiant_Structure", ctx.structure_id or ctx.emitter),
                        ("Secteur_Activite", ctx.activity_sector),
                        ("LPS_Nom", ctx.lps.name), ("LPS_Version", ctx.lps.version)):
        attribute = _sub(statement, SAML, "Attribute", Name=name)
        _sub(attribute, SAML, "AttributeValue", value)
    return root


def build_envelope(action: str, ctx: CallContext, body: etree._Element,
                   assertion: etree._Element | None = None) -> bytes:
    envelope = etree.Element(_q(SOAP, "Envelope"), nsmap=_NSMAP)
    header = _sub(envelope, SOAP, "Header")
    stamp = _stamp(ctx.now)
    message_id = ctx.message_id if ctx.message_id.startswith("uuid:") else f"uuid:{ctx.message_id}"
    bam = _sub(header, CTXBAM, "ContexteBAM", Version="01_02")
    _sub(bam, CTXBAM, "Id", message_id.removeprefix("uuid:"))
    _sub(bam, CTXBAM, "Temps", stamp)
    _sub(bam, CTXBAM, "Emetteur", ctx.emitter)
    _sub(bam, CTXBAM, "COUVERTURE")
    lps = _sub(header, CTXLPS, "ContexteLPS", Nature="CTXLPS", Version="01_00")
    _sub(lps, CTXLPS, "Id", message_id.removeprefix("uuid:"))
    _sub(lps, CTXLPS, "Temps", stamp)
    _sub(lps, CTXLPS, "Emetteur", ctx.emitter)
    software = _sub(lps, CTXLPS, "LPS")
    _sub(software, CTXLPS, "IDAM", ctx.lps.idam, R="4")
    _sub(software, CTXLPS, "Version", ctx.lps.version)
    _sub(software, CTXLPS, "Instance", ctx.lps.instance)
    _sub(software, CTXLPS, "Nom", f"urn:lps:{ctx.lps.name}:{ctx.lps.version}")
    _sub(header, WSA, "Action", action)
    _sub(header, WSA, "MessageID", message_id)
    if assertion is not None:
        security = _sub(header, WSSE, "Security")
        security.append(assertion)
    _sub(envelope, SOAP, "Body").append(body)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


def traits_body(traits: IdentityTraits) -> etree._Element:
    body = etree.Element(_q(RECSANS, "RECSANSVITALE"), nsmap={"ins": RECSANS})
    _sub(body, RECSANS, "NomNaissance", traits.birth_name)
    # INSi compares the first birth given name; the whole list goes in the same element when asked for.
    _sub(body, RECSANS, "Prenom", traits.first_given_name)
    _sub(body, RECSANS, "Sexe", traits.sex)
    _sub(body, RECSANS, "DateNaissance", traits.birth_date)
    if traits.birth_place:
        _sub(body, RECSANS, "LieuNaissance", traits.birth_place)
    return body


def vitale_body(query: VitaleQuery) -> etree._Element:
    body = etree.Element(_q(RECVIT, "RECVITALE"), nsmap={"ins": RECVIT})
    if query.individual_nir:
        _matricule(body, "MatriculeIndividu", query.individual_nir)
    _matricule(body, "MatriculeOD", query.insured_nir)
    if query.birth_name:
        _sub(body, RECVIT, "NomNaissance", query.birth_name)
    _sub(body, RECVIT, "DateNaissance", query.birth_date.replace("-", ""))
    _sub(body, RECVIT, "RangNaissance", str(query.birth_rank))
    return body


def _matricule(parent: etree._Element, name: str, nir: str) -> None:
    node = _sub(parent, RECVIT, name)
    _sub(node, RECVIT, "NumIdentifiant", nir[:13])
    if len(nir) == 15:
        _sub(node, RECVIT, "Cle", nir[13:])


# --- answers (client side) -----------------------------------------------------------------------------------

def _text(node: etree._Element | None, path: str, ns: str = RESULTAT) -> str | None:
    if node is None:
        return None
    found = node.find(_path(path, ns))
    return (found.text or "").strip() if found is not None else None


def _path(path: str, ns: str) -> str:
    return "/".join(f"{{{ns}}}{part}" for part in path.split("/"))


def _ins(node: etree._Element) -> Ins:
    number = _text(node, "IdIndividu/NumIdentifiant") or ""
    key = _text(node, "IdIndividu/Cle") or ""
    oid = _text(node, "OID") or ""
    return Ins.from_parts(number, key, oid)


def _fault_reason(fault: etree._Element) -> tuple[str, str]:
    code = fault.findtext(f"{{{SOAP}}}Code/{{{SOAP}}}Subcode/{{{SOAP}}}Value") or \
        fault.findtext(f"{{{SOAP}}}Code/{{{SOAP}}}Value") or ""
    reason = fault.findtext(f"{{{SOAP}}}Reason/{{{SOAP}}}Text") or ""
    return code.strip(), reason.strip()


def parse_answer(data: bytes) -> InsiAnswer:
    """The ``RESULTAT`` of an INSi answer; a SOAP fault is a refusal, anything unreadable a transient failure."""
    try:
        root = parse(data, max_bytes=MAX_ANSWER_BYTES, what="de réponse INSi")
    except UnsafeXml as exc:
        raise TransientRemoteError("Réponse illisible du téléservice INSi.", service="insi",
                                   code="insi_bad_answer") from exc
    body = root.find(f"{{{SOAP}}}Body")
    if root.tag != _q(SOAP, "Envelope") or body is None:
        raise TransientRemoteError("Réponse INSi sans enveloppe SOAP 1.2.", service="insi", code="insi_bad_answer")
    fault = body.find(f"{{{SOAP}}}Fault")
    if fault is not None:
        code, reason = _fault_reason(fault)
        raise PermanentRemoteError(f"Le téléservice INSi a refusé la demande : {reason or code}.", service="insi",
                                   code="insi_refused", insi_code=code)
    result = body.find(_q(RESULTAT, "RESULTAT"))
    if result is None:
        raise TransientRemoteError("Réponse INSi sans RESULTAT.", service="insi", code="insi_bad_answer")
    code = _text(result, "CR/CodeCR") or ""
    if code not in RESULTS:
        raise TransientRemoteError(f"Code retour INSi inconnu ({code[:8]}).", service="insi", code="insi_bad_answer")
    label = _text(result, "CR/LibelleCR") or ""
    individual = result.find(_q(RESULTAT, "INDIVIDU"))
    if code != CR_FOUND or individual is None:
        return InsiAnswer(code if code != CR_FOUND else CR_NOT_FOUND, label)
    active = individual.find(_q(RESULTAT, "INSACTIF"))
    if active is None:
        raise TransientRemoteError("Réponse INSi sans INS actif.", service="insi", code="insi_bad_answer")
    history = tuple(
        HistoricIns(_ins(node), _text(node, "DateDeb"), _text(node, "DateFin"))
        for node in individual.findall(_q(RESULTAT, "INSHISTO"))
    )
    tiq = individual.find(_q(RESULTAT, "TIQ"))
    traits = None
    if tiq is not None:
        traits = IdentityTraits(
            birth_name=_text(tiq, "NomNaissance") or "",
            given_names=normalize_given_names(_text(tiq, "ListePrenom") or _text(tiq, "Prenom") or ""),
            sex=_text(tiq, "Sexe") or "",
            birth_date=_text(tiq, "DateNaissance") or "",
            birth_place=_text(tiq, "LieuNaissance") or None,
        )
    return InsiAnswer(CR_FOUND, label, _ins(active), traits, history)


# --- requests and answers (simulator side) -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InsiRequest:
    action: str
    message_id: str
    emitter: str
    assertion: etree._Element | None
    traits: IdentityTraits | None = None  # search by traits: given_names holds what was sent in Prenom
    vitale: VitaleQuery | None = None


def parse_request(data: bytes) -> InsiRequest:
    """A request as the INSi service reads it; InvalidInput (UnsafeXml) or ValueError when it is not one."""
    root = parse(data, max_bytes=MAX_ANSWER_BYTES, what="de requête INSi")
    header = root.find(_q(SOAP, "Header"))
    body = root.find(_q(SOAP, "Body"))
    if root.tag != _q(SOAP, "Envelope") or header is None or body is None:
        raise ValueError("not a SOAP 1.2 envelope")
    action = header.findtext(_q(WSA, "Action")) or ""
    message_id = header.findtext(_q(WSA, "MessageID")) or ""
    emitter = header.findtext(f"{_q(CTXLPS, 'ContexteLPS')}/{_q(CTXLPS, 'Emetteur')}") or ""
    if header.find(f"{_q(CTXBAM, 'ContexteBAM')}") is None or not emitter:
        raise ValueError("ContexteBAM / ContexteLPS missing")
    assertion = header.find(f"{_q(WSSE, 'Security')}/{_q(SAML, 'Assertion')}")
    if action == ACTION_TRAITS:
        node = body.find(_q(RECSANS, "RECSANSVITALE"))
        if node is None:
            raise ValueError("RECSANSVITALE missing")
        traits = IdentityTraits(
            birth_name=_text(node, "NomNaissance", RECSANS) or "",
            given_names=normalize_given_names(_text(node, "Prenom", RECSANS) or ""),
            sex=_text(node, "Sexe", RECSANS) or "",
            birth_date=_text(node, "DateNaissance", RECSANS) or "",
            birth_place=_text(node, "LieuNaissance", RECSANS) or None,
        )
        return InsiRequest(action, message_id, emitter, assertion, traits=traits)
    if action == ACTION_VITALE:
        node = body.find(_q(RECVIT, "RECVITALE"))
        if node is None:
            raise ValueError("RECVITALE missing")
        od = (_text(node, "MatriculeOD/NumIdentifiant", RECVIT) or "") + (_text(node, "MatriculeOD/Cle", RECVIT) or "")
        individual = _text(node, "MatriculeIndividu/NumIdentifiant", RECVIT)
        if individual:
            individual += _text(node, "MatriculeIndividu/Cle", RECVIT) or ""
        date = _text(node, "DateNaissance", RECVIT) or ""
        if len(date) == 8 and date.isdigit():
            date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        rank = _text(node, "RangNaissance", RECVIT) or "1"
        query = VitaleQuery(od, _text(node, "NomNaissance", RECVIT) or "", date,
                            int(rank) if rank.isdigit() else 1, individual)
        return InsiRequest(action, message_id, emitter, assertion, vitale=query)
    raise ValueError(f"unknown action {action[:80]}")


def build_answer(answer: InsiAnswer) -> bytes:
    envelope = etree.Element(_q(SOAP, "Envelope"), nsmap={"soap": SOAP})
    body = _sub(envelope, SOAP, "Body")
    result = etree.SubElement(body, _q(RESULTAT, "RESULTAT"), nsmap={None: RESULTAT})
    cr = _sub(result, RESULTAT, "CR")
    _sub(cr, RESULTAT, "CodeCR", answer.code)
    _sub(cr, RESULTAT, "LibelleCR", answer.label or LABELS[answer.code])
    if answer.code == CR_FOUND and answer.ins is not None:
        individual = _sub(result, RESULTAT, "INDIVIDU")
        _ins_node(individual, "INSACTIF", answer.ins)
        for former in answer.history:
            node = _ins_node(individual, "INSHISTO", former.ins)
            if former.start:
                _sub(node, RESULTAT, "DateDeb", former.start)
            if former.end:
                _sub(node, RESULTAT, "DateFin", former.end)
        if answer.traits is not None:
            tiq = _sub(individual, RESULTAT, "TIQ")
            _sub(tiq, RESULTAT, "NomNaissance", answer.traits.birth_name)
            _sub(tiq, RESULTAT, "ListePrenom", " ".join(answer.traits.given_names))
            _sub(tiq, RESULTAT, "Sexe", answer.traits.sex)
            _sub(tiq, RESULTAT, "DateNaissance", answer.traits.birth_date)
            if answer.traits.birth_place:
                _sub(tiq, RESULTAT, "LieuNaissance", answer.traits.birth_place)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


def _ins_node(parent: etree._Element, name: str, ins: Ins) -> etree._Element:
    node = _sub(parent, RESULTAT, name)
    ident = _sub(node, RESULTAT, "IdIndividu")
    _sub(ident, RESULTAT, "NumIdentifiant", ins.value[:13])
    _sub(ident, RESULTAT, "Cle", ins.value[13:])
    _sub(node, RESULTAT, "OID", ins.oid)
    return node


def build_fault(code: str, reason: str, *, receiver: bool = False) -> bytes:
    envelope = etree.Element(_q(SOAP, "Envelope"), nsmap={"soap": SOAP, "siram": "urn:siram"})
    fault = _sub(_sub(envelope, SOAP, "Body"), SOAP, "Fault")
    code_node = _sub(fault, SOAP, "Code")
    _sub(code_node, SOAP, "Value", "soap:Receiver" if receiver else "soap:Sender")
    _sub(_sub(code_node, SOAP, "Subcode"), SOAP, "Value", f"siram:{code}")
    _sub(_sub(fault, SOAP, "Reason"), SOAP, "Text", reason, **{"{http://www.w3.org/XML/1998/namespace}lang": "fr"})
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))
