"""What the tray shows, as a pure function of the agent's status and events.

The icon says at a glance: grey (agent unreachable), red (a send failed and needs the doctor, or the disk refuses
writes: full or read-only), orange
(something waits for the doctor: CPS absent or not logged in, orders waiting for this card, a notice to
read), green (CPS logged in, nothing pending on the doctor). Notifications are French sentences for the
doctor, raised only when something needs them (LGC.DMP/UX.10: sending never disturbs the screen).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Light(enum.StrEnum):
    OFFLINE = "offline"
    ERROR = "error"
    ATTENTION = "attention"
    OK = "ok"


@dataclass(frozen=True)
class Notification:
    title: str
    message: str


@dataclass
class TrayModel:
    connected: bool = False
    cps_present: bool = False
    cps_logged_in: bool = False
    failed: int = 0
    waiting_card: int = 0
    pending: int = 0
    notices_due: int = 0
    paused: bool = False
    disk_problem: str = ""  # the agent's French sentence while its disk refuses writes (full, read-only)
    clock_warning: str = ""  # the agent saw the wall clock jump
    failed_orders: set[str] = field(default_factory=set)
    # The doctor's notification settings (GET /v1/settings "values"); None until read.
    preferences: dict[str, Any] | None = None

    def allows(self, type_: str) -> bool:
        """Whether the doctor wants this event's notification (a full disk or a clock change: always)."""
        key = notification_key(type_)
        return key is None or (self.preferences or {}).get(key, True) is not False

    def apply_status(self, status: dict[str, Any]) -> None:
        self.connected = True
        cards = status.get("cards") or {}
        cps = cards.get("cps") or {}
        self.cps_present = bool(cps.get("present"))
        self.cps_logged_in = bool(cps.get("logged_in"))
        queue = status.get("queue") or {}
        counts = queue.get("counts", queue) if isinstance(queue, dict) else {}
        self.failed = int(counts.get("failed", 0) or 0)
        self.waiting_card = int(counts.get("waiting_card", 0) or 0)
        self.pending = sum(int(counts.get(k, 0) or 0) for k in ("scheduled", "ready", "sending", "retrying",
                                                                  "waiting_network", "waiting_card"))
        self.paused = bool(queue.get("paused", False)) if isinstance(queue, dict) else False
        store = status.get("store") or {}
        problem = store.get("problem") if isinstance(store, dict) else None
        self.disk_problem = str(problem.get("message") or "disque plein") if isinstance(problem, dict) else ""
        clock = status.get("clock") or {}
        jump = clock.get("last_jump") if isinstance(clock, dict) else None
        self.clock_warning = str(jump.get("message") or "") if isinstance(jump, dict) else ""
        notices = status.get("notices") or []
        self.notices_due = sum(1 for n in notices if isinstance(n, dict) and n.get("due", True)
                               and not n.get("acknowledged_at"))

    @property
    def light(self) -> Light:
        if not self.connected:
            return Light.OFFLINE
        if self.failed or self.disk_problem:
            return Light.ERROR
        if not self.cps_logged_in or self.waiting_card or self.notices_due:
            return Light.ATTENTION
        return Light.OK

    @property
    def tooltip(self) -> str:
        if not self.connected:
            return "Relais : agent injoignable"
        parts = ["Relais"]
        if self.disk_problem:
            parts.append("DISQUE PLEIN OU EN LECTURE SEULE : rien ne peut être enregistré")
        parts.append("CPS connectée" if self.cps_logged_in else ("CPS non connectée" if self.cps_present
                                                                    else "CPS absente"))
        if self.pending:
            parts.append(f"{self.pending} envoi(s) en attente")
        if self.failed:
            parts.append(f"{self.failed} échec(s)")
        if self.paused:
            parts.append("envois suspendus")
        if self.clock_warning:
            parts.append("horloge du poste modifiée")
        return " · ".join(parts)

    def on_event(self, type_: str, data: dict[str, Any]) -> Notification | None:
        """Update from one event; the notification to show, if the doctor needs to know."""
        if type_ == "card.inserted" and data.get("card") == "vitale":
            return Notification("Carte Vitale insérée", "Lecture de la carte du patient en cours.")
        if type_ == "card.inserted" and data.get("card") == "cps":
            self.cps_present = True
            return None
        if type_ == "card.removed" and data.get("card") == "cps":
            self.cps_present = self.cps_logged_in = False
            return None
        if type_ == "cps.login":
            self.cps_logged_in = bool(data.get("logged_in", True))
            return None
        if type_ == "psc.login":
            return Notification("Pro Santé Connect", "Professionnel connecté avec e-CPS.")
        if type_ == "psc.logout" and data.get("reason") in ("expired", "refused"):
            return Notification("Pro Santé Connect", "La session e-CPS est terminée : les envois attendent une "
                                                     "nouvelle connexion.")
        if type_ in ("dmp.access", "vitale.dica"):
            access = data.get("access") or data
            new = data.get("new_documents")
            if access.get("can_read"):
                text = "Le DMP du patient est consultable."
                if new:
                    text += f" {new} nouveau(x) document(s) depuis la dernière consultation."
            else:
                reasons = [r.get("message", "") for r in access.get("reasons", []) if isinstance(r, dict)]
                text = "DMP non consultable : " + (" ; ".join(r for r in reasons if r) or "voir le tableau de bord")
            return Notification("Accès au DMP", text)
        if type_ == "order.updated":
            order_id = str(data.get("id") or data.get("order_id") or "")
            state = data.get("state")
            if state == "failed" and order_id not in self.failed_orders:
                self.failed_orders.add(order_id)
                reason = data.get("reason") or data.get("last_error") or "voir le tableau de bord"
                return Notification("Échec d'envoi d'un document",
                                    f"{reason}. Ouvrez le tableau de bord pour réessayer.")
            if state != "failed":
                self.failed_orders.discard(order_id)
            if state == "waiting_card" and data.get("from_peer"):
                return Notification("Document en attente de votre carte",
                                    "Un document d'un autre poste attend votre carte CPS pour partir.")
            return None
        if type_ in ("routing.received", "order.received"):
            return Notification("Document reçu d'un autre poste", "Il partira avec votre carte CPS.")
        if type_ == "store.fault":
            if data.get("writable") is False:
                self.disk_problem = str(data.get("message") or "disque plein")
                return Notification("Disque plein : Relais ne peut plus enregistrer", self.disk_problem)
            self.disk_problem = ""
            return None
        if type_ == "clock.jumped":
            self.clock_warning = str(data.get("message") or "")
            return Notification("Horloge de l'ordinateur modifiée", self.clock_warning) if self.clock_warning \
                else None
        if type_ == "notice.due":
            self.notices_due = max(self.notices_due, 1)
            return Notification("Avis à lire (DMP)", "Merci de lire l'avis sur la consultation du DMP et de "
                                                     "cliquer sur « J'ai compris » dans le tableau de bord.")
        return None


