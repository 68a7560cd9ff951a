"""The send-order lifecycle: delivery states, the transitions allowed between them, and retry timing.

An order is one document with its destinations; each destination is a ``Delivery`` with its own state, so a
failing DMP never resends a mail that already left, and the reverse::

    scheduled --(delay elapsed or send-now)--> ready --> sending --> sent
        |                                        |          |--(transient)--> retrying --(backoff)--> ready
        +--(cancel)--> cancelled                 |          |--(no network)--> waiting_network --(back)--> ready
                                                 |          +--(permanent)--> failed --(retry by user)--> ready
                                                 +--(author's CPS not here)--> waiting_card --(CPS here)--> ready

    scheduled / waiting_card --(forward: a peer holds the CPS)--> forwarded
    forwarded --(the holder refused: not its CPS any more)--> waiting_card
    forwarded --(recalled: the CPS came back here, or a holder that never acknowledged is gone)--> scheduled
    forwarded --(the holder sent it / cancelled it)--> sent / cancelled   (mirrored from the holder)

Pure rules, stdlib only: no clock, no randomness of its own (both are passed in), no I/O. The store applies
these transitions inside its transactions; this module only says which are allowed.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.errors import Conflict


class DeliveryState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting out the cancellation delay
    READY = "ready"  # due: the executor will send it as soon as a slot is free
    SENDING = "sending"  # recorded on disk before the request leaves; may have reached the service
    SENT = "sent"  # the service acknowledged it (or reconciliation found it there)
    RETRYING = "retrying"  # a transient failure; waits its backoff, then ready again
    WAITING_NETWORK = "waiting_network"  # the service is unreachable; the connectivity probe releases it
    WAITING_CARD = "waiting_card"  # the author's CPS is not on this workstation
    FORWARDED = "forwarded"  # handed to the peer that holds the author's CPS (agent/routing); it sends
    FAILED = "failed"  # refused for good (or out of attempts); the user may retry
    CANCELLED = "cancelled"  # never sent, and never will be


class Event(enum.StrEnum):
    RELEASE = "release"  # the delay elapsed, or send-now
    CLAIM = "claim"  # the executor takes it to send
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    OFFLINE = "offline"
    PERMANENT = "permanent"
    BACKOFF_ELAPSED = "backoff_elapsed"
    NETWORK_BACK = "network_back"
    CARD_MISSING = "card_missing"
    CARD_BACK = "card_back"
    RETRY = "retry"  # the user asks again after a failure
    CANCEL = "cancel"
    RECOVER = "recover"  # the agent restarted while it was sending: back to ready, to reconcile first
    FORWARD = "forward"  # handed to the peer holding the author's CPS (agent/routing)
    FORWARD_REFUSED = "forward_refused"  # that peer no longer holds it: wait for the card again
    RECALL = "recall"  # the CPS came back to this workstation: the order is sent from here again
    REMOTE_CANCELLED = "remote_cancelled"  # the holder cancelled it (mirrored here)
    BOUNCED = "bounced"  # MSSanté: the recipient's operator reported it undeliverable (a failed DSN) after the 250


S = DeliveryState
TRANSITIONS: dict[tuple[DeliveryState, Event], DeliveryState] = {
    (S.SCHEDULED, Event.RELEASE): S.READY,
    (S.RETRYING, Event.RELEASE): S.READY,  # send-now skips the backoff too
    (S.READY, Event.CLAIM): S.SENDING,
    (S.READY, Event.OFFLINE): S.WAITING_NETWORK,
    (S.READY, Event.CARD_MISSING): S.WAITING_CARD,
    (S.READY, Event.PERMANENT): S.FAILED,  # its content cannot be opened (erased, or another master key)
    (S.SENDING, Event.DELIVERED): S.SENT,
    (S.SENDING, Event.TRANSIENT): S.RETRYING,
    (S.SENDING, Event.OFFLINE): S.WAITING_NETWORK,
    (S.SENDING, Event.PERMANENT): S.FAILED,
    (S.SENDING, Event.CARD_MISSING): S.WAITING_CARD,
    (S.SENDING, Event.RECOVER): S.READY,
    (S.RETRYING, Event.BACKOFF_ELAPSED): S.READY,
    (S.WAITING_NETWORK, Event.NETWORK_BACK): S.READY,
    # Reconciliation (the probe, or a cancel that asks first) found an earlier attempt already delivered.
    (S.WAITING_NETWORK, Event.DELIVERED): S.SENT,
    (S.READY, Event.DELIVERED): S.SENT,
    (S.RETRYING, Event.DELIVERED): S.SENT,
    (S.WAITING_CARD, Event.DELIVERED): S.SENT,
    (S.FAILED, Event.DELIVERED): S.SENT,
    (S.WAITING_CARD, Event.CARD_BACK): S.READY,
    (S.FAILED, Event.RETRY): S.READY,
    (S.SCHEDULED, Event.FORWARD): S.FORWARDED,
    (S.WAITING_CARD, Event.FORWARD): S.FORWARDED,
    (S.FORWARDED, Event.FORWARD_REFUSED): S.WAITING_CARD,
    (S.FORWARDED, Event.RECALL): S.SCHEDULED,
    (S.FORWARDED, Event.DELIVERED): S.SENT,  # the holder sent it
    (S.FORWARDED, Event.REMOTE_CANCELLED): S.CANCELLED,
    (S.SENT, Event.BOUNCED): S.FAILED,  # the only way out of sent: the mail never reached its recipient
}
CANCELLABLE = frozenset({S.SCHEDULED, S.READY, S.RETRYING, S.WAITING_NETWORK, S.WAITING_CARD, S.FAILED})
for _state in CANCELLABLE:
    TRANSITIONS[(_state, Event.CANCEL)] = S.CANCELLED

TERMINAL = frozenset({S.SENT, S.CANCELLED})
# Failures a retry cannot mend. ``mss_bounced``: the recipient's server refused the mail after the operator took
# it (a failed DSN: unknown or closed mailbox, refused message). The same message to the same address would be
# refused again, and its Message-ID is already in the operator's Sent folder, so a "retry" could only reconcile
# as sent: the doctor must correct the address and send a new order.
NOT_RETRYABLE = {"mss_bounced": ("Le serveur du destinataire a refusé ce message (la raison est dans l'envoi) : "
                                 "le renvoyer à la même adresse ne peut pas aboutir. Vérifiez l'adresse MSSanté "
                                 "(annuaire santé) et créez un nouvel envoi.")}
# The order's summary state: the most pressing state among its deliveries, in this order.
SUMMARY_PRIORITY = (S.SENDING, S.FAILED, S.WAITING_CARD, S.WAITING_NETWORK, S.RETRYING, S.READY, S.SCHEDULED,
                    S.FORWARDED, S.SENT, S.CANCELLED)


def next_state(state: DeliveryState, event: Event) -> DeliveryState:
    """The state after ``event``; a Conflict (409) with a stable code when the event is not allowed."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise Conflict(refusal(state, event), code=refusal_code(state, event)) from None


