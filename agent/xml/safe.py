"""The one way XML from outside is parsed: no DTD, no entities, no network, bounded size and depth.

SOAP answers, CDA documents to validate or import, SAML assertions: all come through ``parse``. A DOCTYPE is
refused outright (it is the door to XXE and entity expansion, and none of our protocols use one), so billion
laughs and external entities fail before anything is expanded.
"""

from __future__ import annotations

from lxml import etree

from agent.errors import InvalidInput

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class UnsafeXml(InvalidInput):
    code = "xml_refused"
    title = "XML refusé"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
        collect_ids=False,
    )


def parse(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "document") -> etree._Element:
    """Parse untrusted XML into its root element, or raise UnsafeXml with a French reason."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError("parse() takes bytes")
    if len(data) > max_bytes:
        raise UnsafeXml(f"XML {what} trop volumineux ({len(data)} octets, limite {max_bytes}).")
    try:
        root = etree.fromstring(bytes(data), parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeXml(f"XML {what} mal formé : {exc.msg}") from exc
    tree = root.getroottree()
    docinfo = tree.docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXml(f"XML {what} refusé : une déclaration DOCTYPE n'est pas acceptée.")
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise UnsafeXml(f"XML {what} refusé : entités interdites.")
    return root
