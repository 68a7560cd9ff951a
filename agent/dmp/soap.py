"""SOAP 1.2 with WS-Addressing and WS-Security, MTOM/XOP multipart/related: writing and reading, no sockets.

Reading is for answers from outside: every XML part goes through ``agent.xml.safe.parse`` with a size cap, and
an MTOM package is bounded in parts and bytes before anything is decoded.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from agent.dmp.ebrim import RS
from agent.errors import DuplicateUniqueId, InvalidInput, PermanentRemoteError, RemoteError, TransientRemoteError
from agent.xml.safe import UnsafeXml, parse

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
XOP = "http://www.w3.org/2004/08/xop/include"
SOAP_CT = "application/soap+xml"
XOP_CT = "application/xop+xml"

ACTION_ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ACTION_ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ACTION_ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ACTION_ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
ACTIONS_RESPONSE = {ACTION_ITI41: "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse",
                    ACTION_ITI18: "urn:ihe:iti:2007:RegistryStoredQueryResponse",
                    ACTION_ITI43: "urn:ihe:iti:2007:RetrieveDocumentSetResponse",
                    ACTION_ITI57: "urn:ihe:iti:2010:UpdateDocumentSetResponse"}

RESPONSE_SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
RESPONSE_FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
RESPONSE_PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
MAX_PARTS = 64
# The DMP codes (registry errorCode, SOAP fault subcode, HL7v3 acknowledgement code) that mean "try again later"
# ([dmp] transient_error_codes replaces this list: the GIE's full error table is not public). Every other refusal is
# permanent. EX_3.1-2035: DMPAccessDeniedByExcededThreshold (too many requests from this professional) is temporary
# and never stops the feeding (agent/dmp/gateway.py).
THRESHOLD_EXCEEDED = "DMPAccessDeniedByExcededThreshold"
TRANSIENT_CODES = frozenset({"XDSRegistryBusy", "XDSRepositoryBusy", "XDSRegistryOutOfResources",
                             "XDSRepositoryOutOfResources", THRESHOLD_EXCEEDED})
MAX_ANSWER_BYTES = 64 * 1024 * 1024


def envelope(action: str, body: etree._Element, *, to: str, security: etree._Element | None = None,
             message_id: str | None = None) -> etree._Element:
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action", {f"{{{SOAP12}}}mustUnderstand": "true"}).text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = message_id or f"urn:uuid:{uuid.uuid4()}"
    reply = etree.SubElement(header, f"{{{WSA}}}ReplyTo")
    etree.SubElement(reply, f"{{{WSA}}}Address").text = "http://www.w3.org/2005/08/addressing/anonymous"
    etree.SubElement(header, f"{{{WSA}}}To", {f"{{{SOAP12}}}mustUnderstand": "true"}).text = to
    if security is not None:
        sec = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
        sec.set(f"{{{SOAP12}}}mustUnderstand", "true")
        sec.append(security)
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(body)
    return env


def response_envelope(action: str, body: etree._Element, relates_to: str = "") -> etree._Element:
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action").text = action
    if relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(body)
    return env


def fault_envelope(sender: bool, reason: str, subcode: str = "") -> etree._Element:
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12})
    body = etree.SubElement(env, f"{{{SOAP12}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP12}}}Fault")
    code = etree.SubElement(fault, f"{{{SOAP12}}}Code")
    etree.SubElement(code, f"{{{SOAP12}}}Value").text = "soap:Sender" if sender else "soap:Receiver"
    if subcode:
        sub = etree.SubElement(code, f"{{{SOAP12}}}Subcode")
        etree.SubElement(sub, f"{{{SOAP12}}}Value").text = subcode
    text = etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Reason"), f"{{{SOAP12}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "fr")
    text.text = reason
    return env


# --- MTOM / XOP ------------------------------------------------------------------------------------------


@dataclass
class MtomMessage:
    root: bytes  # the SOAP envelope
    attachments: dict[str, bytes] = field(default_factory=dict)  # Content-ID (no brackets) -> bytes


def xop_include(parent: etree._Element, content_id: str) -> None:
    etree.SubElement(parent, f"{{{XOP}}}Include", nsmap={"xop": XOP}, href=f"cid:{content_id}")


def write_mtom(message: MtomMessage, action: str) -> tuple[bytes, str]:
    """Serialize as multipart/related (type application/xop+xml); returns (body, Content-Type header)."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    start = "<root.message@relais>"
    parts = [
        f"--{boundary}\r\nContent-Type: {XOP_CT}; charset=UTF-8; type=\"{SOAP_CT}\"\r\n"
        f"Content-Transfer-Encoding: binary\r\nContent-ID: {start}\r\n\r\n".encode() + message.root + b"\r\n"
    ]
    for cid, data in message.attachments.items():
        parts.append(f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    ctype = (f'multipart/related; boundary="{boundary}"; type="{XOP_CT}"; start="{start}"; '
             f'start-info="{SOAP_CT}"; action="{action}"')
    return body, ctype


_PARAM = re.compile(r';\s*([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^;\s]*))')


def content_type_params(value: str) -> tuple[str, dict[str, str]]:
    main = value.split(";", 1)[0].strip().lower()
    return main, {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
                  for m in _PARAM.finditer(value)}


def read_mtom(body: bytes, content_type: str, *, max_bytes: int = MAX_ANSWER_BYTES) -> MtomMessage:
    """Split a multipart/related message; a plain SOAP body comes back with no attachments."""
    if len(body) > max_bytes:
        raise UnsafeXml(f"Message trop volumineux ({len(body)} octets, limite {max_bytes}).")
    main, params = content_type_params(content_type)
    if main != "multipart/related":
        return MtomMessage(body)
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise InvalidInput("Message MTOM sans délimiteur valide.", code="mtom_invalid")
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) - 2 > MAX_PARTS:
        raise InvalidInput("Message MTOM avec trop de parties.", code="mtom_invalid")
    start = (params.get("start") or "").strip("<>")
    root: bytes | None = None
    attachments: dict[str, bytes] = {}
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise InvalidInput("Partie MTOM sans en-têtes.", code="mtom_invalid")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        cid = headers.get("content-id", "").strip("<>")
        if root is None and (not start or cid == start):
            root = data
        else:
            attachments[cid] = data
    if root is None:
        raise InvalidInput("Message MTOM sans partie racine.", code="mtom_invalid")
    return MtomMessage(root, attachments)


