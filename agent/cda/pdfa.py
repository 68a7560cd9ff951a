"""PDF/A-1 for the DMP: the only Ghostscript caller.

The CNDA's test book (MEMENTO, "PDF/A-1") says every PDF sent to the DMP must be PDF/A-1, and the XDS-SD format
code urn:ihe:iti:xds-sd:pdf:2008 reads "Document à corps non structuré en Pdf/A-1". A practice's software rarely
produces PDF/A, so refusing would block nearly every send: the agent converts instead, with Ghostscript (Debian's
``ghostscript`` package, a real PDF/A writer: embedded fonts, sRGB OutputIntent, XMP ``pdfaid:part=1``), and keeps
a PDF that already declares PDF/A-1 (its XMP and its GTS_PDFA1 OutputIntent) as it is, so a retried send carries the
same bytes. Without Ghostscript the PDF is refused with a clear message (fail closed), never sent as is.

Runs Ghostscript as a subprocess with -dSAFER on temporary files, with a time limit; never logs the content.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from agent.errors import InvalidInput, Unavailable

TIMEOUT_SECONDS = 120
_PDFA1_XMP = re.compile(rb"pdfaid:part\s*(=\s*['\"]1['\"]|>\s*1\s*<)")


def ghostscript() -> str | None:
    return shutil.which("gs")


def is_pdfa1(pdf: bytes) -> bool:
    """The PDF declares PDF/A-1 (XMP identification and its OutputIntent). A declaration, not a full audit."""
    return bool(_PDFA1_XMP.search(pdf)) and b"GTS_PDFA1" in pdf


def _icc_profile() -> Path | None:
    """Ghostscript's own sRGB profile (the OutputIntent PDF/A requires), from its Debian data folder."""
    root = Path("/usr/share/ghostscript")
    found = sorted(root.glob("*/iccprofiles/srgb.icc")) if root.is_dir() else []
    return found[-1] if found else None


_DEFINITION = """%!
/ICCProfile ({icc}) def
[/_objdef {{icc_PDFA}} /type /stream /OBJ pdfmark
[{{icc_PDFA}} << /N 3 >> /PUT pdfmark
[{{icc_PDFA}} ICCProfile (r) file /PUT pdfmark
[/_objdef {{OutputIntent_PDFA}} /type /dict /OBJ pdfmark
[{{OutputIntent_PDFA}} <<
  /Type /OutputIntent /S /GTS_PDFA1 /DestOutputProfile {{icc_PDFA}}
  /OutputConditionIdentifier (sRGB)
>> /PUT pdfmark
[{{Catalog}} << /OutputIntents [ {{OutputIntent_PDFA}} ] >> /PUT pdfmark
"""


def to_pdfa1(pdf: bytes, field: str) -> bytes:
    """``pdf`` as PDF/A-1b: as it is when it already says so, else converted by Ghostscript."""
    if is_pdfa1(pdf):
        return pdf
    gs = ghostscript()
    if gs is None:
        raise Unavailable("Ghostscript est absent de ce poste : le PDF ne peut pas être converti en PDF/A-1 comme "
                          "le DMP l'exige (installez le paquet ghostscript).", code="pdfa_unavailable")
    icc = _icc_profile()
    if icc is None:
        raise Unavailable("Profil de couleurs sRGB de Ghostscript introuvable : conversion PDF/A-1 impossible.",
                          code="pdfa_unavailable")
    with tempfile.TemporaryDirectory(prefix="relais-pdfa-") as tmp:
        folder = Path(tmp)
        source, target, definition = folder / "in.pdf", folder / "out.pdf", folder / "pdfa.ps"
        source.write_bytes(pdf)
        definition.write_text(_DEFINITION.format(icc=str(icc).replace("(", r"\(").replace(")", r"\)")),
                              encoding="ascii")
        command = [gs, "-q", "-dPDFA=1", "-dBATCH", "-dNOPAUSE", "-dNOOUTERSAVE", "-dSAFER",
                   f"--permit-file-read={icc}", f"--permit-file-read={folder}/", "-sDEVICE=pdfwrite",
                   "-sColorConversionStrategy=RGB", "-dPDFACompatibilityPolicy=1", "-dEmbedAllFonts=true",
                   f"-sOutputFile={target}", str(definition), str(source)]
        try:
            done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired as exc:
            raise InvalidInput.field(field, "Conversion PDF/A-1 trop longue : PDF trop complexe ou illisible.",
                                     code="not_pdf") from exc
        output = target.read_bytes() if target.exists() else b""
        said = done.stdout + done.stderr
        if done.returncode != 0 or not output.startswith(b"%PDF-") or b"No pages will be processed" in said:
            raise InvalidInput.field(field, "PDF illisible : sa conversion en PDF/A-1 (exigée par le DMP) a échoué.",
                                     code="not_pdf")
        return output
