"""Integration fixtures shared by several test modules, defined once here so session-scoped ones run once.

Card fixtures (pcscd with vpcd, SoftHSM2): ``tests/support/cards.py``; the MSSanté operator's simulator
(``operator``): ``tests/support/mail.py``. ``kit``: the CI-SIS kit of the reference folder.
"""

from pathlib import Path

import pytest

from tests.support.cards import pcscd, softhsm  # noqa: F401
from tests.support.mail import operator  # noqa: F401


@pytest.fixture(scope="session")
def kit(reference_dir: Path) -> Path:
    """The CI-SIS kit (schematrons, examples) in the reference folder; skips without it."""
    path = reference_dir / "ci-sis"
    if not (path / "schematrons").is_dir():
        pytest.skip(f"kit CI-SIS absent ({path})")
    return path
