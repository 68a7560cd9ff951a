"""Integration fixtures shared by several test modules, defined once here so session-scoped ones run once.

Card fixtures (pcscd with vpcd, SoftHSM2): ``tests/cards_support.py``.
"""

from tests.cards_support import pcscd, softhsm  # noqa: F401
