"""XDS.b schema validation (IHE XDS.b_DocumentRepository.xsd with ebRS 3.0), from the reference kit, offline.

``rim.xsd`` imports http://www.w3.org/2001/xml.xsd: a resolver maps it to the kit's local copy and the
parser never touches the network. Used by the DMP simulator on every request and by the tests on what the
client sends.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lxml import etree

from agent.errors import InvalidInput

XDS_XSD = "ihe/schema/IHE/XDS.b_DocumentRepository.xsd"
XML_XSD = "ci-sis/infrastructure/cda/schema/xml.xsd"
XOP = "http://www.w3.org/2004/08/xop/include"


class _LocalXmlXsd(etree.Resolver):  # type: ignore[misc]
    def __init__(self, local: Path) -> None:
        super().__init__()
        self.local = local

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        if system_url and system_url.endswith("/xml.xsd") and "w3.org" in system_url:
            return self.resolve_filename(str(self.local), context)
        return None


@lru_cache(maxsize=4)
def xds_schema(reference_dir: Path) -> etree.XMLSchema:
    path = reference_dir / XDS_XSD
    if not path.exists():
        raise FileNotFoundError(path)
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    parser.resolvers.add(_LocalXmlXsd(reference_dir / XML_XSD))
    doc = etree.parse(str(path), parser)
    return etree.XMLSchema(doc)


def validate(schema: etree.XMLSchema, element: etree._Element) -> list[str]:
    """Schema errors of ``element`` (a ProvideAndRegister, AdhocQuery, SubmitObjects... request).

    An MTOM message is validated as its XOP infoset: an ``xop:Include`` stands for base64 content, so it is
    replaced by empty (valid) base64 text before validation.
    """
    doc = etree.ElementTree(etree.fromstring(etree.tostring(element)))
    for inc in list(doc.iter(f"{{{XOP}}}Include")):
        parent = inc.getparent()
        if parent is not None:
            parent.remove(inc)
    if schema.validate(doc):
        return []
    return [f"ligne {e.line} : {e.message}" for e in list(schema.error_log)[:10]]


def check(schema: etree.XMLSchema, element: etree._Element) -> None:
    errors = validate(schema, element)
    if errors:
        raise InvalidInput("Message XDS.b non conforme au schéma : " + " ; ".join(errors), code="xds_schema_invalid")