def allowed(state: DeliveryState, event: Event) -> bool:
    return (state, event) in TRANSITIONS


def refusal_code(state: DeliveryState, event: Event) -> str:
    if event is Event.CANCEL:
        if state is S.SENDING:
            return "already_sending"
        if state is S.SENT:
            return "already_sent"
        if state is S.CANCELLED:
            return "already_cancelled"
    if state is S.CANCELLED:
        return "order_cancelled"
    if event is Event.RETRY:
        return "not_failed"
    return "invalid_transition"


def refusal(state: DeliveryState, event: Event) -> str:
    code = refusal_code(state, event)
    messages = {
        "already_sending": "L'envoi est en cours : il ne peut plus être annulé.",
        "already_sent": "Le document a déjà été envoyé : il ne peut plus être annulé.",
        "already_cancelled": "L'envoi est déjà annulé.",
        "order_cancelled": "L'envoi a été annulé : il ne peut plus être relancé.",
        "not_failed": "Seul un envoi en échec peut être relancé.",
    }
    return messages.get(code, f"Action impossible : l'envoi est à l'état « {state.value} ».")


def summary_state(states: Iterable[DeliveryState]) -> DeliveryState:
    """The order's state shown to the LGC: its most pressing delivery state."""
    present = set(states)
    for state in SUMMARY_PRIORITY:
        if state in present:
            return state
    return S.CANCELLED


def cancel_refusal(states: Iterable[DeliveryState]) -> str | None:
    """Why an order cannot be cancelled (a stable code), or None. Cancel is all or nothing: once one
    delivery has left (or is leaving), the doctor is told instead of getting a half-cancelled order."""
    present = set(states)
    if S.SENDING in present:
        return "already_sending"
    if S.SENT in present:
        return "already_sent"
    return None  # cancelling an already cancelled order answers the same


def backoff_seconds(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^(attempt-1))].

    ``attempt`` counts from 1 (the attempt that just failed); ``rand`` returns a float in [0, 1).
    Full jitter spreads the retries of many agents that lost the DMP at the same moment.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    exponent = min(attempt - 1, 62)  # 2**62 * base is past any cap; avoids float overflow
    ceiling = min(cap, base * math.ldexp(1.0, exponent))
    return max(0.0, rand() * ceiling)


def service_pause_seconds(failures: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """How long a service that failed ``failures`` times in a row (5xx, TLS, timeout, unreadable answer) is left
    alone before one delivery tries it again: uniform in [c/2, c] with c = min(cap, base * 2^(failures-1)).

    Unlike a delivery's own backoff (full jitter, which may be zero), the wait never falls under half its ceiling:
    it caps the rate of requests to a failing service, whatever the number of orders waiting for it.
    """
    if failures < 1:
        raise ValueError("failures counts from 1")
    ceiling = min(cap, base * math.ldexp(1.0, min(failures - 1, 62)))
    return ceiling / 2 + rand() * ceiling / 2


def attempts_exhausted(round_attempts: int, max_attempts: int) -> bool:
    """After ``max_attempts`` transient failures in a row, the delivery fails (the user may retry it);
    ``max_attempts`` 0: never, transient trouble is retried for as long as it lasts."""
    return max_attempts > 0 and round_attempts >= max_attempts


MAX_DELAY_SECONDS = 7 * 24 * 3600


def check_delay(delay: object) -> str | None:
    """A French reason when a per-order delay is not acceptable, else None."""
    if isinstance(delay, bool) or not isinstance(delay, int):
        return "Le délai doit être un nombre entier de secondes."
    if not 0 <= delay <= MAX_DELAY_SECONDS:
        return f"Le délai doit être compris entre 0 et {MAX_DELAY_SECONDS} secondes (7 jours)."
    return None


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A validated order, ready to be stored. ``payload`` (patient, document, visibility) is sealed at rest;
    the other fields are metadata the queue needs without opening it (ids, INS for reconciliation)."""

    order_id: str
    client_ref: str | None
    client_name: str
    body_hash: str
    ins: str
    ins_oid: str
    identity_status: str
    author_rpps: str
    document_unique_id: str
    submission_set_unique_id: str
    type_code: str
    payload: bytes
    destinations: tuple[str, ...]  # "dmp", "mss:<address>", "patient_mss"
    delay_seconds: int


def destination_kind(destination: str) -> str:
    """Which sender handles a destination: "dmp" or "mss"."""
    return "dmp" if destination == "dmp" else "mss"
