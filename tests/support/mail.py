"""Mail checks shared by the MSSanté tests: which headers of a message carry a patient identifier, name or title.

The patient's Mon espace santé address is the INS itself, so ``To:`` (and only it) may carry the INS when the
message goes to the patient's mailbox (``<INS>@patient.mssante.fr``).
"""

from __future__ import annotations

from collections.abc import Iterable
from email import message_from_bytes, policy

from agent.mss.rules import PATIENT_DOMAIN


def leaking_headers(raw: bytes, forbidden: Iterable[str]) -> list[str]:
    """``name: value`` of every header (decoded, case-insensitive) that contains one of ``forbidden``."""
    msg = message_from_bytes(raw, policy=policy.default)
    words = [w.lower() for w in forbidden if w]
    found: list[str] = []
    for name, value in msg.items():
        text = str(value).lower()
        if name.lower() == "to" and text.endswith("@" + PATIENT_DOMAIN):
            continue  # the patient's mailbox: its address is the INS
        if any(w in text for w in words):
            found.append(f"{name}: {value}")
    return found
