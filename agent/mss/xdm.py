"""IHE XDM packaging (ITI-32, "ZIP over e-mail"): the zip an MSSanté message carries, and reading one back.

Layout (every name ISO 9660 level 1: upper case, 8.3)::

    INDEX.HTM                      what the package holds, for a human opening the zip
    README.TXT                     who made it
    IHE_XDM/SUBSET01/METADATA.XML  the XDS metadata (lcm:SubmitObjectsRequest), the same as sent to the DMP
    IHE_XDM/SUBSET01/DOC00001.XML  the documents, referenced from their DocumentEntry by the ``URI`` slot

The metadata comes from the DMP's builder (injected by the composition root); this module only completes each
DocumentEntry with the XDM slots (``URI``, and ``size`` / ``hash`` of the bytes actually packed). Pure: bytes
in, bytes out, no I/O. Reading parses the metadata with the hardened parser and checks sizes and SHA-1 hashes.
"""

from __future__ import annotations

import hashlib
import html
import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from agent.errors import InvalidInput
from agent.xml.safe import parse

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SUBSET = "IHE_XDM/SUBSET01"
METADATA_PATH = f"{SUBSET}/METADATA.XML"
MAX_PACKAGE_BYTES = 64 * 1024 * 1024
# A fixed timestamp in the zip entries: the same inputs give the same bytes (reproducible, testable).
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)
_ISO9660 = re.compile(r"^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{1,3})?$")
_EXTENSIONS = {"text/xml": "XML", "application/xml": "XML", "application/pdf": "PDF", "text/plain": "TXT"}


def _rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


@dataclass(frozen=True, slots=True)
class XdmDocument:
    unique_id: str  # the DocumentEntry's uniqueId (the CDA's id), which ties the bytes to their metadata
    content: bytes
    mime_type: str = "text/xml"


@dataclass(frozen=True, slots=True)
class XdmEntry:
    path: str  # inside the zip
    unique_id: str
    mime_type: str
    content: bytes
    size: int
    sha1: str


@dataclass(frozen=True, slots=True)
class XdmPackage:
    metadata: bytes
    submission_set_unique_id: str
    entries: tuple[XdmEntry, ...]
    names: tuple[str, ...]  # every file name in the zip


def is_iso9660(path: str) -> bool:
    return all(_ISO9660.match(part) for part in path.split("/"))


def _slot(obj: etree._Element, name: str) -> etree._Element | None:
    for slot in obj.iterfind(_rim("Slot")):
        if slot.get("name") == name:
            return slot
    return None


def _set_slot(obj: etree._Element, name: str, value: str) -> None:
    """Replace or add a single-valued slot, keeping ebRIM's order (Slots come first in a RegistryObject)."""
    old = _slot(obj, name)
    slot = etree.Element(_rim("Slot"), name=name)
    etree.SubElement(etree.SubElement(slot, _rim("ValueList")), _rim("Value")).text = value
    if old is not None:
        old.addprevious(slot)
        obj.remove(old)
        return
    slots = list(obj.iterfind(_rim("Slot")))
    if slots:
        slots[-1].addnext(slot)
    else:
        obj.insert(0, slot)


def _external_id(obj: etree._Element, scheme: str) -> str:
    for ei in obj.iterfind(_rim("ExternalIdentifier")):
        if ei.get("identificationScheme") == scheme:
            return str(ei.get("value", ""))
    return ""


def _slot_value(obj: etree._Element, name: str) -> str:
    slot = _slot(obj, name)
    if slot is None:
        return ""
    value = slot.find(f"{_rim('ValueList')}/{_rim('Value')}")
    return (value.text or "").strip() if value is not None else ""


def _entries(root: etree._Element) -> list[etree._Element]:
    return list(root.iter(_rim("ExtrinsicObject")))


def _submission_set_uid(root: etree._Element) -> str:
    for package in root.iter(_rim("RegistryPackage")):
        uid = _external_id(package, SS_UNIQUE_ID)
        if uid:
            return uid
    return ""


def _index_htm(title: str, entries: Sequence[XdmEntry]) -> bytes:
    rows = "\n".join(f'<li><a href="{html.escape(e.path)}">{html.escape(e.path)}</a> '
                     f"({html.escape(e.mime_type)}, {e.size} octets)</li>" for e in entries)
    return (f'<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"</head><body><h1>{html.escape(title)}</h1>\n<p>Métadonnées : "
            f'<a href="{METADATA_PATH}">{METADATA_PATH}</a></p>\n<ul>\n{rows}\n</ul></body></html>\n').encode()


