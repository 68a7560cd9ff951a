"""CDA R2 N1: a document wrapped in a nonXMLBody (IHE XDS-SD, template 1.3.6.1.4.1.19376.1.2.20).

The structuration minimale allows exactly three templateIds on an N1 document (HL7 France, CI-SIS, XDS-SD): the
volet's own templateId is replaced by XDS-SD. The formats are the five the CNDA test book names for unstructured
documents (.pdf, .txt, .rtf, .jpeg, .tiff) with their XDS-SD format codes (JDV_J10 / TRE_A11). The content's
magic bytes decide its media type; a declared ``media_type`` that disagrees, or anything else, is refused before it
could reach a DMP that would show it as garbage. A PDF becomes PDF/A-1 (``agent.cda.pdfa``).

``data`` of ``{kind: "n1"}``: ``pdf_base64`` (a PDF) or ``content_base64`` (any of the five) with ``media_type``
optional, ``type_code`` (JDV_J07), ``title``, ``service_start``, ``service_stop?``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from lxml import etree

from agent.cda.context import BuildContext, BuiltDocument, data_object
from agent.cda.header import Author, Header, Patient, el, parse_when, serialize
from agent.cda.pdfa import to_pdfa1
from agent.domain import catalogue
from agent.domain.encoding import decode_base64_field
from agent.errors import InvalidInput

XDS_SD = "1.3.6.1.4.1.19376.1.2.20"
MAX_CONTENT_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class N1Format:
    media_type: str
    format_code: str
    label: str


# IHE XDS-SD and its French extension (format codes of JDV_J10, system TRE_A11 = the IHE format codes' OID).
FORMATS = {f.media_type: f for f in (
    N1Format("application/pdf", "urn:ihe:iti:xds-sd:pdf:2008", "PDF"),
    N1Format("text/plain", "urn:ihe:iti:xds-sd:text:2008", "texte"),
    N1Format("text/rtf", "urn:ihe:iti-fr:xds-sd:rtf:2010", "RTF"),
    N1Format("image/jpeg", "urn:ihe:iti-fr:xds-sd:jpeg:2010", "JPEG"),
    N1Format("image/tiff", "urn:ihe:iti-fr:xds-sd:tiff:2010", "TIFF"),
)}
ALIASES = {"application/rtf": "text/rtf", "image/jpg": "image/jpeg", "text/txt": "text/plain"}


def sniff(content: bytes) -> str | None:
    """The media type the content's first bytes say, among the five; None for anything else."""
    head = content[:1024]
    if head.lstrip().startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"{\\rtf"):
        return "text/rtf"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(ch.isprintable() or ch in "\r\n\t\f" for ch in text.lstrip("\ufeff")):
        return "text/plain"
    return None


def check_content(content: bytes, field: str, declared: str | None = None) -> N1Format:
    """The format of an N1 body, or a 422 a doctor can act on."""
    if len(content) > MAX_CONTENT_BYTES:
        raise InvalidInput.field(field, f"Document trop volumineux ({len(content)} octets, limite "
                                 f"{MAX_CONTENT_BYTES}).", code="not_pdf")
    found = sniff(content)
    wanted = ALIASES.get(declared or "", declared or "") or None
    if wanted is not None and wanted not in FORMATS:
        raise InvalidInput.field("media_type", f"Format {declared!r} non accepté par le DMP pour un document non "
                                 "structuré : PDF, texte, RTF, JPEG ou TIFF.", code="unsupported_format")
    if found is None:
        raise InvalidInput.field(field, "Le document n'est ni un PDF, ni un texte UTF-8, ni un RTF, ni une image "
                                 "JPEG ou TIFF (signature non reconnue).", code="not_pdf")
    if wanted is not None and wanted != found:
        raise InvalidInput.field(field, f"Le contenu est un {FORMATS[found].label}, pas un {FORMATS[wanted].label} "
                                 f"comme annoncé ({declared}).",
                                 code="not_pdf" if wanted == "application/pdf" else "format_mismatch")
    if found == "application/pdf" and b"%%EOF" not in content[-2048:]:
        raise InvalidInput.field(field, "PDF tronqué : la fin de fichier %%EOF est absente.", code="not_pdf")
    return FORMATS[found]


