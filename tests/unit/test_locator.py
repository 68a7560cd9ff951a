"""Where an LGC finds its session's agent: the session file's place per OS, its content, the registry values."""

from __future__ import annotations

from pathlib import Path

from agent.locator import REG_DWORD, REG_SZ, SessionInfo, registry_values, session_file

INFO = SessionInfo(url="http://127.0.0.1:7465", port=7465, pid=4242, session="3", user="drmartin",
                   data_dir=r"C:\Users\drmartin\AppData\Local\relais", agent_version="0.1.0",
                   started_at="2026-12-01T08:00:00Z", sandbox=False,
                   cli=(r"C:\Program Files\Relais\python\python.exe", "-m", "agent.cli"))


def test_windows_has_one_file_per_remote_desktop_session_in_the_users_local_app_data():
    path = session_file("win32", {"LOCALAPPDATA": r"C:\Users\drmartin\AppData\Local"}, "3")
    assert path == Path(r"C:\Users\drmartin\AppData\Local") / "relais" / "sessions" / "3.json"


def test_linux_uses_the_users_runtime_folder_and_writes_nothing_without_one():
    assert session_file("linux", {"XDG_RUNTIME_DIR": "/run/user/1000"}, "user") == Path(
        "/run/user/1000/relais/session.json")
    assert session_file("linux", {}, "user") is None


def test_macos_uses_application_support():
    path = session_file("darwin", {}, "user", home=Path("/Users/drmartin"))
    assert path == Path("/Users/drmartin/Library/Application Support/relais/session.json")


def test_the_environment_moves_the_file_for_test_rigs(tmp_path):
    assert session_file("win32", {"RELAIS_SESSION_DIR": str(tmp_path)}, "3") == tmp_path / "session-3.json"


def test_the_registry_key_names_url_port_pid_and_data_folder():
    values = {name: (kind, value) for name, kind, value in registry_values(INFO, Path("C:/x/3.json"))}
    assert values["Url"] == (REG_SZ, "http://127.0.0.1:7465")
    assert values["Port"] == (REG_DWORD, 7465) and values["Pid"] == (REG_DWORD, 4242)
    assert values["DataDir"][1].endswith("relais") and values["SessionFile"][0] == REG_SZ


def test_the_file_holds_no_token_and_lists_the_cli_as_arguments():
    body = INFO.as_json()
    assert body["cli"] == [r"C:\Program Files\Relais\python\python.exe", "-m", "agent.cli"]
    assert not any("token" in key for key in body)