def resolve_xop(element: etree._Element, attachments: dict[str, bytes]) -> bytes:
    """The bytes of an element carried either inline (base64) or as an xop:Include."""
    inc = element.find(f"{{{XOP}}}Include")
    if inc is not None:
        href = inc.get("href", "")
        cid = href[4:] if href.startswith("cid:") else href
        from urllib.parse import unquote

        cid = unquote(cid)
        if cid not in attachments:
            raise InvalidInput(f"Pièce jointe MTOM absente : {cid}", code="mtom_invalid")
        return attachments[cid]
    try:
        return base64.b64decode("".join((element.text or "").split()), validate=True)
    except ValueError as exc:
        raise InvalidInput("Contenu base64 illisible.", code="mtom_invalid") from exc


# --- reading answers ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryError:
    code: str
    context: str
    severity: str
    location: str = ""


def parse_envelope(data: bytes, *, what: str = "réponse du DMP",
                   transient: frozenset[str] = TRANSIENT_CODES) -> etree._Element:
    """The Body's first child of a SOAP 1.2 answer; SOAP faults become errors."""
    try:
        env = parse(data, what=what, max_bytes=MAX_ANSWER_BYTES)
    except UnsafeXml as exc:
        # An unreadable answer says nothing about the request: the DMP may have stored the document. Transient:
        # the next attempt asks the DMP first, and a lasting fault is retried at a capped rate.
        raise TransientRemoteError(f"Réponse du DMP illisible : {exc.message}", service="dmp",
                                   code="dmp_answer_invalid") from exc
    if env.tag != f"{{{SOAP12}}}Envelope":
        raise TransientRemoteError("Réponse du DMP qui n'est pas une enveloppe SOAP 1.2.", service="dmp",
                                   code="dmp_answer_invalid")
    body = env.find(f"{{{SOAP12}}}Body")
    if body is None or len(body) == 0:
        raise TransientRemoteError("Réponse SOAP vide du DMP.", service="dmp", code="dmp_answer_invalid")
    first = body[0]
    if first.tag == f"{{{SOAP12}}}Fault":
        raise fault_error(first, transient)
    return first


def _local(code: str) -> str:
    """A SOAP fault code without its prefix (``soap:Sender`` -> ``Sender``, ``dmp:DMPxxx`` -> ``DMPxxx``)."""
    return code.rsplit(":", 1)[-1]


