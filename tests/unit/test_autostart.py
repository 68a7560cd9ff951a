"""What `relais install` writes on each OS: systemd unit, XDG entry, LaunchAgent plist, Windows Run values."""

from __future__ import annotations

import plistlib
import shlex
from pathlib import Path

from agent import autostart
from agent.autostart import (
    AGENT_LABEL,
    RUN_AGENT,
    RUN_TRAY,
    Launch,
    launch_agent_plist,
    systemd_unit,
    windows_firewall_rule,
    windows_run_values,
    xdg_autostart,
)
from agent.platforms import cryptolib_candidates, pcsc_service

LINUX = Launch(("/opt/relais/bin/relais",), ("--data-dir", "/home/dr martin/relais"))


def test_the_systemd_unit_runs_the_agent_with_its_options_and_restarts_it():
    unit = systemd_unit(LINUX)
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert shlex.split(exec_line.removeprefix("ExecStart=")) == [
        "/opt/relais/bin/relais", "run", "--data-dir", "/home/dr martin/relais"]
    assert "Restart=on-failure" in unit and "@" not in exec_line


def test_the_xdg_entry_starts_the_tray():
    entry = xdg_autostart(LINUX)
    assert "Exec=/opt/relais/bin/relais tray --data-dir '/home/dr martin/relais'" in entry


def test_the_agent_launch_agent_runs_at_login_in_the_desktop_session_and_restarts_after_a_crash(tmp_path):
    launch = Launch(("/Applications/Relais.app/Contents/MacOS/relais",))
    plist = plistlib.loads(launch_agent_plist(AGENT_LABEL, launch.argv("run"), tmp_path, keep_alive=True))
    assert plist["Label"] == "fr.relais.agent"
    assert plist["ProgramArguments"] == ["/Applications/Relais.app/Contents/MacOS/relais", "run"]
    assert plist["RunAtLoad"] is True and plist["LimitLoadToSessionType"] == "Aqua"
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["StandardErrorPath"] == str(tmp_path / "fr.relais.agent.log")


def test_the_tray_launch_agent_is_not_restarted_when_the_user_quits_it(tmp_path):
    plist = plistlib.loads(launch_agent_plist("fr.relais.tray", ["relais", "tray"], tmp_path, keep_alive=False))
    assert "KeepAlive" not in plist and plist["RunAtLoad"] is True


def test_windows_run_values_quote_paths_with_spaces_as_windows_parses_them():
    launch = Launch((r"C:\Program Files\Relais\relaisw.exe",), ("--data-dir", r"D:\Données Relais"))
    values = windows_run_values(launch)
    assert values[RUN_AGENT] == r'"C:\Program Files\Relais\relaisw.exe" run --data-dir "D:\Données Relais"'
    assert values[RUN_TRAY] == r'"C:\Program Files\Relais\relaisw.exe" tray --data-dir "D:\Données Relais"'


def test_the_firewall_rule_opens_the_peer_port_to_the_agent_only_on_private_networks():
    rule = windows_firewall_rule(r"C:\Program Files\Relais\python\pythonw.exe", 7464)
    assert rule[:5] == ["netsh", "advfirewall", "firewall", "add", "rule"]
    assert "localport=7464" in rule and "dir=in" in rule and "profile=domain,private" in rule
    assert r"program=C:\Program Files\Relais\python\pythonw.exe" in rule


def test_each_os_names_its_own_smart_card_service():
    assert pcsc_service("linux").name == "pcscd"
    assert "SCardSvr" in pcsc_service("win32").name
    assert "ctkpcscd" in pcsc_service("darwin").name


def test_the_cryptolib_cps_default_path_per_os():
    assert cryptolib_candidates("win32", windir=r"C:\Windows") == (r"C:\Windows\System32\cps3_pkcs11_w64.dll",)
    assert cryptolib_candidates("darwin")[0] == "/usr/local/lib/libcps3_pkcs11_osx.dylib"
    assert all(Path(path).name == "libcps3_pkcs11_lux.so" for path in cryptolib_candidates("linux"))


def test_the_users_bin_folder_per_os() -> None:
    home = Path("/home/dr")
    assert autostart.user_bin_dir("linux", {}, home) == home / ".local" / "bin"
    assert autostart.user_bin_dir("linux", {"XDG_BIN_HOME": "/x/bin"}, home) == Path("/x/bin")
    assert autostart.user_bin_dir("darwin", {}, home) == home / ".local" / "bin"
    assert autostart.user_bin_dir("win32", {"LOCALAPPDATA": r"C:\Users\dr\AppData\Local"}, home) == Path(
        r"C:\Users\dr\AppData\Local") / "Microsoft" / "WindowsApps"
    assert autostart.user_bin_dir("linux", {"RELAIS_BIN_DIR": "/t/bin", "XDG_BIN_HOME": "/x"}, home) == Path("/t/bin")


def test_launchers_pass_every_argument_and_carry_the_mark() -> None:
    posix = autostart.launcher_text(("/opt/relais app/bin/relais",), "linux")
    assert posix.startswith("#!/bin/sh\n") and autostart.LAUNCHER_MARK in posix
    assert "exec '/opt/relais app/bin/relais' \"$@\"\n" in posix
    windows = autostart.launcher_text((r"C:\Program Files\Relais\relais.exe",), "win32")
    assert windows == f'@echo off\r\nrem {autostart.LAUNCHER_MARK}\r\n"C:\\Program Files\\Relais\\relais.exe" %*\r\n'
    assert autostart.launcher_path(Path("b"), "win32").name == "relais.cmd"
