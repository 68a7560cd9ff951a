"""Mail checks shared by the MSSanté tests: which headers of a message carry a patient identifier, name or title.

The patient's Mon espace santé address is the INS itself, so ``To:`` (and only it) may carry the INS when the
message goes to the patient's mailbox (``<INS>@patient.mssante.fr``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from agent.mss.rules import PATIENT_DOMAIN
from relais_sandbox.host import SandboxContext
from relais_sandbox.mss import MssSimulator
from relais_sandbox.pki import SandboxPki


@pytest.fixture
async def operator(tmp_path: Path) -> AsyncIterator[tuple[MssSimulator, dict[str, Any], SandboxPki]]:
    """The MSSanté operator's simulator on loopback, with its own PKI: (simulator, endpoint, pki)."""
    pki = SandboxPki(tmp_path / "sandbox")
    sim = MssSimulator()
    endpoint = await sim.start(SandboxContext(tmp_path / "sandbox", pki))
    yield sim, endpoint, pki
    await sim.stop()


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


def nested_report(depth: int, *, fold: bool = False, original: str = "<orig.1@demo.mssante.fr>") -> bytes:
    """A delivery report whose status part sits under ``depth`` nested multiparts (issue 23: such a report made
    the report reader fail at every poll). ``fold``: each Content-Type header folded after its colon."""
    sep = ":\r\n " if fold else ": "
    lines = ["From: MAILER-DAEMON@mss.example", "To: dr.x@medecin.mssante.fr", "Message-ID: <nested@mss.example>",
             "MIME-Version: 1.0", f'Content-Type{sep}multipart/report; report-type=delivery-status; boundary="b0"',
             ""]
    for level in range(1, depth):
        lines += [f"--b{level - 1}", f'Content-Type{sep}multipart/mixed; boundary="b{level}"', ""]
    lines += [f"--b{depth - 1}", "Content-Type: message/delivery-status", "",
              f"Reporting-MTA: dns; mss.example\r\nOriginal-Envelope-Id: {original}", "",
              "Final-Recipient: rfc822; dr.x@medecin.mssante.fr", "Action: failed", "Status: 5.1.1", ""]
    for level in reversed(range(depth)):
        lines += [f"--b{level}--", ""]
    return "\r\n".join(lines).encode()
