"""A CDA as an HTML page for display (``GET /v1/cda/render``, ``POST /v1/cda/render``): so an LGC can show a
document to the doctor without a CDA viewer of its own.

    render_html(cda) -> str                 the page (UTF-8 text, a complete HTML document)
    render_pdf(cda) -> bytes                the document as PDF: an N1 document's own PDF, as it is in the CDA;
                                            any other document, its page printed by ``agent.cda.printing``
    embedded_pdf(cda) -> bytes              an N1 document's PDF only (refused for anything else)

The CI-SIS kit (TestContenuCDA) ships no display stylesheet (the ANS viewer is a separate release), so the page is
written here, from the header (title, patient, authors, dates, organisation) and the body: each section's title
and narrative block (paragraph, content, list, table, br, sub, sup, caption, footnote), or an N1 document's
content (text shown as is, JPEG/PNG as an image, a PDF announced with its size: ``?format=pdf`` gives it).
``?format=pdf`` of any other document prints this same page to PDF (headless Chromium), so what the doctor
reads on paper or in a PDF viewer is what the HTML shows.

Safe by construction: the document is parsed by ``agent.xml.safe`` (no DTD, entities, network), and the page is
built as an element tree whose elements and attributes come from a fixed list: the document's text is only ever
text (escaped by the serialiser), an element outside the narrative block (``<script>``, ``<iframe>``, another
namespace) gives its text and nothing else, ``styleCode`` becomes a class name of letters, links are shown as
text, and nothing refers outside the page (no stylesheet, script, font or remote image). The page carries its own
Content-Security-Policy (``default-src 'none'``) so it stays inert wherever the LGC shows it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from lxml import etree

from agent.cda.printing import html_to_pdf
from agent.errors import InvalidInput
from agent.xml import safe

HL7 = "urn:hl7-org:v3"
NS = f"{{{HL7}}}"
MAX_CDA_BYTES = 48 * 1024 * 1024
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
# CDA narrative block element -> HTML element.
NARRATIVE = {
    "paragraph": "p", "content": "span", "br": "br", "sub": "sub", "sup": "sup", "caption": "h4",
    "list": "ul", "item": "li", "table": "table", "thead": "thead", "tbody": "tbody", "tfoot": "tfoot",
    "tr": "tr", "th": "th", "td": "td", "col": "col", "colgroup": "colgroup", "footnote": "small",
    "linkHtml": "span", "renderMultiMedia": "span",
}
SPAN_ATTRIBUTES = ("colspan", "rowspan")
IMAGES = ("image/jpeg", "image/png", "image/gif")
STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#111;max-width:60em}
header{border-bottom:2px solid #1d4f91;margin-bottom:1em}
h1{font-size:1.4em;color:#1d4f91}h2{font-size:1.15em;color:#1d4f91;margin-top:1.2em}h3{font-size:1em}
dl.cda-header{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #999;padding:.2em .4em;text-align:left}
.cda-Bold{font-weight:bold}.cda-Italics{font-style:italic}.cda-Underline{text-decoration:underline}
pre{white-space:pre-wrap}img{max-width:100%}.cda-note{color:#555}
"""
SEX = {"M": "Masculin", "F": "Féminin", "U": "Inconnu", "UN": "Inconnu"}
_CLASS = re.compile(r"[A-Za-z][A-Za-z0-9]{0,40}")


def _parse(cda: bytes) -> etree._Element:
    root = safe.parse(cda, max_bytes=MAX_CDA_BYTES, what="CDA")
    if root.tag != f"{NS}ClinicalDocument":
        raise InvalidInput.field("cda_base64", "La racine doit être un élément ClinicalDocument (urn:hl7-org:v3).",
                                 code="not_cda")
    return root


def render_html(cda: bytes) -> str:
    root = _parse(cda)
    html = etree.Element("html", lang="fr")
    head = etree.SubElement(html, "head")
    etree.SubElement(head, "meta", charset="utf-8")
    etree.SubElement(head, "meta", {"http-equiv": "Content-Security-Policy", "content": CSP})
    title = _text(root.find(f"{NS}title")) or _display(root.find(f"{NS}code")) or "Document CDA"
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "style").text = STYLE
    body = etree.SubElement(html, "body")
    header = etree.SubElement(body, "header")
    etree.SubElement(header, "h1").text = title
    _header(etree.SubElement(header, "dl", {"class": "cda-header"}), root)
    main = etree.SubElement(body, "main")
    structured = root.find(f"{NS}component/{NS}structuredBody")
    unstructured = root.find(f"{NS}component/{NS}nonXMLBody")
    if structured is not None:
        for component in structured.findall(f"{NS}component"):
            section = component.find(f"{NS}section")
            if section is not None:
                _section(main, section, 2)
    elif unstructured is not None:
        _non_xml(main, unstructured)
    else:
        _note(main, "Ce document n'a pas de corps.")
    return "<!DOCTYPE html>\n" + str(etree.tostring(html, method="html", encoding="unicode"))


