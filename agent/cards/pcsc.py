"""PC/SC readers through pyscard: the only pyscard importer of Relais.

One daemon thread waits in ``SCardGetStatusChange`` on every reader plus the PnP pseudo-reader, so insertions,
removals and readers plugged in or out are seen at once, without polling and without ever blocking the event loop.
When pcscd is not running the thread says so (``service_changed(False)``) and tries again every second; when it
comes back, readers and cards are reported again. ``stop`` cancels the wait (``SCardCancel``) and joins.

Cards are opened in shared mode, inside a PC/SC transaction, for the few APDUs of one read, and released with
``SCARD_LEAVE_CARD`` straight after: other software on the workstation (the LGC's SESAM-Vitale module, the
Cryptolib) uses the same readers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from smartcard import scard as sc

from agent.cards.cps import Transmit
from agent.cards.readers import ReaderListener, card_gone, reader_busy, service_down
from agent.domain.apdu import Command, Response
from agent.errors import Unavailable
from agent.logs import TRAFFIC, get_logger
from agent.platforms import pcsc_service

log = get_logger("cards.pcsc")

PNP_READER = "\\\\?PnP?\\Notification"
WAIT_MS = 2000  # a safety net only: changes and SCardCancel wake the wait at once
RETRY_SECONDS = 1.0

def service_answers() -> bool:
    """Whether the OS's PC/SC service gives a context now (for `relais doctor`)."""
    hresult, context = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    if hresult != sc.SCARD_S_SUCCESS:
        return False
    sc.SCardReleaseContext(context)
    return True


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF if hresult < 0 else hresult


def _err(hresult: int) -> str:
    try:
        return str(sc.SCardGetErrorMessage(hresult))
    except Exception:  # only for a message
        return f"0x{_code(hresult):08X}"


def _raise_for(hresult: int) -> None:
    code = _code(hresult)
    if code in (_code(sc.SCARD_E_SHARING_VIOLATION),):
        raise reader_busy()
    if code in (_code(sc.SCARD_E_NO_SMARTCARD), _code(sc.SCARD_W_REMOVED_CARD), _code(sc.SCARD_W_RESET_CARD),
                _code(sc.SCARD_E_UNKNOWN_READER), _code(sc.SCARD_W_UNPOWERED_CARD)):
        raise card_gone()
    if code in (_code(sc.SCARD_E_NO_SERVICE), _code(sc.SCARD_E_SERVICE_STOPPED)):
        raise service_down()
    raise Unavailable(f"Erreur du lecteur de cartes ({_err(hresult)}).", code="reader_error")


