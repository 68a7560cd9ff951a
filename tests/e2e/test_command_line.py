"""The `relais` command as a user types it (issue 21 #7): on the PATH after `relais install --path-only` (what
scripts/demo.sh runs) or `relais install --user`, French help and errors, human output and `--json` for scripts,
and the running demo agent found without naming its data folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import RELAIS, ROOT


def run(env: dict[str, str], *args: str, program: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(program or RELAIS), *args], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=env)


def home_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user whose own folders are all under ``tmp_path`` (no agent of theirs running on the default folder)."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
           "XDG_DATA_HOME": str(tmp_path / "home" / ".local" / "share"), **extra}
    env.pop("RELAIS_CONFIG", None)
    env.pop("XDG_BIN_HOME", None)
    return env


def test_path_only_puts_relais_in_the_users_bin_folder_and_says_where(tmp_path: Path) -> None:
    bin_dir = tmp_path / "home" / ".local" / "bin"
    env = home_env(tmp_path, PATH="/usr/bin:/bin")
    env.pop("RELAIS_BIN_DIR", None)
    result = run(env, "install", "--path-only")
    assert result.returncode == 0, result.stderr
    assert f"Commande relais installée : {bin_dir / 'relais'}" in result.stdout  # ~/.local/bin on POSIX
    assert f'export PATH="{bin_dir}:$PATH"' in result.stdout  # not on this PATH yet: how to reach it
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    found = shutil.which("relais", path=env["PATH"])
    assert found == str(bin_dir / "relais")
    version = run(env, "--version", program=[found])
    assert version.returncode == 0 and version.stdout.startswith("relais "), version
    again = run(env, "install", "--path-only")  # its own launcher is replaced, and it is on the PATH now
    assert again.returncode == 0 and "export PATH" not in again.stdout
    removed = run(env, "uninstall")
    assert f"supprimé : {bin_dir / 'relais'}" in removed.stdout and not (bin_dir / "relais").exists()


def test_a_relais_command_it_did_not_write_is_left_alone(tmp_path: Path) -> None:
    env = home_env(tmp_path, RELAIS_BIN_DIR=str(tmp_path / "bin"))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "relais").write_text("#!/bin/sh\necho autre\n")
    result = run(env, "install", "--path-only")
    assert result.returncode == 2 and "n'a pas été écrit par Relais" in result.stderr
    assert (tmp_path / "bin" / "relais").read_text() == "#!/bin/sh\necho autre\n"


def test_help_and_errors_are_in_french(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    helped = run(env, "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("utilisation : relais")
    assert "afficher cette aide et quitter" in helped.stdout and "afficher la version et quitter" in helped.stdout
    assert "usage:" not in helped.stdout and "show " not in helped.stdout
    for command in (["orders", "list"], ["token", "create"], ["kit", "status"], ["status"], ["doctor"]):
        sub = run(env, *command, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith("utilisation : relais"), sub
        assert "show this help" not in sub.stdout
    missing = run(env, "orders")
    assert missing.returncode == 2
    assert "relais orders : erreur : arguments obligatoires manquants : ACTION" in missing.stderr
    wrong = run(env, "orders", "list", "--state", "parti")
    assert "choix invalide : 'parti'" in wrong.stderr
    unknown = run(env, "status", "--bogus")
    assert "erreur : arguments inconnus : --bogus" in unknown.stderr


def test_state_commands_print_for_people_and_json_for_scripts(demo_process: Any, tmp_path: Path) -> None:
    agent = demo_process("agent", "--delay", "600")
    env = home_env(tmp_path)  # no --data-dir below: the session's agent (this demo) is the one asked
    status = run(env, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("Relais ") and "Mode démonstration" in status.stdout
    status_json = json.loads(run(env, "status", "--json").stdout)
    assert status_json["sandbox"] is True
    listed = run(env, "orders", "list")
    assert listed.returncode == 0 and listed.stdout.strip() == "Aucun envoi.", listed
    assert json.loads(run(env, "orders", "list", "--json").stdout)["items"] == []
    link = json.loads(run(env, "dashboard", "--json").stdout)
    assert link["url"].startswith(f"{agent.url}/ui/#login=")
    people = run(env, "dashboard", "--no-browser")
    assert people.stdout.startswith("Tableau de bord : http://127.0.0.1:")
    tokens = json.loads(run(env, "token", "list", "--json", "--data-dir", str(agent.data_dir)).stdout)
    assert "relais-cli" in {t["name"] for t in tokens if t["revoked_at"] is None}  # the CLI's own, made above
    doctor = run(env, "doctor", "--json", "--data-dir", str(agent.data_dir))
    report = json.loads(doctor.stdout)
    assert report["ok"] is (doctor.returncode == 0)
    assert {c["level"] for c in report["checks"]} <= {"ok", "warning", "error"}
    assert any(c["level"] == "ok" and "agent" in c["text"] and "en marche" in c["text"] for c in report["checks"])
    practice = json.loads(run(env, "practice", "list", "--json", "--data-dir", str(agent.data_dir)).stdout)
    assert practice["practice"] is None and practice["members"] == []
