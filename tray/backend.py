"""Which pystray backend draws the icon on this desktop: chosen per OS before pystray is imported.

Windows: win32 (the notification area). macOS: darwin (the menu bar). Linux and the BSDs: AppIndicator when
PyGObject is there (StatusNotifierItem: KDE, GNOME with its extension, Wayland desktops; libayatana falls back to
an XEmbed icon elsewhere), else xorg (XEmbed, needs an X11 tray host: checked by the caller), and no icon at all
on a Wayland session without PyGObject: the tray then shows notifications only. ``PYSTRAY_BACKEND`` (or
``relais tray --backend``) always wins. This module imports nothing from pystray or the agent.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping


def choose_backend(system: str, env: Mapping[str, str], gi_available: bool) -> str | None:
    """The backend's name, or None when this session can show no icon."""
    explicit = env.get("PYSTRAY_BACKEND")
    if explicit:
        return explicit
    if system == "win32":
        return "win32"
    if system == "darwin":
        return "darwin"
    if gi_available:
        return "appindicator"
    wayland_only = (env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland") and not env.get("DISPLAY")
    return None if wayland_only else "xorg"


def this_desktop_backend() -> str | None:
    return choose_backend(sys.platform, os.environ, importlib.util.find_spec("gi") is not None)
