"""Shared fixtures: configurations in temporary folders, a real agent on a loopback port, the reference kit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.cli.wiring import RUNTIME_FILE, Agent, DemoOptions
from agent.clock import Clock, SystemClock
from agent.config import Config, load_config
from agent.reference import BESIDE_CHECKOUT, find_reference
from agent.reference import ENV as REFERENCE_ENV
from agent.store.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent
RELAIS = [sys.executable, "-m", "agent.cli"]


def reference_root() -> Path:
    """The reference kits, found by the agent's own rule (``agent.reference``): tests and product look alike."""
    return find_reference() or Path(os.environ.get(REFERENCE_ENV) or BESIDE_CHECKOUT)


def _require_all() -> bool:
    """``RELAIS_REQUIRE_ALL=1`` (set by ``.ci/run``): a test that would be skipped fails instead."""
    return os.environ.get("RELAIS_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if _require_all() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped while RELAIS_REQUIRE_ALL=1: {report.longrepr}"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if _require_all() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"module skipped while RELAIS_REQUIRE_ALL=1: {report.longrepr}"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    path = reference_root()
    if not path.is_dir():
        pytest.skip(f"kit de référence absent ({path}) : définissez RELAIS_REFERENCE vers shared/reference")
    return path


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Config in tmp_path; keyword arguments are {section: {key: value}} overrides."""

    def make(**sections: dict[str, Any]) -> Config:
        sections.setdefault("agent", {}).setdefault("data_dir", str(tmp_path / "data"))
        sections.setdefault("api", {}).setdefault("port", 0)
        sections.setdefault("store", {}).setdefault("master_key", "file")
        # Most tests send hand-made CDAs through agents without the CI-SIS kit: they opt in to the fail-open mode a
        # real workstation never has (tests/integration/test_cda_api.py checks the fail-closed default).
        sections.setdefault("cda", {}).setdefault("allow_unvalidated", True)
        return load_config(None, **sections)

    return make


@dataclass
class RunningAgent:
    agent: Agent
    url: str
    token: str

    @property
    def services(self) -> Any:
        return self.agent.services

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}


@pytest.fixture
async def start_agent(make_config: Callable[..., Config]) -> AsyncIterator[Callable[..., Any]]:
    """Start real agents in-process on loopback ports; all are stopped at the end of the test."""
    started: list[Agent] = []

    async def start(*, clock: Clock | None = None, demo: DemoOptions | None = None,
                    **sections: dict[str, Any]) -> RunningAgent:
        if demo is not None:
            sections.setdefault("sandbox", {})["enabled"] = True
        config = make_config(**sections)
        agent = Agent(config, demo, clock=clock or SystemClock())
        await agent.start()
        started.append(agent)
        assert agent.services is not None
        now = agent.services.clock.now().isoformat()
        token = await agent.services.db.write(lambda conn: create_token(conn, f"test-{len(started)}", now))
        return RunningAgent(agent, f"http://127.0.0.1:{agent.port}", token)

    yield start
    for agent in reversed(started):
        await agent.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    token: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)


def spawn_demo(data_dir: Path, *extra: str, env: dict[str, str] | None = None, wait: float = 30) -> AgentProcess:
    """`relais demo` as a user starts it, on a free port; returns once it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    token_file = data_dir.parent / f"{data_dir.name}.token"
    token_file.unlink(missing_ok=True)
    (data_dir / RUNTIME_FILE).unlink(missing_ok=True)
    log = data_dir.parent / f"{data_dir.name}.log"
    full_env = {**os.environ, **(env or {})}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*RELAIS, "demo", "--port", "0", "--data-dir", str(data_dir), "--token-file", str(token_file),
             "--no-tray", *extra],
            stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT,
        )
    deadline = time.monotonic() + wait
    runtime = data_dir / RUNTIME_FILE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"relais demo exited {proc.returncode}: {log.read_text()[-2000:]}")
        if runtime.exists() and token_file.exists():
            port = json.loads(runtime.read_text())["port"]
            return AgentProcess(proc, data_dir, port, token_file.read_text().strip(), log)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"relais demo did not start: {log.read_text()[-2000:]}")


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    procs: list[AgentProcess] = []

    def start(name: str = "agent", *extra: str, **kwargs: Any) -> AgentProcess:
        process = spawn_demo(tmp_path / name, *extra, **kwargs)
        procs.append(process)
        return process

    yield start
    for process in procs:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def free_port() -> int:
    """A loopback port free right now (for processes that take --port)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SandboxProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def spawn_sandbox(state_dir: Path, log: Path, *extra: str, port: int | None = None,
                  wait: float = 60) -> SandboxProcess:
    """`relais sandbox` as its own process (simulators that outlive agents); returns once it answers."""
    import urllib.request

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        proc = subprocess.Popen([*RELAIS, "sandbox", "--port", str(port), "--state-dir", str(state_dir), *extra],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_sandbox/endpoints", timeout=5):
                return SandboxProcess(proc, url, log)
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"relais sandbox did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


@pytest.fixture(scope="session", autouse=True)
def _session_files_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Agents started by the tests announce themselves here, never in the user's own session folder."""
    from agent.locator import ENV_DIR

    folder = tmp_path_factory.mktemp("sessions")
    previous = os.environ.get(ENV_DIR)
    os.environ[ENV_DIR] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(ENV_DIR, None)
    else:
        os.environ[ENV_DIR] = previous