def _readme(sender: str, software: str) -> bytes:
    lines = [
        "Paquet IHE XDM (ITI-32) transmis par messagerie securisee de sante (MSSante).",
        f"Emetteur : {sender}",
        f"Logiciel : {software}",
        f"Contenu : {METADATA_PATH} (metadonnees XDS) et les documents du dossier {SUBSET}.",
        "Ouvrir INDEX.HTM pour la liste des documents.",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def build_xdm(metadata: bytes | etree._Element, documents: Sequence[XdmDocument], *, sender: str,
              software: str = "Relais", title: str = "Documents de santé", recipient: str = "") -> bytes:
    """The XDM zip for ``documents``, whose DocumentEntries ``metadata`` (a SubmitObjectsRequest) describes.

    Each document is matched to its ExtrinsicObject by uniqueId; an entry of the metadata without its bytes,
    or bytes without an entry, is a programming error reported as ``InvalidInput``. ``recipient`` (an e-mail
    address) becomes the SubmissionSet's ``intendedRecipient`` (XTN only: ``||^^Internet^address``).
    """
    root = parse(metadata, what="métadonnées XDS") if isinstance(metadata, bytes) else metadata
    root = etree.fromstring(etree.tostring(root))  # work on a copy: the caller's tree stays as it was
    by_uid = {_external_id(eo, DE_UNIQUE_ID): eo for eo in _entries(root)}
    if set(by_uid) != {d.unique_id for d in documents} or len(documents) != len(by_uid):
        raise InvalidInput("Les métadonnées XDS ne décrivent pas exactement les documents du paquet XDM.",
                           code="xdm_mismatch")
    packed: list[XdmEntry] = []
    for number, doc in enumerate(documents, start=1):
        extension = _EXTENSIONS.get(doc.mime_type, "BIN")
        path = f"{SUBSET}/DOC{number:05d}.{extension}"
        sha1 = hashlib.sha1(doc.content).hexdigest()  # noqa: S324 - XDS mandates SHA-1 for the hash slot
        eo = by_uid[doc.unique_id]
        _set_slot(eo, "size", str(len(doc.content)))
        _set_slot(eo, "hash", sha1)
        _set_slot(eo, "URI", path.rsplit("/", 1)[1])
        packed.append(XdmEntry(path, doc.unique_id, doc.mime_type, doc.content, len(doc.content), sha1))
    if recipient:
        for package in root.iter(_rim("RegistryPackage")):
            if _external_id(package, SS_UNIQUE_ID):
                _set_slot(package, "intendedRecipient", f"||^^Internet^{recipient}")
    metadata_bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        def put(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)

        put("INDEX.HTM", _index_htm(title, packed))
        put("README.TXT", _readme(sender, software))
        put(METADATA_PATH, metadata_bytes)
        for entry in packed:
            put(entry.path, entry.content)
    return out.getvalue()


def read_xdm(data: bytes, *, max_bytes: int = MAX_PACKAGE_BYTES) -> XdmPackage:
    """Open an XDM zip and check it: layout, ISO 9660 names, every DocumentEntry's file present with the size
    and SHA-1 its metadata declares. A damaged or forged package is an ``InvalidInput`` saying what is wrong."""
    def bad(reason: str) -> InvalidInput:
        return InvalidInput(f"Paquet XDM invalide : {reason}", code="xdm_invalid")

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise bad("ce n'est pas une archive zip.") from exc
    with zf:
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > max_bytes:
            raise bad("contenu trop volumineux.")
        names = tuple(i.filename for i in infos)
        for name in names:
            if name.startswith("/") or ".." in name.split("/") or not is_iso9660(name.rstrip("/")):
                raise bad(f"nom de fichier non conforme ISO 9660 : {name!r}.")
        for required in ("INDEX.HTM", "README.TXT", METADATA_PATH):
            if required not in names:
                raise bad(f"{required} absent.")
        metadata = zf.read(METADATA_PATH)
        root = parse(metadata, what="METADATA.XML")
        if root.tag != f"{{{LCM}}}SubmitObjectsRequest":
            raise bad("METADATA.XML n'est pas un SubmitObjectsRequest.")
        entries: list[XdmEntry] = []
        for eo in _entries(root):
            uri = _slot_value(eo, "URI")
            path = f"{SUBSET}/{uri}"
            if not uri or path not in names:
                raise bad(f"document {uri or '(URI absente)'} introuvable dans le paquet.")
            content = zf.read(path)
            sha1 = hashlib.sha1(content).hexdigest()  # noqa: S324 - XDS mandates SHA-1
            if _slot_value(eo, "size") != str(len(content)):
                raise bad(f"taille de {uri} différente de celle des métadonnées.")
            if _slot_value(eo, "hash").lower() != sha1:
                raise bad(f"empreinte SHA-1 de {uri} différente de celle des métadonnées.")
            entries.append(XdmEntry(path, _external_id(eo, DE_UNIQUE_ID), eo.get("mimeType", ""), content,
                                    len(content), sha1))
        if not entries:
            raise bad("aucun document décrit dans METADATA.XML.")
    return XdmPackage(metadata, _submission_set_uid(root), tuple(entries), names)