def check_pdf(pdf: bytes, field: str = "document.pdf_base64") -> None:
    """Refuse what is not a PDF (422), with a French message the doctor can act on."""
    if check_content(pdf, field).media_type != "application/pdf":
        raise InvalidInput.field(field, "Le document n'est pas un PDF (signature %PDF- absente).", code="not_pdf")


def read_content(data: dict[str, Any], prefix: str) -> tuple[bytes, str, str]:
    """(content, field name, declared media type) of ``pdf_base64`` or ``content_base64``."""
    if "content_base64" in data:
        field = f"{prefix}content_base64"
        content = decode_base64_field(data.get("content_base64"), field, "Le document en base64 est obligatoire.")
        declared = data.get("media_type")
        if declared is not None and not isinstance(declared, str):
            raise InvalidInput.field(f"{prefix}media_type", "Type de média attendu (ex. application/pdf).")
        return content, field, declared or ""
    field = f"{prefix}pdf_base64"
    content = decode_base64_field(data.get("pdf_base64"), field, "Le PDF en base64 est obligatoire.")
    return content, field, "application/pdf"


def build(ctx: BuildContext, patient: Any, author: Any, data: dict[str, Any]) -> BuiltDocument:
    data = data_object(data)
    content, field, declared = read_content(data, "data.")
    return wrap(ctx, content, str(data.get("type_code") or ""), str(data.get("title") or ""),
                data.get("service_start"), data.get("service_stop"), patient, author, content_field=field,
                media_type=declared or None)


def wrap(ctx: BuildContext, content: bytes, type_code: str, title: str, service_start: Any, service_stop: Any,
         patient: Any, author: Any, *, content_field: str = "document.pdf_base64",
         media_type: str | None = "application/pdf") -> BuiltDocument:
    """A PDF, text, RTF, JPEG or TIFF as CDA R2 N1 (XDS-SD) with the structuration minimale header."""
    entry = catalogue.n1_type(type_code) or catalogue.by_type_code(type_code)
    if entry is None:
        raise InvalidInput.field("type_code", f"Type de document {type_code!r} absent du catalogue Ségur "
                                 "(JDV_J07).", code="unknown_type_code")
    title = " ".join(title.split())
    if not title or len(title) > 250:
        raise InvalidInput.field("title", "Titre du document obligatoire (250 caractères au plus).")
    start = parse_when(service_start, "service_start")
    stop = parse_when(service_stop, "service_stop") if service_stop else None
    if stop is not None and stop < start:
        raise InvalidInput.field("service_stop", "La fin de l'acte précède son début.")
    form = check_content(content, content_field, media_type)
    who, by = ctx.read_people(patient, author)
    if form.media_type == "application/pdf":
        content = to_pdfa1(content, content_field)
    now = ctx.clock.now()
    kind = ctx.document_type(entry.type_code)
    header = Header(  # the display stays the catalogue's, the one the XDS metadata carries too
        unique_id=ctx.new_id(), set_id=ctx.new_id(), code=kind.code, code_system=kind.system,
        display=entry.title, title=title, created=now, service_start=start, service_stop=stop,
        confidentiality=ctx.confidentiality(),
        template_ids=((XDS_SD, None),),
    )
    doc = build_n1(header, who, by, content, form)
    return BuiltDocument(
        serialize(doc), header.unique_id, header.set_id, "n1", entry.type_code, entry.type_system, entry.title,
        entry.class_code, entry.class_display, form.format_code, catalogue.OID_FORMAT_CODES_IHE,
        catalogue.Level.N1.value, title, now, start, stop, {"media_type": form.media_type},
    )


def build_n1(header: Header, patient: Patient, author: Author, content: bytes, form: N1Format) -> etree._Element:
    doc = header.build(patient, author)
    body = el(el(doc, "component"), "nonXMLBody")
    el(body, "text", base64.b64encode(content).decode("ascii"), mediaType=form.media_type, representation="B64")
    return doc
