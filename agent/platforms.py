"""What differs between Windows, macOS and Linux, in one place: stop signals, the PC/SC service, the CPS module.

Functions taking ``system`` (``sys.platform``'s value: "win32", "darwin", "linux") are pure, so each OS's
answer is tested on any machine. POSIX-only code says so in its name and is skipped cleanly elsewhere.
This module never starts or stops anything itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class PcscService:
    """The OS's smart-card service, as a doctor or the practice's IT support knows it."""

    name: str  # for messages: "pcscd", "« Carte à puce » (SCardSvr)"...
    start_hint: str  # what to do when it does not answer


def pcsc_service(system: str = sys.platform) -> PcscService:
    if system == "win32":
        # Windows starts SCardSvr when a reader is plugged in and may stop it when the last one goes.
        return PcscService("le service Windows « Carte à puce » (SCardSvr)",
                           "branchez le lecteur de cartes ; s'il l'est, vérifiez dans services.msc que « Carte à "
                           "puce » n'est pas désactivé")
    if system == "darwin":
        return PcscService("le service de cartes à puce de macOS (com.apple.ctkpcscd)",
                           "débranchez et rebranchez le lecteur ; au besoin redémarrez le Mac")
    return PcscService("pcscd", "installez et démarrez pcscd (paquet pcscd, « systemctl enable --now pcscd.socket »)")


# Where the ANS Cryptolib CPS installs its PKCS#11 module. Windows: cps3_pkcs11_w64.dll in System32 for 64-bit
# processes (the Cryptolib's own sources name cps3_pkcs11_w64.dll / _w32.dll); macOS: the path its sources hard-code.
# Linux: the sources name libcps3_pkcs11_lux.so but no public document fixes its folder, so the usual library
# folders are tried; `cards.pkcs11_module` overrides all of this.
_CRYPTOLIB = {
    "win32": ("{windir}\\System32\\cps3_pkcs11_w64.dll",),
    "darwin": ("/usr/local/lib/libcps3_pkcs11_osx.dylib", "/Library/Frameworks/cps3.framework/cps3_pkcs11"),
    "linux": ("/usr/local/lib/libcps3_pkcs11_lux.so", "/usr/lib/libcps3_pkcs11_lux.so",
              "/usr/lib64/libcps3_pkcs11_lux.so", "/usr/local/galss/libcps3_pkcs11_lux.so"),
}


def cryptolib_candidates(system: str = sys.platform, windir: str = "") -> tuple[str, ...]:
    """Where the Cryptolib CPS's PKCS#11 module is usually installed on ``system``, most likely first."""
    windir = windir or os.environ.get("SYSTEMROOT", os.environ.get("WINDIR", "C:\\Windows"))
    return tuple(path.format(windir=windir) for path in _CRYPTOLIB.get(system, _CRYPTOLIB["linux"]))


def default_pkcs11_module(system: str = sys.platform) -> str:
    """The Cryptolib CPS module installed on this machine, or "" when none of the usual paths exists."""
    return next((path for path in cryptolib_candidates(system) if Path(path).exists()), "")


def install_stop_handlers(stop: Callable[[], None]) -> None:
    """Call ``stop`` (from the running loop) on Ctrl+C, and on SIGTERM / Ctrl+Break where the OS has them.

    POSIX: the loop's signal handlers. Windows has no ``loop.add_signal_handler``: plain ``signal.signal``
    handlers hand over to the loop (Ctrl+C, and Ctrl+Break which ``taskkill`` without /F does not send: the
    store is crash-safe, so a hard stop at logoff loses nothing).
    """
    loop = asyncio.get_running_loop()
    names = ("SIGTERM", "SIGINT") if os.name == "posix" else ("SIGINT", "SIGBREAK", "SIGTERM")
    for name in names:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        if os.name == "posix":
            loop.add_signal_handler(sig, stop)
        else:  # pragma: no cover - exercised on Windows (and under wine by scripts/smoke-windows.sh)
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop))
