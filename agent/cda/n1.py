"""CDA R2 N1: a PDF wrapped in a nonXMLBody (IHE XDS-SD, template 1.3.6.1.4.1.19376.1.2.20).

The structuration minimale allows exactly three templateIds on an N1 document (HL7 France, CI-SIS, XDS-SD): the
volet's own templateId is replaced by XDS-SD. Only a PDF is accepted: anything else is refused before it could
reach a DMP that would render it as garbage.
"""

from __future__ import annotations

import base64

from lxml import etree

from agent.cda.header import Author, Header, Patient, el
from agent.errors import InvalidInput

XDS_SD = "1.3.6.1.4.1.19376.1.2.20"
MAX_PDF_BYTES = 20 * 1024 * 1024


def check_pdf(pdf: bytes, field: str = "document.pdf_base64") -> None:
    """Refuse what is not a PDF (422), with a French message the doctor can act on."""
    head = pdf[:1024].lstrip()
    if not head.startswith(b"%PDF-"):
        raise InvalidInput.field(field, "Le document n'est pas un PDF (signature %PDF- absente).",
                                 code="not_pdf")
    if b"%%EOF" not in pdf[-2048:]:
        raise InvalidInput.field(field, "PDF tronqué : la fin de fichier %%EOF est absente.",
                                 code="not_pdf")
    if len(pdf) > MAX_PDF_BYTES:
        raise InvalidInput.field(field,
                                 f"PDF trop volumineux ({len(pdf)} octets, limite {MAX_PDF_BYTES}).", code="not_pdf")


def build_n1(header: Header, patient: Patient, author: Author, pdf: bytes, *,
             pdf_field: str = "document.pdf_base64") -> etree._Element:
    check_pdf(pdf, pdf_field)
    doc = header.build(patient, author)
    body = el(el(doc, "component"), "nonXMLBody")
    el(body, "text", base64.b64encode(pdf).decode("ascii"), mediaType="application/pdf", representation="B64")
    return doc
