"""Integration fixtures shared by several test modules, defined once here so session-scoped ones run once.

Card fixtures (pcscd with vpcd, SoftHSM2): ``tests/support/cards.py``.
"""

from tests.support.cards import pcscd, softhsm  # noqa: F401
