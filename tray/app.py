"""`relais tray`: the icon, its menu, notifications, and the dashboard window.

Threads: pystray owns the main thread; one thread follows the agent's event stream and updates the model;
every icon change goes through ``icon.icon = ...`` which pystray marshals to its own loop. Nothing here blocks
on the agent: an unreachable agent only turns the icon grey until it comes back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import webbrowser
from collections.abc import Callable
from typing import Any

from tray.backend import this_desktop_backend
from tray.client import AgentClient, AgentUnavailable, Locator, SseEvent, follow
from tray.icons import icon_image
from tray.state import Notification, TrayModel, failure_notification

log = logging.getLogger("relais.tray")
REFRESH_SECONDS = 30.0  # a safety net: every event already triggers a refresh


class Tray:
    def __init__(self, locate: Locator) -> None:
        self.client = AgentClient(locate)
        self.model = TrayModel()
        self.stopping = threading.Event()
        self.icon: Any = None
        self._lock = threading.Lock()

    # ---- state --------------------------------------------------------------------------------------
    def refresh(self) -> None:
        try:
            status = self.client.status()
        except AgentUnavailable:
            self.model.connected = False
        else:
            self.model.apply_status(status)
        self.redraw()

    def redraw(self) -> None:
        if self.icon is None:
            return
        self.icon.icon = icon_image(self.model.light)
        self.icon.title = self.model.tooltip
        with contextlib.suppress(Exception):  # backends without menus
            self.icon.update_menu()

    def on_event(self, event: SseEvent | None) -> None:
        with self._lock:
            if event is None:
                if self.model.connected:
                    self.model.connected = False
                    self.redraw()
                return
            note = self.model.on_event(event.type, event.data)
            self.refresh()
            if event.type == "settings.changed" or self.model.preferences is None:
                self._load_preferences()
            if note is not None and not self.model.allows(event.type):
                return  # the doctor turned this kind of notification off (dashboard, Paramètres)
        if note is not None and event.type == "order.updated" and event.data.get("state") == "failed":
            note = self._failure(str(event.data.get("id") or event.data.get("order_id") or ""), note)
        if note is not None:
            self.notify(note)

    def _load_preferences(self) -> None:
        try:
            answer = self.client.call("GET", "/v1/settings")
        except AgentUnavailable:
            return  # an older agent, or unreachable: every notification, as before
        values = answer.get("values") if isinstance(answer, dict) else None
        self.model.preferences = values if isinstance(values, dict) else {}

    def _failure(self, order_id: str, fallback: Notification) -> Notification:
        """The failed send, named by its title and patient (read from the API; the event carries ids only)."""
        try:
            order = self.client.call("GET", f"/v1/orders/{order_id}")
        except AgentUnavailable:
            return fallback
        return failure_notification(order) if isinstance(order, dict) else fallback

    def notify(self, note: Notification) -> None:
        log.info("notification : %s", note.title)  # the message may name the patient: never logged
        if self.icon is not None and getattr(self.icon, "HAS_NOTIFICATION", False):
            try:
                self.icon.notify(note.message, note.title)
                return
            except Exception:  # noqa: S110 - fall through to notify-send
                pass
        notify_send(note)

    # ---- menu actions -------------------------------------------------------------------------------
    def open_dashboard(self, *_: Any) -> None:
        try:
            url = self.client.login_link()
        except AgentUnavailable as exc:
            self.notify(Notification("Relais", f"Tableau de bord indisponible : {exc}"))
            return
        subprocess.Popen([sys.executable, "-m", "tray.window", url], start_new_session=True)

    def psc_login(self, *_: Any, opener: Callable[[str], Any] = webbrowser.open) -> None:
        """"Se connecter avec e-CPS": PSC's page in the system browser; the agent completes the login."""
        try:
            url = str(self.client.call("POST", "/v1/psc/login")["authorization_url"])
        except (AgentUnavailable, KeyError, TypeError) as exc:
            self.notify(Notification("Relais", f"Connexion e-CPS impossible : {exc}"))
            return
        opener(url)

    def toggle_pause(self, *_: Any) -> None:
        action = "resume" if self.model.paused else "pause"
        try:
            self.client.call("POST", f"/v1/queue/{action}")
        except AgentUnavailable as exc:
            self.notify(Notification("Relais", f"Action impossible : {exc}"))
        self.refresh()

    def quit(self, *_: Any) -> None:
        self.stopping.set()
        if self.icon is not None:
            self.icon.stop()

    # ---- running ------------------------------------------------------------------------------------
    def _follow(self) -> None:
        follow(self.client, self.on_event, self.stopping.is_set, sleep=self.stopping.wait)

    def _poll(self) -> None:
        while not self.stopping.wait(REFRESH_SECONDS):
            with self._lock:
                self.refresh()

    def run(self) -> int:
        backend = this_desktop_backend()
        if backend is None:
            log.warning("session sans zone de notification utilisable : notifications seules")
            return self.run_headless()
        os.environ["PYSTRAY_BACKEND"] = backend  # pystray reads it once, at import
        try:
            import pystray
        except Exception as exc:  # no display, or no backend at all
            log.warning("pas de zone de notification (%s) : notifications seules", exc)
            return self.run_headless()
        if backend == "xorg" and not xorg_tray_present():
            log.warning("le bureau n'a pas de zone de notification : notifications seules")
            return self.run_headless()
        menu = pystray.Menu(
            pystray.MenuItem("Ouvrir le tableau de bord", self.open_dashboard, default=True),
            pystray.MenuItem(lambda _: f"Envois en attente : {self.model.pending}", self.open_dashboard),
            pystray.MenuItem("Se connecter avec e-CPS", self.psc_login),
            pystray.MenuItem(lambda _: "Reprendre les envois" if self.model.paused else "Suspendre les envois",
                             self.toggle_pause),
            pystray.MenuItem("Quitter l'icône Relais", self.quit),
        )
        self.icon = _icon_class(pystray)("relais", icon_image(self.model.light), "Relais", menu=menu)

        def setup(icon: Any) -> None:
            icon.visible = True
            self.refresh()
            threading.Thread(target=self._follow, name="relais-tray-events", daemon=True).start()
            threading.Thread(target=self._poll, name="relais-tray-poll", daemon=True).start()

        self.icon.run(setup=setup)
        return 0

    def run_headless(self) -> int:
        """No tray on this desktop: follow events and raise notifications only."""
        self.refresh()
        with contextlib.suppress(KeyboardInterrupt):
            self._follow()
        return 0


