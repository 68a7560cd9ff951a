"""Integration fixtures shared by several test modules, defined once here so session-scoped ones run once.

Card fixtures (pcscd with vpcd, SoftHSM2): ``tests/support/cards.py``; the MSSanté operator's simulator
(``operator``): ``tests/support/mail.py``.
"""

from tests.support.cards import pcscd, softhsm  # noqa: F401
from tests.support.mail import operator  # noqa: F401