def fault_error(fault: etree._Element, transient: frozenset[str] = TRANSIENT_CODES
                ) -> PermanentRemoteError | TransientRemoteError:
    """PRE_ERR: the DMP's own code (the subcode, else the fault code) and text travel with the French message as
    ``dmp_code`` / ``dmp_text`` (problem+json members, the order's last error)."""
    value = (fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value") or "").strip()
    sub = (fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value") or "").strip()
    reason = " ".join((fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text") or "").split())[:500]
    said = {"fault": sub or value, "dmp_code": _local(sub or value), "dmp_text": reason}
    if _local(sub) in transient:
        return TransientRemoteError(f"Le DMP demande de réessayer plus tard : {reason or _local(sub)}", service="dmp",
                                    code="dmp_busy", **said)
    message = f"Le DMP a refusé la requête : {reason or 'faute SOAP sans motif'}"
    if value.endswith("Sender"):
        return PermanentRemoteError(message, service="dmp", code="dmp_soap_fault", **said)
    return TransientRemoteError(f"Le DMP est en erreur : {reason or 'faute SOAP'}", service="dmp",
                                code="dmp_server_fault", **said)


def transient_if(error: PermanentRemoteError, transient: frozenset[str] = TRANSIENT_CODES) -> RemoteError:
    """A refusal whose DMP code says "later" (an HL7v3 acknowledgement's, e.g.) becomes transient, with its code."""
    if str(error.extra.get("dmp_code", "")) not in transient:
        return error
    return TransientRemoteError(f"Le DMP demande de réessayer plus tard : {error.message}", service="dmp",
                                code="dmp_busy", **error.extra)


def registry_errors(response: etree._Element) -> list[RegistryError]:
    out = []
    for err in response.iter(f"{{{RS}}}RegistryError"):
        out.append(RegistryError(err.get("errorCode", ""), " ".join((err.get("codeContext") or "").split())[:500],
                                 err.get("severity", ""), err.get("location", "")))
    return out


def raise_for_registry(response: etree._Element, transient: frozenset[str] = TRANSIENT_CODES) -> None:
    """A RegistryResponse (or a response holding one) with Failure: the matching error of the tree, carrying the
    DMP's first error code and text (``dmp_code``, ``dmp_text``: PRE_ERR) and all codes (``registry_errors``)."""
    status = response.get("status", "")
    if not status:
        inner = response.find(f"{{{RS}}}RegistryResponse")
        status = inner.get("status", "") if inner is not None else ""
    if status in (RESPONSE_SUCCESS, RESPONSE_PARTIAL):
        return
    errors = [e for e in registry_errors(response) if not e.severity.endswith("Warning")]
    if not errors:
        raise PermanentRemoteError("Le DMP a refusé la requête sans dire pourquoi.", service="dmp",
                                   code="dmp_registry_error")
    first = errors[0]
    detail = "; ".join(f"{e.code} : {e.context}" if e.context else e.code for e in errors)
    said: dict[str, Any] = {"registry_errors": [e.code for e in errors], "dmp_code": first.code,
                            "dmp_text": first.context}
    if any(e.code == "XDSDuplicateUniqueIdInRegistry" for e in errors):
        raise DuplicateUniqueId(f"Ce document est déjà enregistré dans le DMP ({detail}).", service="dmp", **said)
    if first.code in transient:
        raise TransientRemoteError(f"Le DMP demande de réessayer plus tard ({detail}).", service="dmp",
                                   code="dmp_busy", **said)
    raise PermanentRemoteError(f"Le DMP a refusé la requête : {detail}", service="dmp",
                               code="dmp_registry_error", **said)


def registry_response(errors: list[RegistryError] | None = None, *, tag: str = "RegistryResponse") -> etree._Element:
    resp = etree.Element(f"{{{RS}}}{tag}", nsmap={"rs": RS},
                         status=RESPONSE_FAILURE if errors else RESPONSE_SUCCESS)
    if errors:
        lst = etree.SubElement(resp, f"{{{RS}}}RegistryErrorList")
        for e in errors:
            etree.SubElement(lst, f"{{{RS}}}RegistryError", errorCode=e.code, codeContext=e.context,
                             severity=e.severity or "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error",
                             location=e.location)
    return resp
