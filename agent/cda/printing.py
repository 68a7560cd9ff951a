"""A rendered CDA page as PDF (``/v1/cda/render?format=pdf`` of a structured document): the only Chromium caller.

The page ``agent.cda.render`` writes is printed by headless Chromium (``--print-to-pdf``, Debian's ``chromium``
package, already a system package of the project for the UI tests): a real layout engine, so tables, lists and
accents print as the HTML shows them, with fonts embedded and the text searchable. An N1 document that carries a
PDF is not printed: its own PDF is returned as it is (``agent.cda.render.embedded_pdf``).

Safe as the page is: the HTML is inert (no script, no external resource, its own Content-Security-Policy
``default-src 'none'``, which also forbids scripts: Chromium's own switch to turn scripts off breaks its
printing), and Chromium runs besides with no network (proxy to a closed port), a fresh profile in a temporary
folder, and a time limit. Without Chromium the answer is a clear French 503
(``render_pdf_unavailable``), never an HTML page named PDF. Never logs the page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from agent.errors import InvalidInput, Unavailable

TIMEOUT_SECONDS = 60
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
        "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
        "--no-pdf-header-footer")


def browser() -> str | None:
    """The headless browser that prints (found on PATH), or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(page: str) -> bytes:
    """``page`` (a complete, self-contained HTML document) printed to PDF (A4, backgrounds, no header/footer)."""
    executable = browser()
    if executable is None:
        raise Unavailable("Chromium est absent de ce poste : le document ne peut pas être rendu en PDF (installez "
                          "le paquet chromium) ; le rendu HTML (format=html) reste disponible.",
                          code="render_pdf_unavailable")
    with tempfile.TemporaryDirectory(prefix="relais-print-") as tmp:
        folder = Path(tmp)
        source, target = folder / "document.html", folder / "document.pdf"
        source.write_text(page, encoding="utf-8")
        command = [executable, *ARGS, f"--user-data-dir={folder / 'profile'}", f"--print-to-pdf={target}",
                   source.as_uri()]
        environment = {"HOME": str(folder), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                       "LANG": "C.UTF-8"}
        try:
            subprocess.run(command, capture_output=True, timeout=TIMEOUT_SECONDS, check=False, env=environment,
                           cwd=folder)
        except subprocess.TimeoutExpired as exc:
            raise InvalidInput.field("format", "Rendu PDF trop long : document trop volumineux pour être imprimé.",
                                     code="render_pdf_timeout") from exc
        output = target.read_bytes() if target.exists() else b""
    if not output.startswith(b"%PDF-"):
        raise Unavailable("Chromium n'a pas produit de PDF pour ce document ; le rendu HTML (format=html) reste "
                          "disponible.", code="render_pdf_unavailable")
    return output
