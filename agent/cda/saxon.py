"""The only saxonche importer: an XSLT 3 processor (Saxon-HE) for the compiled schematrons.

Saxon's processor is shared and not documented as thread-safe for compilation, so every call holds one lock;
the agent runs validation in a worker thread, never on the event loop.
"""

from __future__ import annotations

import threading
from typing import Any

from agent.errors import RelaisError


class XsltFailure(RelaisError):
    code = "validation_engine_failed"
    title = "Le moteur de validation CDA a échoué"


class XsltEngine:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processor: Any = None
        self._xslt: Any = None

    def _ensure(self) -> None:
        if self._processor is None:
            from saxonche import PySaxonProcessor  # lazily: the agent starts fast

            self._processor = PySaxonProcessor(license=False)
            self._xslt = self._processor.new_xslt30_processor()

    def compile(self, stylesheet: str) -> Any:
        """A compiled stylesheet handle (opaque to callers)."""
        with self._lock:
            self._ensure()
            try:
                return self._xslt.compile_stylesheet(stylesheet_text=stylesheet)
            except Exception as exc:  # saxonche raises PySaxonApiError, not importable before the processor
                raise XsltFailure(f"compilation XSLT impossible : {exc}") from exc

    def parse(self, document: str) -> Any:
        """The XML text ``document`` as Saxon's tree (opaque), to run several stylesheets on one parse."""
        with self._lock:
            self._ensure()
            try:
                return self._processor.parse_xml(xml_text=document)
            except Exception as exc:
                raise XsltFailure(f"lecture XML impossible : {exc}") from exc

    def transform(self, executable: Any, document: Any) -> str:
        """Apply ``executable`` to ``document``: XML text, or a tree from ``parse``; the result as text."""
        node = self.parse(document) if isinstance(document, str) else document
        with self._lock:
            try:
                result = executable.transform_to_string(xdm_node=node)
            except Exception as exc:
                raise XsltFailure(f"exécution XSLT impossible : {exc}") from exc
        return str(result or "")
