"""Documents for the tests: a real one-page PDF (Ghostscript can read it, so the PDF/A-1 conversion runs) and the
CI-SIS value sets of the reference kit."""

from __future__ import annotations

import base64


def one_page_pdf(text: str = "Compte rendu de consultation") -> bytes:
    """A minimal but well-formed PDF 1.4: catalog, one page with a line of text, a byte-exact xref table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


PDF = one_page_pdf()
PDF_BASE64 = base64.b64encode(PDF).decode("ascii")


def written_by(cda: bytes, national_id: str) -> bytes:
    """A CI-SIS example CDA written by another professional: the first author and every actor who had the same id
    (the note de vaccination's vaccinator, the serviceEvent performer) become ``national_id``, so the document
    stays consistent (EX_2.1-2020: the vaccinator is one of the authors)."""
    from lxml import etree

    hl7 = "{urn:hl7-org:v3}"
    root = etree.fromstring(cda)
    author = root.find(f"{hl7}author/{hl7}assignedAuthor/{hl7}id")
    assert author is not None
    previous = author.get("extension")
    for element in root.iter(f"{hl7}id"):
        if element.get("extension") == previous and element.get("root") == author.get("root"):
            element.set("extension", national_id)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def with_co_author(cda: bytes, national_id: str, family: str, given: str, *, organisation_id: str = "1750803447",
                   organisation_name: str = "Cabinet médical") -> bytes:
    """The CDA with a further author block (after the last one): the sender of [CDT] 2.1-900, in distinct blocks."""
    from lxml import etree

    hl7 = "urn:hl7-org:v3"
    root = etree.fromstring(cda)
    blocks = root.findall(f"{{{hl7}}}author")
    block = etree.Element(f"{{{hl7}}}author")
    etree.SubElement(block, f"{{{hl7}}}time", value=blocks[0].find(f"{{{hl7}}}time").get("value", ""))
    assigned = etree.SubElement(block, f"{{{hl7}}}assignedAuthor")
    etree.SubElement(assigned, f"{{{hl7}}}id", root="1.2.250.1.71.4.2.1", extension=national_id)
    name = etree.SubElement(etree.SubElement(assigned, f"{{{hl7}}}assignedPerson"), f"{{{hl7}}}name")
    etree.SubElement(name, f"{{{hl7}}}family").text = family
    etree.SubElement(name, f"{{{hl7}}}given").text = given
    org = etree.SubElement(assigned, f"{{{hl7}}}representedOrganization")
    etree.SubElement(org, f"{{{hl7}}}id", root="1.2.250.1.71.4.2.2", extension=organisation_id)
    etree.SubElement(org, f"{{{hl7}}}name").text = organisation_name
    blocks[-1].addnext(block)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def with_organisation(cda: bytes, organisation_id: str) -> bytes:
    """The CDA whose every author's representedOrganization id is ``organisation_id``."""
    from lxml import etree

    hl7 = "{urn:hl7-org:v3}"
    root = etree.fromstring(cda)
    for org_id in root.iterfind(f"{hl7}author/{hl7}assignedAuthor/{hl7}representedOrganization/{hl7}id"):
        org_id.set("extension", organisation_id)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
