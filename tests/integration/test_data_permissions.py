"""Nothing of the data folder readable by another account (issue 23 #3), POSIX modes: the folder 0700; database,
keys, tokens, runtime and lock files 0600; tightened at every start and reported by `relais doctor`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config import Config
from tests.conftest import RELAIS, ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes; Windows relies on the profile's ACL")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def loosen(data_dir: Path) -> list[Path]:
    """What an older agent, a copy or a umask of 022 left: every secret readable by the group and others."""
    practice = data_dir / "practice"
    practice.mkdir(parents=True, exist_ok=True)
    secrets = [data_dir / "cli.token", data_dir / "tray.token", practice / "workstation.key", practice / "ca.key"]
    for path in secrets:
        path.write_text("secret")
    loose = [*secrets, *(p for p in data_dir.iterdir() if p.is_file())]
    for path in loose:
        path.chmod(0o644)
    practice.chmod(0o755)
    data_dir.chmod(0o755)
    return sorted(set(loose))


def doctor(config: Config) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAIS, "doctor", "--data-dir", str(config.data_dir)], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120, env={**os.environ, "RELAIS_CONFIG": ""})


async def test_the_agent_tightens_every_secret_at_start_and_doctor_reports_what_is_readable(
        start_agent: Any, make_config: Callable[..., Config]) -> None:
    config = make_config()
    first = await start_agent()
    data_dir = first.agent.config.data_dir
    assert data_dir == config.data_dir
    assert mode(data_dir / "agent.json") == 0o600  # before: 0644
    assert mode(data_dir / "agent.lock") == 0o600
    await first.agent.stop()
    loose = loosen(data_dir)
    report = doctor(config)
    assert report.returncode == 1, report.stdout
    for path in [data_dir, data_dir / "practice", *loose]:
        assert str(path) in report.stdout, (path, report.stdout)
    assert "lisible par d'autres comptes" in report.stdout
    await first.agent.start()  # the same data folder, a new start
    try:
        assert mode(data_dir) == 0o700 and mode(data_dir / "practice") == 0o700
        for path in [*loose, data_dir / "agent.json"]:
            if path.exists():
                assert mode(path) & 0o077 == 0, path
        report = doctor(config)
        assert "lisible par d'autres comptes" not in report.stdout, report.stdout
        assert "lisibles par ce seul compte" in report.stdout
    finally:
        await first.agent.stop()