def render_pdf(cda: bytes) -> bytes:
    """The document as PDF: the PDF an N1 document carries, as it is; else its page (``render_html``) printed."""
    carried = _carried_pdf(_parse(cda))
    return carried if carried is not None else html_to_pdf(render_html(cda))


def embedded_pdf(cda: bytes) -> bytes:
    """The PDF an N1 document carries (``nonXMLBody/text``, base64), refused when it carries something else."""
    carried = _carried_pdf(_parse(cda))
    if carried is None:
        raise InvalidInput.field("format", "Seul un document N1 contenant un PDF porte son propre PDF.",
                                 code="render_pdf_unavailable")
    return carried


def _carried_pdf(root: etree._Element) -> bytes | None:
    text = root.find(f"{NS}component/{NS}nonXMLBody/{NS}text")
    if text is None or (text.get("mediaType") or "").lower() != "application/pdf":
        return None
    return _content(text)


# -- header ---------------------------------------------------------------------------------------------------------
def _header(dl: etree._Element, root: etree._Element) -> None:
    def row(term: str, value: str) -> None:
        if value:
            etree.SubElement(dl, "dt").text = term
            etree.SubElement(dl, "dd").text = value

    row("Type", _display(root.find(f"{NS}code")))
    row("Date du document", _when(root.find(f"{NS}effectiveTime")))
    patient_role = root.find(f"{NS}recordTarget/{NS}patientRole")
    if patient_role is not None:
        patient = patient_role.find(f"{NS}patient")
        if patient is not None:
            row("Patient", "; ".join(_patient_name(n) for n in patient.findall(f"{NS}name")))
            gender = patient.find(f"{NS}administrativeGenderCode")
            row("Sexe", SEX.get(gender.get("code", "") if gender is not None else "", ""))
            row("Né(e) le", _when(patient.find(f"{NS}birthTime")))
        ins = [i.get("extension", "") for i in patient_role.findall(f"{NS}id")
               if i.get("root", "").startswith("1.2.250.1.213.1.4.")]
        row("INS", ", ".join(i for i in ins if i))
    event = root.find(f"{NS}documentationOf/{NS}serviceEvent/{NS}effectiveTime")
    if event is not None:
        low, high = _when(event.find(f"{NS}low")), _when(event.find(f"{NS}high"))
        row("Acte", f"{low} – {high}" if high and high != low else low)
    for author in root.findall(f"{NS}author/{NS}assignedAuthor"):
        person = author.find(f"{NS}assignedPerson/{NS}name")
        who = _name(person) if person is not None else ""
        profession = _display(author.find(f"{NS}code"))
        organisation = _text(author.find(f"{NS}representedOrganization/{NS}name"))
        row("Auteur", ", ".join(p for p in (who, profession, organisation) if p))
    row("Conservé par", _text(root.find(f"{NS}custodian/{NS}assignedCustodian/"
                                        f"{NS}representedCustodianOrganization/{NS}name")))
    row("Confidentialité", _display(root.find(f"{NS}confidentialityCode")))


def _text(node: etree._Element | None) -> str:
    return " ".join("".join(node.itertext()).split()) if node is not None else ""


def _display(node: etree._Element | None) -> str:
    if node is None:
        return ""
    return node.get("displayName") or _text(node.find(f"{NS}originalText")) or node.get("code", "")


def _name(node: etree._Element) -> str:
    given = [_text(g) for g in node.findall(f"{NS}given")]
    family = [_text(f) for f in node.findall(f"{NS}family")]
    prefix = [_text(p) for p in node.findall(f"{NS}prefix")]
    parts = [*prefix, *given, *(f.upper() for f in family)]
    return " ".join(p for p in parts if p) or _text(node)


def _patient_name(node: etree._Element) -> str:
    """The INS traits: birth name and birth given names, then the used ones when they differ (qualifier CL)."""
    def part(tag: str, qualifiers: tuple[str | None, ...]) -> str:
        for qualifier in qualifiers:
            for item in node.findall(f"{NS}{tag}"):
                if item.get("qualifier") == qualifier and _text(item):
                    return _text(item)
        return ""

    family, given = part("family", ("BR", None, "SP")), part("given", (None, "BR"))
    if not family and not given:
        return _name(node)
    used_family, used_given = part("family", ("CL",)), part("given", ("CL",))
    text = f"{family.upper()} {given}".strip()
    used = [f"nom utilisé {used_family.upper()}" if used_family and used_family != family else "",
            f"prénom utilisé {used_given}" if used_given and used_given != given.split(" ")[0] else ""]
    used_text = ", ".join(u for u in used if u)
    return f"{text} ({used_text})" if used_text else text


