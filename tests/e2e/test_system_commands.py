"""`relais install`, `uninstall` and `doctor` as an administrator runs them (systemctl left out)."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import RELAIS, ROOT


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAIS, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_install_writes_the_user_service_and_autostart_then_uninstall_removes_them(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "RELAIS_NO_SYSTEMCTL": "1",
           "RELAIS_BIN_DIR": str(tmp_path / "bin")}
    data = tmp_path / "data"
    installed = run(env, "install", "--user", "--data-dir", str(data))
    assert installed.returncode == 0, installed.stderr
    assert f"Commande relais installée : {tmp_path / 'bin' / 'relais'}" in installed.stdout
    service = (tmp_path / "xdg" / "systemd" / "user" / "relais-agent.service").read_text()
    autostart = (tmp_path / "xdg" / "autostart" / "relais-tray.desktop").read_text()
    assert f"run --data-dir {data}" in service and "Restart=on-failure" in service
    assert f"tray --data-dir {data}" in autostart
    doctor = run(env, "doctor", "--data-dir", str(data))
    assert "démarrage automatique installé" in doctor.stdout
    removed = run(env, "uninstall", "--data-dir", str(data))
    assert removed.returncode == 0
    assert not (tmp_path / "xdg" / "systemd" / "user" / "relais-agent.service").exists()
    assert not (tmp_path / "xdg" / "autostart" / "relais-tray.desktop").exists()
    assert not (tmp_path / "bin" / "relais").exists()


def test_doctor_names_a_missing_certificate_and_fails(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    config = tmp_path / "relais.toml"
    config.write_text('[insi]\nca_file = "/nonexistent/insi-ca.pem"\n')
    result = run(env, "doctor", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "ERREUR" in result.stdout and "insi.ca_file" in result.stdout and "/nonexistent/insi-ca.pem" in result.stdout
    assert "dossier de données accessible" in result.stdout


def test_doctor_explains_a_master_key_that_existed_and_is_gone(tmp_path):
    from agent.store.masterkey import load_master_key

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    data = tmp_path / "data"
    load_master_key(data, "file")
    (data / "master.key").unlink()
    result = run(env, "doctor", "--data-dir", str(data))
    assert result.returncode == 1
    assert "ERREUR" in result.stdout and "master.key a disparu" in result.stdout
    started = run(env, "run", "--data-dir", str(data))
    assert started.returncode == 2 and "pour ne pas créer une autre clé" in started.stderr


def test_doctor_says_why_mssante_would_not_start_without_the_igc_sante_authority(tmp_path):
    """MSS1 / ECO.1.1.10: IGC-Santé is the only trust anchor; with no CA file MSSanté refuses to start."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    config = tmp_path / "relais.toml"
    config.write_text('[mss]\nenabled = true\nsender_address = "cabinet@x.mssante.fr"\nsmtp_host = "smtp.x.fr"\n'
                      'client_cert = "/nonexistent/cabinet.pem"\nproduct_reference = "DEV935997"\n')
    result = run(env, "doctor", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "MSSanté ne démarrera pas" in result.stdout and "mss.ca_file" in result.stdout, result.stdout
    assert "jamais par le magasin du système" in result.stdout
    # The agent itself refuses to start, naming the key (the port is free: nothing else stops it).
    config.write_text(config.read_text() + '[api]\nport = 0\n[cards]\npcsc = false\n')
    started = run(env, "run", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert started.returncode == 2 and "mss.ca_file" in started.stderr, (started.stdout, started.stderr)
    assert "autorités IGC-Santé est obligatoire" in started.stderr
