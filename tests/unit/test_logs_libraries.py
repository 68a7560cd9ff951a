"""Library loggers that see patient data (signxml logs the canonicalised VIHF with the INS) stay quiet."""

from __future__ import annotations

import logging

import pytest

from agent.logs import QUIET_LIBRARIES
from agent.softkey import SoftwareSigner  # noqa: F401  (imports signxml through the agent, as in production)


def test_signxml_debug_never_reaches_a_root_handler(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("signxml").debug("canonicalised VIHF with INS 1 84 12 75 123 456 78")
    assert "signxml" in QUIET_LIBRARIES
    assert not [r for r in caplog.records if r.name.startswith("signxml")]