def _icon_class(pystray: Any) -> Any:
    """pystray's Icon, with one fix for its xorg backend.

    That backend sends a new dock request at every icon change; some tray hosts (trayer) then re-embed the
    window at 1 pixel wide and the icon vanishes. Once docked, a change only needs a redraw.
    """
    base = pystray.Icon
    if base.__module__ != "pystray._xorg":
        return base

    class DockedOnceIcon(base):  # type: ignore[misc, valid-type]
        def _update_icon(self) -> None:
            if getattr(self, "_systray_manager", None) is None:
                super()._update_icon()
                return
            self._icon_data = None
            self._draw()
            self._icon_valid = True

    return DockedOnceIcon


def xorg_tray_present() -> bool:
    """Whether an X11 system tray (a `_NET_SYSTEM_TRAY_S<n>` owner) exists on this display."""
    try:
        from Xlib import display as xdisplay
    except Exception:
        return True  # cannot tell: let pystray try
    try:
        conn = xdisplay.Display()
    except Exception:
        return False
    try:
        atom = conn.intern_atom(f"_NET_SYSTEM_TRAY_S{conn.get_default_screen()}")
        return bool(conn.get_selection_owner(atom))
    finally:
        conn.close()


def notify_send(note: Notification) -> None:
    """The desktop's notification service (freedesktop, or macOS's), when there is one; the log line is always
    there. (On Windows the win32 backend notifies by itself.)"""
    if sys.platform == "darwin" and shutil.which("osascript"):
        script = ["-e", "on run argv", "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
                  "-e", "end run"]  # the texts go as arguments, never into the script
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["osascript", *script, note.title, note.message], check=False, timeout=5,
                           capture_output=True)
        return
    if shutil.which("notify-send"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["notify-send", "--app-name=Relais", note.title, note.message], check=False, timeout=5,
                           capture_output=True)


def main(locate: Locator) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Tray(locate).run()
