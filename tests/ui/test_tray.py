"""The tray under a virtual X display with a real tray host: its icon follows the agent's state."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest

from tests.conftest import ROOT

if importlib.util.find_spec("pystray") is None:  # importing it needs a display: only look for it
    pytest.skip("pystray absent : pip install -e .[desktop]", allow_module_level=True)
ImageGrab = pytest.importorskip("PIL.ImageGrab")

from tray.icons import COLOURS  # noqa: E402
from tray.state import Light  # noqa: E402


def post(agent, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{agent.url}{path}", data=data, method="POST",
                                     headers={"Authorization": f"Bearer {agent.token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def tray_light(display: str) -> Light | None:
    """The light whose exact colour fills most of the tray area (top right corner of the screen)."""
    image = ImageGrab.grab(xdisplay=display).convert("RGB")
    corner = image.crop((image.width - 200, 0, image.width, 40))
    counts = Counter(corner.get_flattened_data() if hasattr(corner, "get_flattened_data") else corner.getdata())
    found = {light: counts.get(colour, 0) for light, colour in COLOURS.items()}
    light, pixels = max(found.items(), key=lambda item: item[1])
    return light if pixels > 100 else None


def wait_for_light(display: str, wanted: Light, artifacts, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = tray_light(display)
        if seen == wanted:
            ImageGrab.grab(xdisplay=display).save(artifacts / f"tray-{name}.png")
            return
        time.sleep(0.2)
    ImageGrab.grab(xdisplay=display).save(artifacts / f"tray-{name}-FAILED.png")
    pytest.fail(f"tray icon is {seen}, expected {wanted}")


def end_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tray_command(backend: str) -> list[str]:
    """`relais tray` with a pystray backend; GTK ones run in their own D-Bus session, as on a desktop."""
    command = [sys.executable, "-m", "agent.cli", "tray", "--backend", backend]
    if backend == "xorg":
        return command
    if importlib.util.find_spec("gi") is None:
        pytest.skip("PyGObject absent : pip install -e .[gtk] (paquets Debian dans scripts/system-packages.txt)")
    if shutil.which("dbus-run-session") is None:
        pytest.skip("dbus-run-session absent : apt-get install dbus-daemon")
    return ["dbus-run-session", "--", *command]


@pytest.mark.parametrize("backend", ["xorg", "gtk", "appindicator"])
def test_tray_icon_follows_cps_card_events(desktop, demo_process, artifacts, backend):
    command = tray_command(backend)
    agent = demo_process(f"tray-{backend}")
    # The demo doctor has a CONF.21 notice due at first: acknowledge it (in their name: PIN entered, then the
    # session closed again), so only the card decides the colour.
    post(agent, "/v1/cps/login", {"pin": "1234"})
    post(agent, "/v1/notices/conf21/ack")
    post(agent, "/v1/cps/logout", {})
    env = {**os.environ, "DISPLAY": desktop}
    # Its own process group: the D-Bus daemons of a GTK session end with it.
    tray = subprocess.Popen([*command, "--data-dir", str(agent.data_dir)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_light(desktop, Light.ATTENTION, artifacts, f"{backend}-cps-not-logged-in")
        post(agent, "/v1/cps/login", {"pin": "1234"})
        wait_for_light(desktop, Light.OK, artifacts, f"{backend}-cps-logged-in")
        post(agent, "/_sandbox/cards/cps", {"inserted": False})
        wait_for_light(desktop, Light.ATTENTION, artifacts, f"{backend}-cps-removed")
        # The agent stops: grey; it comes back on the same data dir: the tray finds it again by itself.
        agent.stop()
        wait_for_light(desktop, Light.OFFLINE, artifacts, f"{backend}-agent-stopped")
        demo_process(f"tray-{backend}")
        wait_for_light(desktop, Light.ATTENTION, artifacts, f"{backend}-agent-back")
    finally:
        end_group(tray)


def test_without_a_tray_host_the_tray_falls_back_to_notifications(demo_process, tmp_path):
    import shutil

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb absent : apt-get install xvfb")
    from tests.ui.conftest import _free_display

    display = f":{_free_display()}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent = demo_process("tray-headless", "--cards", "cps")
    log = tmp_path / "tray.log"
    try:
        env = {**os.environ, "DISPLAY": display, "PYSTRAY_BACKEND": "xorg"}
        with open(log, "wb") as out:
            tray = subprocess.Popen([sys.executable, "-m", "agent.cli", "tray", "--data-dir", str(agent.data_dir)],
                                    env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "notifications seules" not in log.read_text():
            assert time.monotonic() < deadline and tray.poll() is None, log.read_text()
            time.sleep(0.1)
        # It follows the events all the same: a carte Vitale inserted is announced.
        deadline = time.monotonic() + 30
        while "Carte Vitale insérée" not in log.read_text():
            post(agent, "/_sandbox/cards/vitale", {"inserted": True})
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
            post(agent, "/_sandbox/cards/vitale", {"inserted": False})
    finally:
        if "tray" in locals() and tray.poll() is None:
            tray.terminate()
            tray.wait(10)
        xvfb.terminate()
        xvfb.wait(10)
