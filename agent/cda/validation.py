"""CI-SIS validation of a CDA document: the CDA XSD, then the ISO Schematrons that apply to it.

Which schematrons run: the structuration minimale (every document), the volet's own schematron (chosen by the
document's templateId, e.g. 1.2.250.1.213.1.1.1.46 -> VAC-NOTE 2023.01) and the generic content profile
(``profils/CI-SIS_ModelesDeContenusCDA.sch``: sections, entries and value sets by templateId).

Each schematron is compiled to XSLT once, lazily, at its first use: the XSLT text is kept on disk under the
cache directory (keyed by the engine version and the kit files' size and time) and the Saxon executable in
memory, so the agent starts fast and the second document costs only the run. A failed assertion of role
``warning``/``info`` is a warning; any other one makes the document invalid. Messages are the kit's own
(French); the location is an XPath in the document.

Fails closed: a structured document whose templateIds name no volet the agent knows (so no volet schematron runs),
or a typeId other than HL7's CDA R2 one, is invalid (source ``relais``), never "valid by silence".

Never logs document content.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from agent.cda.saxon import XsltEngine
from agent.cda.schematron import compile_schema
from agent.errors import Unavailable
from agent.xml import safe

ENGINE_VERSION = "3"  # bump whenever the compiled XSLT may change: it keys the disk cache
STRUCTURATION_MINIMALE = "profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.sch"
CONTENT_PROFILE = "profils/CI-SIS_ModelesDeContenusCDA.sch"
# Document templateId (root, extension or None) -> the volet's schematron, relative to schematrons/.
VOLETS: dict[tuple[str, str | None], str] = {
    ("1.2.250.1.213.1.1.1.46", None): "CI-SIS_VAC-NOTE_2023.01.sch",
    ("1.2.250.1.213.1.1.1.37", None): "CI-SIS_VAC_2023.01.sch",
    ("1.2.250.1.213.1.1.1.5.1", "2024.01"): "CI-SIS_CSE-CS8_2024.01.sch",
    ("1.2.250.1.213.1.1.1.5.1", None): "CI-SIS_CSE-CS8_2025.01.sch",
    ("1.2.250.1.213.1.1.1.5.2", "2024.01"): "CI-SIS_CSE-CS9_2024.01.sch",
    ("1.2.250.1.213.1.1.1.5.2", None): "CI-SIS_CSE-CS9_2025.01.sch",
    ("1.2.250.1.213.1.1.1.5.3", "2024.01"): "CI-SIS_CSE-CS24_2024.01.sch",
    ("1.2.250.1.213.1.1.1.5.3", None): "CI-SIS_CSE-CS24_2025.01.sch",
    ("1.2.250.1.213.1.1.1.5.4", None): "CI-SIS_CSE-MDE_2023.01.sch",
    ("1.2.250.1.213.1.1.1.51", None): "CI-SIS_IPS-FR_2024.01.sch",
    ("1.2.250.1.213.1.1.1.13", None): "CI-SIS_VSM_1.4_2022.01.sch",
    ("1.2.250.1.213.1.1.1.39", None): "CI-SIS_EP-MED-DM_2024.01.sch",
    # CR de biologie: the ANS releases ship this schematron; a kit without it cannot call such a document valid.
    ("1.2.250.1.213.1.1.1.55", "2024.01"): "CI-SIS_BIO-CR-BIO_2024.01.sch",
}
# A document with one of these (N1, XDS-SD) is fully checked by the XSD and the structuration minimale.
UNSTRUCTURED = "1.3.6.1.4.1.19376.1.2.20"
TYPE_ID = ("2.16.840.1.113883.1.3", "POCD_HD000040")
HL7 = "urn:hl7-org:v3"
MAX_CDA_BYTES = 48 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    """One failed check: which step (xsd or the schematron's file name), the French text, where."""

    source: str
    message: str
    location: str = ""
    role: str = "error"

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "message": self.message, "location": self.location, "role": self.role}


@dataclass(frozen=True)
class ValidationReport:
    valid: bool
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": [f.as_dict() for f in self.errors],
            "warnings": [f.as_dict() for f in self.warnings],
            "checked": list(self.checked),
        }


