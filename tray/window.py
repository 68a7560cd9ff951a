"""The dashboard window: pywebview when it is installed (a native window), else the default browser.

Run as its own process (``python -m tray.window URL``): pywebview and pystray both want the main thread.
"""

from __future__ import annotations

import sys
import webbrowser


def open_dashboard(url: str) -> None:
    try:
        import webview
    except Exception:  # pywebview or its GUI toolkit is missing: the browser still works
        webbrowser.open(url)
        return
    webview.create_window("Relais : tableau de bord", url, width=1280, height=800, min_size=(900, 600))
    webview.start()


if __name__ == "__main__":
    open_dashboard(sys.argv[1])
