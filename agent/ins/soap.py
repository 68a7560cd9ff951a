"""INSi messages (téléservice INSi, ServiceIdentiteCertifiee 1.0.0) as the client writes and reads them: no sockets.

A request is a SOAP 1.2 envelope whose header carries the ContexteBAM (who calls and, for a search by carte
Vitale, the COUVERTURE: the insured person's number and the beneficiary's birth date and rank) and the ContexteLPS
(which software), the WS-Addressing Action and MessageID, and a WS-Security header with the signed assertions
(``agent/ins/assertion.py``). The body is ``RECSANSVITALE`` (search by traits) or ``RECVITALE`` (search by carte
Vitale). The answer is ``RESULTAT`` with a ``CR`` (00 found, 01 not found, 02 several) and, when found, the active
INS, the former ones (``INSHISTO``) and the reference traits (``TIQ``); or a SOAP 1.2 fault whose ``Subcode`` is
a ``siram_NN`` code and whose ``Detail`` holds ``siram:Erreur code="insi_NNN" severite=...``.

Shapes follow the public INSi material (open-source clients' requests and CNAM answer fixtures, the Pyxistem
templates): see ``../shared/design/NATIONAL-SERVICES.md`` SF5. The sandbox reads these requests with its own
parser (``relais_sandbox/insi_wire.py``), never with this module. Answers go through the hardened parser only;
patient data never reaches a log from here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from lxml import etree

from agent.domain.ins import Ins
from agent.domain.traits import IdentityTraits, normalize_given_names
from agent.errors import PermanentRemoteError, TransientRemoteError
from agent.ins.assertion import stamp, vitale_date
from agent.xml.safe import UnsafeXml, parse

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
CTXBAM = "urn:siram:bam:ctxbam"
CTXLPS = "urn:siram:lps:ctxlps"
SIRAM = "urn:siram"
RECSANS = "http://www.cnamts.fr/INSiRecSans"
RECVIT = "http://www.cnamts.fr/INSiRecVit"
RESULTAT = "http://www.cnamts.fr/INSiResultat"

ACTION_VITALE = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
ACTION_TRAITS = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
CONTENT_TYPE = "application/soap+xml; charset=utf-8"
MAX_ANSWER_BYTES = 1 << 20

CR_FOUND, CR_NOT_FOUND, CR_SEVERAL = "00", "01", "02"
RESULTS = {CR_FOUND: "found", CR_NOT_FOUND: "not_found", CR_SEVERAL: "several"}

# SOAP 1.2 subcodes the CNAM sends for a temporary failure (public fixture: siram_40 "Le service est
# temporairement inaccessible"); any fault whose Code is Receiver is treated the same way (SOAP 1.2: the
# failure is on the service's side). Other subcodes (siram_100 "accès par ce progiciel non autorisé"...) refuse.
TRANSIENT_SUBCODES = frozenset({"siram_40"})
# insi_101 / insi_102: "erreur technique" of the search by carte Vitale / by traits (DevBox INSi CNDA page).
TRANSIENT_DETAIL_CODES = frozenset({"insi_101", "insi_102"})

_NSMAP = {"soap": SOAP, "wsa": WSA, "wsse": WSSE, "ctxbam": CTXBAM, "ctxlps": CTXLPS}


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _sub(parent: etree._Element, ns: str, name: str, text: str | None = None,
         **attrs: str) -> etree._Element:
    node = etree.SubElement(parent, _q(ns, name), attrs)
    if text is not None:
        node.text = text
    return node


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
    emitter: str  # the professional's identifier, or the structure's when it calls
    lps: LpsInfo


@dataclass(frozen=True, slots=True)
class VitaleQuery:
    """One beneficiary of one carte Vitale, as ``RECVITALE`` and the COUVERTURE send it."""

    insured_nir: str  # the ouvrant droit's NIR carried by the card (13 or 15 characters)
    birth_name: str
    birth_date: str  # AAAA-MM-JJ, possibly lunar
    birth_rank: int = 1
    individual_nir: str | None = None  # the beneficiary's own NIR when the card holds it
    card_serial: str = ""


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

def build_envelope(action: str, ctx: CallContext, body: etree._Element, assertions: list[etree._Element],
                   coverage: VitaleQuery | None = None) -> bytes:
    envelope = etree.Element(_q(SOAP, "Envelope"), nsmap=_NSMAP)
    header = _sub(envelope, SOAP, "Header")
    now = stamp(ctx.now)
    message_id = ctx.message_id if ctx.message_id.startswith("uuid:") else f"uuid:{ctx.message_id}"
    bam = _sub(header, CTXBAM, "ContexteBAM", Version="01_02")
    _sub(bam, CTXBAM, "Id", message_id.removeprefix("uuid:"))
    _sub(bam, CTXBAM, "Temps", now)
    _sub(bam, CTXBAM, "Emetteur", ctx.emitter)
    cover = _sub(bam, CTXBAM, "COUVERTURE")
    if coverage is not None:
        _sub(_sub(_sub(cover, CTXBAM, "ASSURE"), CTXBAM, "Id"), CTXBAM, "Num", coverage.insured_nir[:13])
        beneficiary = _sub(cover, CTXBAM, "BENEFICIAIRE")
        if coverage.individual_nir:
            _sub(_sub(beneficiary, CTXBAM, "Nir"), CTXBAM, "Num", coverage.individual_nir[:13])
        _sub(beneficiary, CTXBAM, "DateNai", vitale_date(coverage.birth_date))
        _sub(beneficiary, CTXBAM, "Rang", str(coverage.birth_rank))
    lps = _sub(header, CTXLPS, "ContexteLPS", Nature="CTXLPS", Version="01_00")
    _sub(lps, CTXLPS, "Id", message_id.removeprefix("uuid:"))
    _sub(lps, CTXLPS, "Temps", now)
    _sub(lps, CTXLPS, "Emetteur", ctx.emitter)
    software = _sub(lps, CTXLPS, "LPS")
    _sub(software, CTXLPS, "IDAM", ctx.lps.idam, R="4")
    _sub(software, CTXLPS, "Version", ctx.lps.version)
    _sub(software, CTXLPS, "Instance", ctx.lps.instance)
    _sub(software, CTXLPS, "Nom", f"urn:lps:{ctx.lps.name}:{ctx.lps.version}")
    _sub(header, WSA, "Action", action)
    _sub(header, WSA, "MessageID", message_id)
    if assertions:
        security = _sub(header, WSSE, "Security")
        for assertion in assertions:
            security.append(assertion)
    _sub(envelope, SOAP, "Body").append(body)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


def traits_body(traits: IdentityTraits) -> etree._Element:
    """``RECSANSVITALE``: the given names of ``traits`` go space-separated in the one ``Prenom`` (the search plan
    decides which: the first, another one, or all of them)."""
    body = etree.Element(_q(RECSANS, "RECSANSVITALE"), nsmap={"ins": RECSANS})
    _sub(body, RECSANS, "NomNaissance", traits.birth_name)
    _sub(body, RECSANS, "Prenom", " ".join(traits.given_names))
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
    _sub(body, RECVIT, "DateNaissance", vitale_date(query.birth_date))
    _sub(body, RECVIT, "RangNaissance", str(query.birth_rank))
    return body


def _matricule(parent: etree._Element, name: str, nir: str) -> None:
    node = _sub(parent, RECVIT, name)
    _sub(node, RECVIT, "NumIdentifiant", nir[:13])
    if len(nir) == 15:
        _sub(node, RECVIT, "Cle", nir[13:])


# --- answers -------------------------------------------------------------------------------------------------

def _text(node: etree._Element | None, path: str, ns: str = RESULTAT) -> str | None:
    if node is None:
        return None
    found = node.find("/".join(f"{{{ns}}}{part}" for part in path.split("/")))
    return (found.text or "").strip() if found is not None else None


def _ins(node: etree._Element) -> Ins:
    number = _text(node, "IdIndividu/NumIdentifiant") or ""
    key = _text(node, "IdIndividu/Cle") or ""
    oid = _text(node, "OID") or ""
    return Ins.from_parts(number, key, oid)


def _local(qname: str) -> str:
    """``S:siram_40`` -> ``siram_40`` (the CNAM writes its subcodes with the SOAP envelope's prefix)."""
    return qname.strip().rpartition(":")[2]


@dataclass(frozen=True, slots=True)
class InsiFault:
    """A SOAP 1.2 fault as the CNAM sends it: what the LGC sees in ``remote`` beside the French message."""

    code: str  # Receiver / Sender
    subcode: str  # siram_NN
    reason: str
    detail_code: str  # insi_NNN, desir_NNN...
    severity: str
    detail: str

    @property
    def transient(self) -> bool:
        return (self.subcode in TRANSIENT_SUBCODES or self.detail_code in TRANSIENT_DETAIL_CODES
                or self.code == "Receiver")

    def remote(self) -> dict[str, str]:
        return {"code": self.detail_code or self.subcode, "subcode": self.subcode, "severity": self.severity,
                "message": self.detail or self.reason}


def parse_fault(fault: etree._Element) -> InsiFault:
    code = fault.findtext(f"{{{SOAP}}}Code/{{{SOAP}}}Value") or ""
    subcode = fault.findtext(f"{{{SOAP}}}Code/{{{SOAP}}}Subcode/{{{SOAP}}}Value") or ""
    reason = " ".join((fault.findtext(f"{{{SOAP}}}Reason/{{{SOAP}}}Text") or "").split())
    error = fault.find(f"{{{SOAP}}}Detail/{{{SIRAM}}}Erreur")
    detail = " ".join((error.text or "").split()) if error is not None else ""
    return InsiFault(_local(code), _local(subcode), reason[:500],
                     (error.get("code") or "")[:40] if error is not None else "",
                     (error.get("severite") or "")[:20] if error is not None else "", detail[:500])


def fault_error(fault: InsiFault) -> TransientRemoteError | PermanentRemoteError:
    """The error the LGC gets for a fault: 503 "momentanément indisponible" when temporary, else 502."""
    remote = fault.remote()
    if fault.transient:
        return TransientRemoteError(
            "Le téléservice INSi est momentanément indisponible : renouvelez la demande dans quelques instants "
            f"({remote['code']} : {remote['message'] or 'erreur technique'}).",
            service="insi", code="insi_temporarily_unavailable", remote=remote)
    return PermanentRemoteError(f"Le téléservice INSi a refusé la demande ({remote['code']} : "
                                f"{remote['message'] or fault.reason}).", service="insi", code="insi_refused",
                                remote=remote)


def parse_answer(data: bytes) -> InsiAnswer:
    """The ``RESULTAT`` of an INSi answer; a fault raises ``fault_error``; anything unreadable is transient."""
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
        raise fault_error(parse_fault(fault))
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