def _when(node: etree._Element | None) -> str:
    """An HL7 TS (YYYYMMDD[HHMM[SS]][±ZZZZ]) as French text; what does not look like one is shown as it is."""
    value = node.get("value", "") if node is not None else ""
    match = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(?:(\d{2})(\d{2})(\d{2})?)?(?:\.\d+)?([+-]\d{4})?", value)
    if not match:
        return value
    year, month, day, hour, minute = match.group(1, 2, 3, 4, 5)
    text = "/".join(p for p in (day, month, year) if p)
    return f"{text} {hour}h{minute}" if hour else text


# -- body -----------------------------------------------------------------------------------------------------------
def _section(parent: etree._Element, section: etree._Element, level: int) -> None:
    out = etree.SubElement(parent, "section")
    title = _text(section.find(f"{NS}title")) or _display(section.find(f"{NS}code"))
    if title:
        etree.SubElement(out, f"h{min(level, 6)}").text = title
    text = section.find(f"{NS}text")
    if text is not None:
        block = etree.SubElement(out, "div", {"class": "cda-text"})
        _narrative_children(block, text)
    for component in section.findall(f"{NS}component"):
        child = component.find(f"{NS}section")
        if child is not None:
            _section(out, child, level + 1)


def _narrative_children(out: etree._Element, node: etree._Element) -> None:
    """Copy ``node``'s mixed content into ``out``: text as text, known elements mapped, others as their text."""
    _append_text(out, node.text)
    for child in node:
        if isinstance(child, etree._Element) and isinstance(child.tag, str):
            _narrative(out, child)
        _append_text(out, child.tail)


def _narrative(out: etree._Element, node: etree._Element) -> None:
    qname = etree.QName(node)
    tag = NARRATIVE.get(qname.localname) if qname.namespace == HL7 else None
    if tag is None:  # not narrative (script, iframe, another namespace...): its text only
        _append_text(out, " ".join("".join(node.itertext()).split()))
        return
    if qname.localname == "list" and node.get("listType") == "ordered":
        tag = "ol"
    if qname.localname == "renderMultiMedia":
        _append_text(out, "[contenu multimédia non affiché]")
        return
    element = etree.SubElement(out, tag)
    for name in SPAN_ATTRIBUTES:
        value = node.get(name)
        if value and value.isdigit() and tag in ("td", "th"):
            element.set(name, str(min(int(value), 1000)))
    classes = [f"cda-{c}" for c in (node.get("styleCode") or "").split() if _CLASS.fullmatch(c)]
    if classes:
        element.set("class", " ".join(classes))
    _narrative_children(element, node)
    if qname.localname == "linkHtml":
        href = node.get("href") or ""
        if href and not href.startswith("#"):
            _append_text(element, f" ({href})")


def _append_text(element: etree._Element, text: str | None) -> None:
    if not text:
        return
    children = list(element)
    if children:
        children[-1].tail = (children[-1].tail or "") + text
    else:
        element.text = (element.text or "") + text


def _non_xml(main: etree._Element, body: etree._Element) -> None:
    text = body.find(f"{NS}text")
    if text is None:
        _note(main, "Ce document n'a pas de contenu.")
        return
    media = (text.get("mediaType") or "text/plain").lower()
    if text.get("representation", "TXT").upper() != "B64" and media == "text/plain":
        etree.SubElement(main, "pre").text = text.text or ""
        return
    content = _content(text)
    if media == "text/plain":
        etree.SubElement(main, "pre").text = content.decode("utf-8", "replace")
    elif media in IMAGES and _is_image(content, media):
        etree.SubElement(main, "img", alt="Document (image)",
                         src=f"data:{media};base64,{base64.b64encode(content).decode()}")
    elif media == "application/pdf":
        _note(main, f"Document PDF ({_size(content)}) : il s'affiche avec une visionneuse PDF "
                    "(rendu format=pdf, qui le donne tel quel).")
    else:
        _note(main, f"Contenu {media} ({_size(content)}) : ce format ne s'affiche pas dans la page.")


def _content(text: etree._Element) -> bytes:
    try:
        return base64.b64decode("".join((text.text or "").split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput.field("cda_base64", "Le contenu du document N1 n'est pas du base64 valide.") from exc


def _is_image(content: bytes, media: str) -> bool:
    signatures: dict[str, Iterable[bytes]] = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",),
                                              "image/gif": (b"GIF87a", b"GIF89a")}
    return any(content.startswith(s) for s in signatures.get(media, ()))


def _size(content: bytes) -> str:
    return f"{len(content) / 1024:.0f} Ko" if len(content) >= 1024 else f"{len(content)} octets"


def _note(parent: etree._Element, text: str) -> None:
    etree.SubElement(parent, "p", {"class": "cda-note"}).text = text
