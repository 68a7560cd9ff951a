"""The DMP's web access for professionals (Web-PS), by contextual call from the LGC: TD0.9 of the CNDA test book.

What is public ([CDT] TD0.9, its Déclarations and RESSOURCES tabs): the LPS opens the Web-PS either on the
professional's dashboard (0.9-010; with e-CPS, 0.9-070) or on the home page of the patient's DMP "en fournissant
l'INS en paramètre" (0.9-040); the browser must be one the Web-PS supports (EX_GEN-1380); an external window must
never be doubled, e.g. by a constant window name (REC_0.9-1010); the Web-PS addresses are
https://wps-cps.dmp.monespacesante.fr/ (production) and https://wps-cps.dev1.dmp.gouv.fr (test, IP allow-list).
The Web-PS authenticates the professional itself (CPS card in the browser, or e-CPS through Pro Santé Connect).
NOT public: the paths and the parameter names of the contextual URLs (the GIE's integration guide). They are
configuration templates (``[dmp] web_access_dashboard_url``, ``web_access_patient_url``) with ``{ins}`` and
``{oid}`` placeholders, filled here URL-encoded. The AIR mode (TD0.10, a POST carrying a VIHF) is not built.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from agent.errors import Unavailable

WINDOW_NAME = "RelaisDMPWebPS"  # REC_0.9-1010: one DMP window at a time, reused by name


@dataclass(frozen=True, slots=True)
class WebAccessSettings:
    dashboard_url: str = ""
    patient_url: str = ""  # a template: {ins}, {oid}


def web_access(settings: WebAccessSettings, ins: str | None, oid: str) -> dict[str, str]:
    """The contextual URL (the patient's DMP when ``ins`` is given, else the dashboard) and how to open it."""
    template = settings.patient_url if ins else settings.dashboard_url
    if not template:
        raise Unavailable("L'accès web au DMP n'est pas configuré ([dmp] web_access_patient_url).",
                          code="dmp_web_access_disabled")
    if not template.startswith("https://"):
        raise Unavailable("L'adresse de l'accès web au DMP doit être en https.", code="dmp_web_access_disabled")
    url = template.format(ins=urllib.parse.quote(ins or "", safe=""), oid=urllib.parse.quote(oid, safe=""))
    return {"url": url, "method": "GET", "window_name": WINDOW_NAME, "target": "patient" if ins else "dashboard"}