def notification_key(type_: str) -> str | None:
    """The dashboard setting that silences this event's notification; None: never silenced."""
    if type_ in ("order.updated", "routing.received", "order.received"):
        return "notifications.send_failures"
    if type_ in ("card.inserted", "dmp.access", "vitale.dica"):
        return "notifications.patients"
    if type_ in ("notice.due", "psc.login", "psc.logout"):
        return "notifications.notices"
    return None


def failure_notification(order: dict[str, Any]) -> Notification:
    """The failed-send notification with what the doctor recognises: the document's title, the patient's name
    and the explanation of the failure (the agent's ``last_error.explanation``); events carry none of them, so
    the tray reads the order from the API. Its title stays generic: only the title reaches the tray's log."""
    document = order.get("document") or {}
    patient = order.get("patient") or {}
    what = document.get("title") or document.get("type_label") or "Un document"
    who = patient.get("display_name")
    failed = [d for d in order.get("deliveries") or [] if isinstance(d, dict) and d.get("state") == "failed"]
    error = (failed[0].get("last_error") or {}) if failed else {}
    why = error.get("explanation") or error.get("message") or "voir le tableau de bord"
    retry = any((d.get("last_error") or {}).get("retry_helps", True) for d in failed)
    action = "réessayer ou retirer l'envoi" if retry else "retirer l'envoi"
    head = f"« {what} »" + (f" pour {who}" if who else "") + " n'est pas parti."
    return Notification("Échec d'envoi d'un document", f"{head} {why} Ouvrez le tableau de bord pour {action}.")
