"""SC.DMP/CONF.21: the notice every professional must see, and acknowledge, every 180 days.

The text and the words of the "J'ai compris" button are those of the requirement (seed document 000), verbatim.
The notice is due for a professional (identified by RPPS) when they never acknowledged it, or when 180 days or
more have passed since their last acknowledgement: at exactly ``acknowledged_at + 180 days`` it is due again.
While it is due, DMP consultation is refused.

Pure: the current time is an argument (the caller's injected Clock), nothing is stored here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

NOTICE_ID = "conf21"
# Bumped when the text changes: an acknowledgement of an older text does not count.
NOTICE_VERSION = 1
PERIOD = timedelta(days=180)
# An acknowledgement up to this far in the future is clock skew between reads, not a wrong clock.
CLOCK_TOLERANCE = timedelta(minutes=5)

TITLE = "Information sur l'accès au DMP / Mon espace santé"
TEXT = (
    "Le logiciel peut effectuer des requêtes de recherche de document au nom de l'utilisateur sur les DMP/MES et "
    "permet d'en consulter, sur action manuelle, les documents d'intérêt. Ces interactions sont tracées avec "
    "l'identifiant national de l'utilisateur et le patient est notifié de ces interactions."
)
BUTTON = (
    "J'ai compris. Toute consultation de ma part d'un DMP/MES pour lequel le patient (ou son représentant légal) "
    "n'a pas donné son consentement m'expose à des poursuites."
)
REQUIREMENT = "SC.DMP/CONF.21"
HELP = (
    "https://esante.gouv.fr/sites/default/files/media_entity/documents/"
    "M%C3%A9mo_Synth%C3%A8se%20des%20droits%20et%20r%C3%A8gles%20d%27acc%C3%A8s%20%C3%A0%20Monespacesant%C3%A9_DMP.pdf"
)


@dataclass(frozen=True, slots=True)
class NoticeState:
    rpps: str
    acknowledged_at: datetime | None
    due: bool
    due_since: datetime | None  # None when never acknowledged (due from the first use) or not due
    next_due_at: datetime | None  # when it falls due again; None while it is due

    def as_dict(self, rfc3339: Any) -> dict[str, Any]:
        return {
            "id": NOTICE_ID,
            "version": NOTICE_VERSION,
            "requirement": REQUIREMENT,
            "rpps": self.rpps,
            "title": TITLE,
            "text": TEXT,
            "button": BUTTON,
            "help": HELP,
            "due": self.due,
            "acknowledged_at": rfc3339(self.acknowledged_at) if self.acknowledged_at else None,
            "next_due_at": rfc3339(self.next_due_at) if self.next_due_at else None,
            "period_days": PERIOD.days,
        }


def is_due(acknowledged_at: datetime | None, now: datetime, period: timedelta = PERIOD) -> bool:
    """Due when never acknowledged, or ``period`` or more after the last acknowledgement.

    An acknowledgement dated well in the future (the clock was wrong then, or is wrong now) cannot be trusted:
    the notice is shown again rather than hidden for longer than the law allows."""
    if acknowledged_at is None or acknowledged_at > now + CLOCK_TOLERANCE:
        return True
    return now >= acknowledged_at + period


def state(rpps: str, acknowledged_at: datetime | None, now: datetime, period: timedelta = PERIOD) -> NoticeState:
    if acknowledged_at is None:
        return NoticeState(rpps, None, True, None, None)
    falls_due = acknowledged_at + period
    if is_due(acknowledged_at, now, period):
        return NoticeState(rpps, acknowledged_at, True, min(falls_due, now), None)
    return NoticeState(rpps, acknowledged_at, False, None, falls_due)
