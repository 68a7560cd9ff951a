"""The card service: which readers there are, which cards are in them, the doctor's CPS session, the Vitale.

It listens to a reader backend (PC/SC or the sandbox's simulated reader) and, for each card inserted, identifies it
inside one short shared-mode transaction: a Vitale is read at once (its beneficiaries stay in memory while the card
is in, and are forgotten when it is pulled), a CPS is opened through its token (PKCS#11 or the demo's software
key) to learn its holder. Without PC/SC (``cards.pcsc = false``) a CPS is the PKCS#11 token itself, polled for
presence.

The rest of the agent asks it, never the cards: ``cps_holder()``, ``require_signer()``, ``vitale_beneficiaries()``,
``snapshot()``; and hears ``card.inserted`` / ``card.removed`` / ``cps.login`` / ``cps.logout`` on the bus. Events
carry the reader, the card kind and (for the CPS) the RPPS of the professional; never a patient's NIR or name.

Backend callbacks arrive on the backend's thread; everything blocking (APDUs, PKCS#11) runs off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.cards.cps import CpsToken, Purpose, check_pin_format, cps_absent, is_cps, not_logged_in
from agent.cards.readers import ReaderBackend, reader_busy, service_down
from agent.cards.vitale import ApduVitaleSource, VitaleSource, is_vitale
from agent.clock import Clock
from agent.domain.cps import CpsHolder
from agent.domain.signing import SignatureAlgorithm, Signer
from agent.domain.vitale import VitaleBeneficiary, VitaleCard
from agent.errors import RelaisError, Unavailable
from agent.events import EventBus
from agent.lifecycle import Lifecycle
from agent.logs import get_logger

log = get_logger("cards")

T = TypeVar("T")
TokenFactory = Callable[[str], CpsToken | None]
PKCS11_READER = "PKCS#11"
BUSY_RETRIES = 5


@dataclass
class _Cps:
    reader: str
    token: CpsToken | None
    holder: CpsHolder | None
    tries_left: int | None
    error: str = ""
    last_used: float = 0.0


@dataclass
class _Vitale:
    reader: str
    card: VitaleCard = field(default_factory=lambda: VitaleCard([]))
    error: str = ""

    @property
    def beneficiaries(self) -> list[VitaleBeneficiary]:
        return self.card.beneficiaries


class GuardedSigner:
    """The CPS signer as handed out: refuses once the card is pulled or the session ended."""

    def __init__(self, service: CardService, token: CpsToken, signer: Signer) -> None:
        self._service = service
        self._token = token
        self._signer = signer

    @property
    def certificate_der(self) -> bytes:
        return self._signer.certificate_der

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._signer.algorithm

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        self._service._check_token(self._token)
        return self._signer.sign(data, algorithm)


class CardService(Lifecycle):
    def __init__(self, bus: EventBus, clock: Clock, *, backend: ReaderBackend | None,
                 token_factory: TokenFactory | None = None, token_present: Callable[[], bool] | None = None,
                 vitale_source: VitaleSource | None = None, session_timeout: float = 4 * 3600.0,
                 poll_seconds: float = 1.0) -> None:
        self._bus = bus
        self._clock = clock
        self.backend = backend
        self._token_factory = token_factory
        self._token_present = token_present
        self._vitale_source = vitale_source or ApduVitaleSource()
        self._session_timeout = session_timeout
        self._poll_seconds = poll_seconds
        self._lock = threading.RLock()
        self._service_state = "off" if backend is None else "starting"
        self._service_detail = ""
        self._readers: dict[str, str | None] = {}
        self._cps: _Cps | None = None
        self._vitale: _Vitale | None = None
        # Cards another program kept busy while we tried to identify them: tried again in the background.
        self._busy: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # The card's own threads (see on_card_thread): two, so that the next signature already waits on the card
        # while the previous one's thread hands its result to the event loop.
        self._card_threads = ThreadPoolExecutor(2, thread_name_prefix="relais-card")

    # --- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.backend is not None:
            self.backend.start(self)
        elif self._token_present is not None and self._token_factory is not None:
            self._service_state = "pkcs11"
            self._tasks.append(asyncio.create_task(self._poll_token()))
        self._tasks.append(asyncio.create_task(self._expire_sessions()))
        if self.backend is not None:
            self._tasks.append(asyncio.create_task(self._retry_pending()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await asyncio.to_thread(self._card_threads.shutdown)
        if self.backend is not None:
            await asyncio.to_thread(self.backend.stop)
        with self._lock:
            cps, self._cps = self._cps, None
        if cps is not None and cps.token is not None:
            await asyncio.to_thread(cps.token.close)

    async def _poll_token(self) -> None:
        assert self._token_present is not None
        while True:
            present = await asyncio.to_thread(self._token_present)
            with self._lock:
                known = self._cps is not None
            if present and not known:
                await asyncio.to_thread(self.readers_changed, [PKCS11_READER])
                await asyncio.to_thread(self.card_inserted, PKCS11_READER, b"")
            elif not present and known:
                await asyncio.to_thread(self.card_removed, PKCS11_READER)
            await asyncio.sleep(self._poll_seconds)

    async def _retry_pending(self) -> None:
        """Cards not fully known yet: held by another program, or a CPS its PKCS#11 module did not show yet (the
        Cryptolib may see a card a moment after PC/SC does)."""
        while True:
            await asyncio.sleep(self._poll_seconds)
            with self._lock:
                pending = list(self._busy)
                cps = self._cps
            for reader in pending:
                await asyncio.to_thread(self._reidentify, reader)
            if cps is not None and cps.token is None and self._token_factory is not None:
                await asyncio.to_thread(self._reopen_cps, cps)

    def _reopen_cps(self, stale: _Cps) -> None:
        fresh = self._open_cps(stale.reader)
        if fresh.token is None:
            return
        with self._lock:
            if self._cps is not stale:  # pulled or replaced meanwhile
                fresh.token.close()
                return
            self._cps = fresh
        self._bus.publish("card.inserted", reader=fresh.reader, card="cps",
                          rpps=fresh.holder.rpps if fresh.holder else "")

    def _reidentify(self, reader: str) -> None:
        with self._lock:
            if reader not in self._busy or self._readers.get(reader) is None:
                self._busy.discard(reader)
                return
        self.card_inserted(reader, b"")

    async def _expire_sessions(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, max(self._session_timeout / 4, 0.05)))
            with self._lock:
                cps = self._cps
                idle = cps is not None and cps.token is not None and cps.token.logged_in and \
                    self._clock.monotonic() - cps.last_used > self._session_timeout
            if idle and cps is not None and cps.token is not None:
                await asyncio.to_thread(cps.token.logout)
                self._bus.publish("cps.logout", reader=cps.reader, card="cps", reason="timeout")
                log.info("CPS : session fermée après inactivité")

    # --- ReaderListener (backend thread) ------------------------------------------------------------------

    def service_changed(self, up: bool, detail: str = "") -> None:
        with self._lock:
            self._service_state = "up" if up else "down"
            self._service_detail = "" if up else detail
        self._bus.publish("cards.service", state="up" if up else "down")
        log.info("service PC/SC %s", "disponible" if up else f"indisponible ({detail})")

    def readers_changed(self, readers: list[str]) -> None:
        with self._lock:
            self._readers = {name: self._readers.get(name) for name in readers}
        self._bus.publish("cards.readers", readers=list(readers))

    def card_inserted(self, reader: str, atr: bytes) -> None:
        kind, cps, vitale = self._identify(reader)
        with self._lock:
            if kind == "busy":
                known = reader in self._busy
                self._busy.add(reader)
                self._readers[reader] = "unknown"
            else:
                self._busy.discard(reader)
                self._readers[reader] = kind
            if cps is not None and (self._cps is None or self._cps.reader == reader):
                self._cps = cps
            if vitale is not None:
                self._vitale = vitale
        if kind == "busy":
            if not known:
                self._bus.publish("card.inserted", reader=reader, card="unknown", error="reader_busy")
            return
        extra: dict[str, Any] = {}
        if vitale is not None:
            extra["beneficiary_count"] = len(vitale.beneficiaries)
        if cps is not None and cps.holder is not None:
            extra["rpps"] = cps.holder.rpps
        self._bus.publish("card.inserted", reader=reader, card=kind, **extra)
        log.info("carte %s insérée dans « %s »", kind, reader)

    def card_removed(self, reader: str) -> None:
        with self._lock:
            kind = self._readers.get(reader) or "unknown"
            if reader in self._readers:
                self._readers[reader] = None
            self._busy.discard(reader)
            cps = self._cps if self._cps is not None and self._cps.reader == reader else None
            if cps is not None:
                self._cps = None
            if self._vitale is not None and self._vitale.reader == reader:
                self._vitale = None
        if cps is not None and cps.token is not None:
            with contextlib.suppress(RelaisError):
                cps.token.close()
        self._bus.publish("card.removed", reader=reader, card=kind)
        log.info("carte %s retirée de « %s »", kind, reader)

    def _identify(self, reader: str) -> tuple[str, _Cps | None, _Vitale | None]:
        if reader == PKCS11_READER or self.backend is None:
            return "cps", self._open_cps(reader), None
        kind = "unknown"
        vitale: _Vitale | None = None
        for attempt in range(BUSY_RETRIES):
            try:
                with self.backend.transaction(reader) as transmit:
                    if is_vitale(transmit):
                        kind = "vitale"
                        vitale = _Vitale(reader)
                        try:
                            vitale.card = self._vitale_source.read(reader, transmit)
                        except Unavailable as exc:
                            vitale.error = exc.message
                    elif is_cps(transmit):
                        kind = "cps"
                break
            except Unavailable as exc:
                # Busy (another program's transaction) or not ready yet (a reader just powered the card): again.
                if exc.code in ("reader_busy", "reader_error") and attempt + 1 < BUSY_RETRIES:
                    time.sleep(0.1 * (attempt + 1))
                    continue
                log.warning("carte de « %s » non identifiée : %s (%s)", reader, exc.code, exc.message)
                return ("busy" if exc.code == "reader_busy" else "unknown"), None, None
        if kind == "cps":
            return kind, self._open_cps(reader), None
        return kind, None, vitale

    def _open_cps(self, reader: str) -> _Cps:
        if self._token_factory is None:
            return _Cps(reader, None, None, None, "Aucun module PKCS#11 configuré pour la carte CPS "
                        "(clé cards.pkcs11_module).")
        try:
            token = self._token_factory(reader)
            if token is None:
                return _Cps(reader, None, None, None, "Carte CPS non vue par le module PKCS#11.")
            return _Cps(reader, token, token.holder(), token.pin_tries_left())
        except RelaisError as exc:
            log.warning("CPS de « %s » illisible : %s", reader, exc.code)
            return _Cps(reader, None, None, None, exc.message)

    # --- what the agent asks ------------------------------------------------------------------------------

    def _why_absent(self, absent: Unavailable) -> Unavailable:
        """A missing card may be a stopped PC/SC service or a reader another program holds: say which."""
        with self._lock:
            state, busy = self._service_state, bool(self._busy)
        if state == "down":
            return service_down()
        if busy:
            return reader_busy()
        return absent

    def cps_holder(self) -> CpsHolder | None:
        with self._lock:
            cps = self._cps
        if cps is None or cps.holder is None or cps.token is None:
            return None
        return cps.holder.with_state(logged_in=cps.token.logged_in, reader=cps.reader)

    def author_ready(self, rpps: str) -> str | None:
        """Why the CPS of the professional ``rpps`` cannot sign on this workstation now (French, for the order's
        ``waiting_card`` reason), or None when it can: it is in a reader here and its PIN was entered."""
        holder = self.cps_holder()
        if holder is None or not holder.rpps or holder.rpps[-11:] != rpps[-11:]:
            return "La carte CPS de l'auteur n'est pas sur ce poste : l'envoi attend sa carte."
        if not holder.logged_in:
            return "La carte CPS de l'auteur attend son code PIN : l'envoi partira après la saisie du code."
        return None

    def holder_state(self) -> tuple[str | None, bool]:
        """(RPPS of the CPS in a reader here, whether its PIN was entered): what presence tells the peers."""
        holder = self.cps_holder()
        return (holder.rpps or None, holder.logged_in) if holder is not None else (None, False)

    def require_signer(self, purpose: Purpose = "signature") -> Signer:
        """The logged-in CPS's signer (signature key by default; ``"authentication"`` for the CPS_PRIV_AUT key)."""
        with self._lock:
            cps = self._cps
        if cps is None or cps.token is None:
            raise self._why_absent(cps_absent())
        if not cps.token.logged_in:
            raise not_logged_in()
        cps.last_used = self._clock.monotonic()
        return GuardedSigner(self, cps.token, cps.token.signer(purpose))

    async def on_card_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` (a signature) on the card's own threads rather than the event loop's shared pool. The card
        signs one at a time (the PKCS#11 lock), and a single thread would idle the card while it woke the event
        loop and waited for the GIL to take the next request: with two, the next signature is already waiting on
        the card's lock when one ends. Measured by ``bench/cards.py``."""
        return await asyncio.get_running_loop().run_in_executor(self._card_threads, fn, *args)

    def _check_token(self, token: CpsToken) -> None:
        with self._lock:
            cps = self._cps
        if cps is None or cps.token is not token:
            raise cps_absent()
        if not token.logged_in:
            raise not_logged_in()
        cps.last_used = self._clock.monotonic()

    def vitale_beneficiaries(self) -> list[VitaleBeneficiary]:
        return list(self.vitale_card().beneficiaries)

    def vitale_card(self) -> VitaleCard:
        """The carte Vitale in the reader now (serial number and beneficiaries), read when it was inserted."""
        with self._lock:
            vitale = self._vitale
        if vitale is None:
            raise self._why_absent(Unavailable("Aucune carte Vitale dans les lecteurs : insérez la carte Vitale du "
                                               "patient.", code="vitale_absent"))
        if vitale.error:
            raise Unavailable(vitale.error, code="vitale_unreadable")
        return vitale.card

    async def login(self, pin: str) -> dict[str, Any]:
        check_pin_format(pin)
        with self._lock:
            cps = self._cps
        if cps is None or cps.token is None:
            raise self._why_absent(cps_absent())
        token = cps.token
        try:
            await asyncio.to_thread(token.login, pin)
        finally:
            cps.tries_left = await asyncio.to_thread(token.pin_tries_left)
        cps.last_used = self._clock.monotonic()
        self._bus.publish("cps.login", reader=cps.reader, card="cps",
                          rpps=cps.holder.rpps if cps.holder else "")
        log.info("CPS : code PIN accepté")
        return self.cps_view()

    async def logout(self) -> dict[str, Any]:
        with self._lock:
            cps = self._cps
        if cps is not None and cps.token is not None and cps.token.logged_in:
            await asyncio.to_thread(cps.token.logout)
            self._bus.publish("cps.logout", reader=cps.reader, card="cps", reason="user")
        return self.cps_view()

    def cps_view(self) -> dict[str, Any]:
        cps: dict[str, Any] = self.snapshot()["cps"]
        return cps

    # --- views ----------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """``GET /v1/cards``: readers, CPS and Vitale (with the beneficiaries: this is for the LGC only)."""
        with self._lock:
            readers = [{"name": name, "card": kind} for name, kind in self._readers.items()]
            cps, vitale = self._cps, self._vitale
            service = {"backend": self.backend.name if self.backend else ("pkcs11" if self._token_present
                                                                           else "none"),
                       "state": self._service_state}
            if self._service_detail:
                service["detail"] = self._service_detail
        cps_view: dict[str, Any] = {"present": cps is not None, "reader": cps.reader if cps else None,
                                    "holder": None, "logged_in": False, "pin_tries_left": None}
        if cps is not None:
            cps_view["holder"] = cps.holder.as_dict() if cps.holder else None
            cps_view["logged_in"] = bool(cps.token and cps.token.logged_in)
            cps_view["pin_tries_left"] = cps.tries_left
            if cps.error:
                cps_view["error"] = cps.error
        vitale_view: dict[str, Any] = {"present": vitale is not None, "reader": vitale.reader if vitale else None,
                                       "beneficiaries": [b.as_dict() for b in vitale.beneficiaries] if vitale else [],
                                       # The LGC sends card_serial back with its INSi search (CNDA INSi 1.03).
                                       "card_serial": vitale.card.serial or None if vitale else None,
                                       "validity_start": vitale.card.validity_start or None if vitale else None}
        if vitale is not None and vitale.error:
            vitale_view["error"] = vitale.error
        return {"service": service, "readers": readers, "cps": cps_view, "vitale": vitale_view}

    async def status(self) -> dict[str, Any]:
        """The ``cards`` member of ``/v1/status``: no patient data, no names."""
        snap = self.snapshot()
        holder = snap["cps"]["holder"]
        return {"cards": {
            "service": snap["service"],
            "readers": len(snap["readers"]),
            "cps": {"present": snap["cps"]["present"], "logged_in": snap["cps"]["logged_in"],
                    "rpps": holder["rpps"] if holder else None},
            "vitale": {"present": snap["vitale"]["present"]},
        }}
