"""UI fixtures: a virtual X display with a tray host, headless Chromium through Playwright, artefacts.

Screenshots go to ``artifacts/ui/`` (kept after the run, ignored by git) so a person can look at what the
tests saw.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

ARTIFACTS = ROOT / "artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api", reason="pip install playwright (dev extra)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium absent : apt-get install chromium (scripts/test.sh le fait en root)")
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def _free_display() -> int:
    for number in range(90, 140):
        if not Path(f"/tmp/.X{number}-lock").exists() and not Path(f"/tmp/.X11-unix/X{number}").exists():
            return number
    raise RuntimeError("no free X display number")


def _tray_host_ready(display: str) -> bool:
    """Whether some program owns the display's system tray selection (``_NET_SYSTEM_TRAY_S0``)."""
    from Xlib import display as xdisplay

    conn = xdisplay.Display(display)
    try:
        return bool(conn.get_selection_owner(conn.intern_atom("_NET_SYSTEM_TRAY_S0")))
    finally:
        conn.close()


@pytest.fixture
def desktop() -> Iterator[str]:
    """An Xvfb display with trayer as the system tray; yields the DISPLAY value."""
    for tool in ("Xvfb", "trayer"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} absent : apt-get install xvfb trayer (scripts/test.sh le fait en root)")
    display = f":{_free_display()}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "DISPLAY": display}
    deadline = time.monotonic() + 20
    while subprocess.run(["xdpyinfo"], env=env, capture_output=True).returncode != 0:
        if time.monotonic() > deadline or xvfb.poll() is not None:
            xvfb.kill()
            pytest.fail("Xvfb did not start")
        time.sleep(0.1)
    trayer = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
                               "--height", "32", "--SetDockType", "true", "--transparent", "false",
                               "--tint", "0xffffff"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The tray host ready before any tray starts: a tray that finds no host falls back to notifications (no
        # icon), which a busy machine showed once when the tray won the race against trayer's start.
        deadline = time.monotonic() + 20
        while not _tray_host_ready(display):
            if time.monotonic() > deadline or trayer.poll() is not None:
                pytest.fail("trayer did not take the system tray")
            time.sleep(0.1)
        yield display
    finally:
        for proc in (trayer, xvfb):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
