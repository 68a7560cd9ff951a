"""The dashboard window the tray opens: pywebview (GTK/WebKit) on a virtual display, logged in by its link."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.ui.test_tray import end_group, post, tray_command

ImageGrab = pytest.importorskip("PIL.ImageGrab")


def dashboard_sessions(agent) -> int:
    request = urllib.request.Request(f"{agent.url}/v1/status", headers={"Authorization": f"Bearer {agent.token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(json.loads(response.read())["dashboard"]["sessions"])


def test_the_window_opens_the_dashboard_through_its_one_time_link(desktop, demo_process, artifacts):
    tray_command("gtk")  # skips when PyGObject or D-Bus is missing: the window needs them too
    agent = demo_process("window")
    assert dashboard_sessions(agent) == 0
    link = post(agent, "/v1/ui/login-link")["url"]
    env = {**os.environ, "DISPLAY": desktop}
    window = subprocess.Popen(["dbus-run-session", "--", sys.executable, "-m", "tray.window", link], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # The page in the native window trades the link's code for its session cookie.
        deadline = time.monotonic() + 60
        while dashboard_sessions(agent) == 0:
            assert window.poll() is None, "the window closed"
            assert time.monotonic() < deadline, "the window never opened its dashboard session"
            time.sleep(0.3)
        time.sleep(1.5)  # let WebKit paint the first view before the screenshot (an artefact, not an assertion)
        ImageGrab.grab(xdisplay=desktop).save(artifacts / "window-dashboard.png")
    finally:
        end_group(window)
