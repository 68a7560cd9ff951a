"""The tray's pystray backend is chosen per OS and desktop, not an X11 tray looked for everywhere."""

from __future__ import annotations

from tray.backend import choose_backend


def test_windows_and_macos_use_their_native_backends_whatever_the_environment():
    assert choose_backend("win32", {}, gi_available=False) == "win32"
    assert choose_backend("darwin", {"DISPLAY": ":0"}, gi_available=True) == "darwin"


def test_linux_prefers_appindicator_when_pygobject_is_there():
    assert choose_backend("linux", {"DISPLAY": ":0"}, gi_available=True) == "appindicator"
    assert choose_backend("linux", {"WAYLAND_DISPLAY": "wayland-0"}, gi_available=True) == "appindicator"


def test_linux_without_pygobject_uses_xorg_on_x11_and_no_icon_on_pure_wayland():
    assert choose_backend("linux", {"DISPLAY": ":0"}, gi_available=False) == "xorg"
    assert choose_backend("linux", {"WAYLAND_DISPLAY": "wayland-0"}, gi_available=False) is None
    assert choose_backend("linux", {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, gi_available=False) == "xorg"


def test_an_explicit_backend_always_wins():
    assert choose_backend("win32", {"PYSTRAY_BACKEND": "dummy"}, gi_available=False) == "dummy"
    assert choose_backend("linux", {"PYSTRAY_BACKEND": "xorg"}, gi_available=True) == "xorg"