class _Resolver(etree.Resolver):  # type: ignore[misc]
    """The CDA XSD's imports of the W3C xml.xsd resolve to the kit's copy; nothing goes to the network."""

    def __init__(self, local_xml_xsd: Path) -> None:
        super().__init__()
        self.local = local_xml_xsd

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        if system_url.startswith("http://www.w3.org/") and system_url.endswith("xml.xsd"):
            return self.resolve_filename(str(self.local), context)
        return None


class CdaValidator:
    """XSD + CI-SIS schematrons for one kit folder (``ci-sis``: infrastructure/, schematrons/, jeuxDeValeurs/)."""

    def __init__(self, kit_dir: Path, cache_dir: Path | None = None, engine: XsltEngine | None = None) -> None:
        self.kit_dir = kit_dir
        self.cache_dir = cache_dir
        self.engine = engine or XsltEngine()
        self._lock = threading.Lock()
        self._schema: etree.XMLSchema | None = None
        self._compiled: dict[str, Any] = {}
        self._fingerprint: str | None = None

    # -- what applies -------------------------------------------------------------------------------------------
    def schematrons_for(self, root: etree._Element) -> list[str]:
        chosen = [STRUCTURATION_MINIMALE]
        for template in root.findall(f"{{{HL7}}}templateId"):
            key = (template.get("root", ""), template.get("extension"))
            volet = VOLETS.get(key) or VOLETS.get((key[0], None))
            if volet and volet not in chosen:
                chosen.append(volet)
        if root.find(f"{{{HL7}}}component/{{{HL7}}}structuredBody") is not None:
            chosen.append(CONTENT_PROFILE)
        return chosen

    # -- the checks ---------------------------------------------------------------------------------------------
    def validate(self, cda: bytes) -> ValidationReport:
        return self.validate_root(self.parse(cda))

    @staticmethod
    def parse(cda: bytes) -> etree._Element:
        """The document's root, by the hardened parser (what ``validate_root`` and ``prepare`` take)."""
        return safe.parse(cda, max_bytes=MAX_CDA_BYTES, what="CDA")

    def prepare(self, root: etree._Element) -> None:
        """Compile now the schematrons this document needs (what a worker does before its time budget starts:
        compiling depends on the kit only, never on the document)."""
        if root.tag == f"{{{HL7}}}ClinicalDocument":
            self._xml_schema()
            for relative in self.schematrons_for(root):
                self._executable(relative)

    def validate_root(self, root: etree._Element) -> ValidationReport:
        if root.tag != f"{{{HL7}}}ClinicalDocument":
            finding = Finding("xsd", "La racine doit être un élément ClinicalDocument (urn:hl7-org:v3).", "/")
            return ValidationReport(False, [finding], [], ["xsd"])
        errors = self._xsd(root) + self._envelope(root)
        warnings: list[Finding] = []
        checked = ["xsd"]
        # One Saxon parse of the document for every schematron (lxml's tree above served the XSD).
        tree = self.engine.parse(etree.tostring(root, encoding="unicode"))
        for relative in self.schematrons_for(root):
            if relative in VOLETS.values() and not self.has(relative):
                errors.append(Finding("relais", f"Le schématron du volet de ce document ({Path(relative).name}) "
                                      "manque dans le kit CI-SIS installé : le document ne peut pas être déclaré "
                                      "valide (installez un kit complet : relais kit install).",
                                      "/ClinicalDocument/templateId"))
                continue
            checked.append(Path(relative).name)
            for finding in self.run_schematron(relative, tree):
                (warnings if finding.role in ("warning", "info") else errors).append(finding)
        return ValidationReport(not errors, errors, warnings, checked)

    def _envelope(self, root: etree._Element) -> list[Finding]:
        """What no kit rule makes an error but the DMP needs: the CDA R2 typeId, and a known volet."""
        found: list[Finding] = []
        type_id = root.find(f"{{{HL7}}}typeId")
        if type_id is None or (type_id.get("root"), type_id.get("extension")) != TYPE_ID:
            found.append(Finding("relais", f"typeId attendu : root={TYPE_ID[0]} extension={TYPE_ID[1]} (CDA R2).",
                                 "/ClinicalDocument/typeId"))
        roots = {t.get("root", "") for t in root.findall(f"{{{HL7}}}templateId")}
        if UNSTRUCTURED not in roots and not any(key[0] in roots for key in VOLETS):
            found.append(Finding("relais", "Volet inconnu : aucun schématron du kit ne correspond aux templateId du "
                                 "document, il ne peut donc pas être déclaré valide.", "/ClinicalDocument/templateId"))
        return found

    def _xsd(self, root: etree._Element) -> list[Finding]:
        schema = self._xml_schema()
        if schema.validate(root):
            return []
        return [
            Finding("xsd", f"Non conforme au schéma CDA (ligne {e.line}) : {e.message}", e.path or "", "error")
            for e in schema.error_log
        ]

    def _xml_schema(self) -> etree.XMLSchema:
        with self._lock:
            if self._schema is None:
                xsd = self._kit_file("infrastructure/cda/CDA_extended.xsd")
                parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
                parser.resolvers.add(_Resolver(self._kit_file("infrastructure/cda/schema/xml.xsd")))
                self._schema = etree.XMLSchema(etree.parse(str(xsd), parser))
            return self._schema

    def run_schematron(self, relative: str, document: Any) -> list[Finding]:
        """Failed assertions (and successful reports, as info) of one schematron on a document: its text, or
        its tree from ``self.engine.parse`` (what ``validate_root`` passes, parsed once for every schematron)."""
        executable = self._executable(relative)
        output = self.engine.transform(executable, document)
        svrl = etree.fromstring(output.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
        findings: list[Finding] = []
        name = Path(relative).name
        for node in svrl:
            local = etree.QName(node).localname
            if local not in ("failed-assert", "successful-report"):
                continue
            message = " ".join("".join(node.itertext()).split())
            role = (node.get("role") or ("error" if local == "failed-assert" else "info")).lower()
            if role in ("fatal", "erreur"):
                role = "error"
            findings.append(Finding(name, message, node.get("location", ""), role))
        return findings

    @staticmethod
    def schematrons() -> list[str]:
        """Every schematron the agent may run, relative to the kit's schematrons/ folder."""
        return [STRUCTURATION_MINIMALE, CONTENT_PROFILE, *sorted(set(VOLETS.values()))]

    def warm(self) -> None:
        """Compile the common schematrons now (for a benchmark or a background warm-up)."""
        for relative in self.schematrons():
            if self.has(relative):
                self._executable(relative)

    def has(self, relative: str) -> bool:
        """Whether the kit holds this schematron (a volet's may be missing from a partial kit)."""
        return (self.kit_dir / "schematrons" / relative).is_file()

    def compile(self, relative: str) -> None:
        """Compile one schematron now (``relais kit status`` checks that each one compiles)."""
        self._executable(relative)

    def _executable(self, relative: str) -> Any:
        with self._lock:
            cached = self._compiled.get(relative)
        if cached is not None:
            return cached
        sch = self._kit_file(f"schematrons/{relative}")
        text = self._xslt_text(sch)
        executable = self.engine.compile(text)
        with self._lock:
            self._compiled.setdefault(relative, executable)
            return self._compiled[relative]

    def _xslt_text(self, sch: Path) -> str:
        if self.cache_dir is None:
            return compile_schema(sch)
        key = hashlib.sha256(f"{ENGINE_VERSION}|{sch.resolve()}|{self._kit_fingerprint()}".encode()).hexdigest()
        cached = self.cache_dir / f"{sch.stem}-{key[:16]}.xsl"
        if cached.exists():
            return cached.read_text(encoding="utf-8")
        text = compile_schema(sch)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{threading.get_ident()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(cached)
        return text

    def _kit_fingerprint(self) -> str:
        """Size and time of every .sch of the kit: an included file that changes invalidates the disk cache
        (value sets are read at run time, so they do not count)."""
        with self._lock:
            if self._fingerprint is None:
                digest = hashlib.sha256()
                for path in sorted((self.kit_dir / "schematrons").rglob("*.sch")):
                    stat = path.stat()
                    digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
                self._fingerprint = digest.hexdigest()
            return self._fingerprint

    def _kit_file(self, relative: str) -> Path:
        path = self.kit_dir / relative
        if not path.exists():
            raise Unavailable(
                f"Kit CI-SIS incomplet ou introuvable : {relative} manque dans {self.kit_dir} "
                "(clé de configuration cda.kit_dir).",
                code="cda_kit_missing",
            )
        return path