class PcscBackend:
    """Reader monitoring and card access over PC/SC."""

    name = "pcsc"

    def __init__(self) -> None:
        self._listener: ReaderListener | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._context: Any = None
        self._context_lock = threading.Lock()

    # --- monitoring -------------------------------------------------------------------------------------

    def start(self, listener: ReaderListener) -> None:
        self._listener = listener
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="relais-pcsc", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        with self._context_lock:
            if self._context is not None:
                sc.SCardCancel(self._context)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _establish(self) -> Any:
        hresult, context = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
        if hresult != sc.SCARD_S_SUCCESS:
            return None
        with self._context_lock:
            self._context = context
        return context

    def _release(self) -> None:
        with self._context_lock:
            context, self._context = self._context, None
        if context is not None:
            sc.SCardReleaseContext(context)

    def _run(self) -> None:
        assert self._listener is not None
        listener = self._listener
        service_up: bool | None = None
        while not self._stopping.is_set():
            context = self._establish()
            if context is None:
                if service_up is not False:
                    service_up = False
                    listener.service_changed(False, f"{pcsc_service().name} ne répond pas")
                    listener.readers_changed([])
                self._wake.wait(RETRY_SECONDS)
                continue
            if service_up is not True:
                service_up = True
                listener.service_changed(True)
            present: dict[str, bool] = {}
            try:
                self._watch(context, listener, present)
            except Exception:  # the monitor must survive anything and start over
                log.exception("surveillance des lecteurs : erreur inattendue, reprise")
            finally:
                self._release()
            if not self._stopping.is_set():
                # The service went away: the cards and readers it knew are gone for us too.
                for reader, has_card in list(present.items()):
                    if has_card:
                        listener.card_removed(reader)
                listener.readers_changed([])
                service_up = False
                listener.service_changed(False, f"{pcsc_service().name} s'est arrêté")
                self._wake.wait(RETRY_SECONDS / 5)

    def _list_readers(self, context: Any) -> list[str] | None:
        hresult, readers = sc.SCardListReaders(context, [])
        code = _code(hresult)
        if code == _code(sc.SCARD_S_SUCCESS):
            return [str(r) for r in readers]
        if code == _code(sc.SCARD_E_NO_READERS_AVAILABLE):
            return []
        return None

    def _watch(self, context: Any, listener: ReaderListener, present: dict[str, bool]) -> None:
        """Wait for changes until the service goes away or stop() is called; ``present`` is kept current."""
        states: dict[str, int] = {}
        pnp_state = sc.SCARD_STATE_UNAWARE
        rescan = True
        while not self._stopping.is_set():
            if rescan:
                readers = self._list_readers(context)
                if readers is None:
                    return
                gone = [r for r in states if r not in readers]
                for reader in gone:
                    if present.pop(reader, False):
                        listener.card_removed(reader)
                    states.pop(reader, None)
                for reader in readers:
                    states.setdefault(reader, sc.SCARD_STATE_UNAWARE)
                if gone or any(r not in present for r in readers):
                    for reader in readers:
                        present.setdefault(reader, False)
                    listener.readers_changed(list(readers))
                rescan = False
            query = [(r, s) for r, s in states.items()] + [(PNP_READER, pnp_state)]
            hresult, changes = sc.SCardGetStatusChange(context, WAIT_MS, query)
            code = _code(hresult)
            if code in (_code(sc.SCARD_E_TIMEOUT), _code(sc.SCARD_E_CANCELLED)):
                continue
            if code == _code(sc.SCARD_E_UNKNOWN_READER):
                rescan = True
                continue
            if code != _code(sc.SCARD_S_SUCCESS):
                log.warning("lecteurs : %s", _err(hresult))
                return
            for name, event_state, atr in changes:
                if name == PNP_READER:
                    if event_state & sc.SCARD_STATE_CHANGED:
                        rescan = True
                    pnp_state = event_state & ~sc.SCARD_STATE_CHANGED
                    continue
                if name not in states:
                    continue
                states[name] = event_state & ~sc.SCARD_STATE_CHANGED
                if event_state & (sc.SCARD_STATE_UNKNOWN | sc.SCARD_STATE_IGNORE):
                    rescan = True
                    continue
                has_card = bool(event_state & sc.SCARD_STATE_PRESENT) and not (event_state & sc.SCARD_STATE_MUTE)
                if has_card and not present.get(name):
                    present[name] = True
                    listener.card_inserted(name, bytes(atr or b""))
                elif not has_card and present.get(name):
                    present[name] = False
                    listener.card_removed(name)

    # --- card access ------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self, reader: str) -> Iterator[Transmit]:
        hresult, context = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
        if hresult != sc.SCARD_S_SUCCESS:
            raise service_down()
        try:
            hresult, card, protocol = sc.SCardConnect(context, reader, sc.SCARD_SHARE_SHARED,
                                                      sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1)
            if hresult != sc.SCARD_S_SUCCESS:
                _raise_for(hresult)
            try:
                hresult = sc.SCardBeginTransaction(card)
                if hresult != sc.SCARD_S_SUCCESS:
                    _raise_for(hresult)
                pci = sc.SCARD_PCI_T1 if protocol == sc.SCARD_PROTOCOL_T1 else sc.SCARD_PCI_T0

                def transmit(command: Command) -> Response:
                    raw = command.encode()
                    hres, answer = sc.SCardTransmit(card, pci, list(raw))
                    if hres != sc.SCARD_S_SUCCESS:
                        _raise_for(hres)
                    response = Response.decode(bytes(answer))
                    if response.sw >> 8 == 0x61:  # T=0: more bytes waiting, GET RESPONSE
                        hres, answer = sc.SCardTransmit(card, pci, [0x00, 0xC0, 0x00, 0x00, response.sw & 0xFF])
                        if hres != sc.SCARD_S_SUCCESS:
                            _raise_for(hres)
                        response = Response.decode(bytes(answer))
                    log.log(TRAFFIC, "APDU %s -> %04X", raw[:4].hex(), response.sw)
                    return response

                try:
                    yield transmit
                finally:
                    sc.SCardEndTransaction(card, sc.SCARD_LEAVE_CARD)
            finally:
                sc.SCardDisconnect(card, sc.SCARD_LEAVE_CARD)
        finally:
            sc.SCardReleaseContext(context)
