"""Running the agent: the data folder's lock, the composition root (``agent.cli.root.build``), the HTTP API on
loopback, the runtime file the LGC and the tray read, and an orderly stop.

``relais demo`` runs the same agent in the sandbox's ``Environment`` (``relais_sandbox.demo``), imported here and
only here, when the configuration enables the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from agent import __version__, locator
from agent.api.app import GUARD_KEY, create_app
from agent.api.context import Services
from agent.cli.environment import Environment
from agent.cli.root import Overrides, build
from agent.clock import Clock, SystemClock, rfc3339
from agent.config import Config
from agent.errors import NotFound
from agent.logs import get_logger, setup_logging
from agent.netbind import bind_first_free, start_sites
from agent.platforms import install_stop_handlers
from agent.store import private
from agent.store.lock import DataDirLock
from agent.store.tokens import create_token, revoke_token

log = get_logger("agent")
RUNTIME_FILE = "agent.json"


@dataclass(frozen=True)
class DemoOptions:
    token_file: Path | None = None
    cards: str = "both"
    sandbox_url: str = ""
    delay: int | None = None
    peer_port: int | None = None
    tray: bool = True


def demo_environment(config: Config, demo: DemoOptions | None) -> Environment | None:
    """The sandbox's world when the configuration enables it (``relais demo``), else None (the real world)."""
    if not config.sandbox.enabled:
        return None
    from relais_sandbox.demo import DemoEnvironment  # the one place the product's command line meets the sandbox

    return DemoEnvironment(config, cards=demo.cards if demo is not None else "both")


@dataclass
class Agent:
    config: Config
    demo: DemoOptions | None = None
    clock: Clock = field(default_factory=SystemClock)
    services: Services | None = None
    runner: web.AppRunner | None = None
    port: int = 0
    demo_token: str = ""  # the demo's API token, written to its token file before the API answers
    # `relais run`/`demo` only: publish this session's agent (agent.locator) once it listens, before the runtime
    # file that says it is ready, so whoever waits for that file finds the session file too. In-process test
    # agents publish nothing.
    announce: Callable[[int, str], locator.SessionInfo] | None = None
    session: locator.SessionInfo | None = None
    _lock: DataDirLock | None = None
    _stack: AsyncExitStack | None = None

    async def start(self) -> None:
        config = self.config
        self._lock = DataDirLock(config.data_dir)
        self._lock.acquire(port=config.api.port, started_at=rfc3339(self.clock.now()))
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        config = self.config
        for item in private.tighten(config.data_dir):  # left readable by an older agent, a copy or a umask
            log.warning("droits resserrés : %s", item.describe())
        self._stack = AsyncExitStack()
        env = demo_environment(config, self.demo)
        overrides = Overrides(delay_seconds=self.demo.delay if self.demo else None,
                              peer_port=self.demo.peer_port if self.demo else None,
                              peers_on_loopback=self.demo is not None)
        services = await build(config, self._stack, clock=self.clock, env=env, overrides=overrides)
        self.services = services
        if self.demo is not None:
            # Before the port listens: a client that reads the token file once /v1/health answers gets this
            # token, never the one of the previous demo start (issue 23 #16).
            self.demo_token = await issue_demo_token(services, self.demo.token_file)
        app = create_app(services, env.routes if env is not None else ())
        # keepalive_timeout also runs from the connection's start: idle and half-sent connections are closed.
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10.0, access_log=None,
                                    keepalive_timeout=config.api.idle_timeout_seconds)
        await self.runner.setup()
        # An exclusive port; when another session's agent has it (shared Remote Desktop server), the next free one.
        sockets = bind_first_free(config.api.host, config.api.port, search=config.api.port_search,
                                  skip=(config.practice.peer_port,))
        self.port = await start_sites(self.runner, sockets)
        if config.api.port and self.port != config.api.port:
            services.warnings.append(f"Port {config.api.port} déjà pris (agent d'une autre session ?) : l'agent "
                                     f"écoute sur le port {self.port}, annoncé dans le fichier de session.")
        app[GUARD_KEY].port = self.port
        if self._lock is not None:
            self._lock.update(port=self.port, started_at=services.started_at)
        if self.announce is not None:
            self.session = self.announce(self.port, services.started_at)
        self._write_runtime()
        log.info("agent Relais %s prêt sur http://%s:%d%s", __version__, config.api.host, self.port,
                 " (mode démonstration)" if config.sandbox.enabled else "")

    def _write_runtime(self) -> None:
        info = {"pid": os.getpid(), "port": self.port, "url": f"http://127.0.0.1:{self.port}",
                "version": __version__, "sandbox": self.config.sandbox.enabled}
        _atomic_write(self.config.data_dir / RUNTIME_FILE, json.dumps(info).encode(), mode=0o600)

    async def stop(self) -> None:
        """Stop serving, let in-flight requests and writes finish, stop the parts in the reverse order of their
        start (nothing sends once the store closes). Safe to call twice."""
        if self.session is not None:
            locator.withdraw(self.session)
            self.session = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
        self.services = None
        if self._lock is not None:
            try:
                (self.config.data_dir / RUNTIME_FILE).unlink(missing_ok=True)
            finally:
                self._lock.release()
                self._lock = None


def _atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


async def issue_demo_token(services: Services, token_file: Path | None) -> str:
    """A fresh token named "demo" at every demo start: the previous one is revoked (only hashes are kept)."""
    now = rfc3339(services.clock.now())

    def rotate(conn: Any) -> str:
        with contextlib.suppress(NotFound):  # the first demo start has no previous token
            revoke_token(conn, "demo", now)
        return create_token(conn, "demo", now)

    token = await services.db.write(rotate)
    if token_file is not None:
        _atomic_write(token_file, (token + "\n").encode(), mode=0o600)
    return token


def start_tray(config: Config) -> subprocess.Popen[bytes] | None:
    """The demo's tray icon, as its own process, when this session has a desktop and pystray is installed."""
    desktop = sys.platform != "linux" or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not desktop or importlib.util.find_spec("pystray") is None:
        log.info("icône de notification non lancée (pas de bureau, ou extra [desktop] absent)")
        return None
    args = [sys.executable, "-m", "agent.cli", "tray", "--data-dir", str(config.data_dir)]
    if config.source and config.source != "(valeurs par défaut)":
        args += ["--config", config.source]
    return subprocess.Popen(args)


async def serve(config: Config, demo: DemoOptions | None = None) -> int:
    if hasattr(signal, "SIGXFSZ"):
        # A file size limit (quota) reached: the write fails with an error the agent reports (507, status), it
        # does not kill the agent.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    setup_logging(config.agent.log_level, config.log_dir, max_bytes=config.agent.log_max_bytes,
                  backups=config.agent.log_backups)
    agent = Agent(config, demo, announce=functools.partial(locator.announce, config))
    stop = asyncio.Event()
    install_stop_handlers(stop.set)
    if demo is not None and demo.token_file is not None:
        # The token file appears only once the agent answers: a script can wait for it (the README does).
        demo.token_file.unlink(missing_ok=True)
    await agent.start()
    tray: subprocess.Popen[bytes] | None = None
    try:
        if demo is not None and agent.services is not None:
            if demo.token_file is None:
                print(f"Jeton d'API de démonstration : {agent.demo_token}", flush=True)
            print(f"Relais (démonstration) : http://127.0.0.1:{agent.port}/v1/status", flush=True)
            code = agent.services.ui_sessions.issue_code("demo")
            print(f"Tableau de bord : http://127.0.0.1:{agent.port}/ui/#login={code} (lien à usage unique, valable "
                  f"60 s ; un nouveau : relais dashboard --data-dir {config.data_dir})", flush=True)
            if demo.tray:
                tray = start_tray(config)
        await stop.wait()
        log.info("arrêt demandé : fin des écritures en cours")
    finally:
        if tray is not None and tray.poll() is None:
            tray.terminate()
        await agent.stop()
    log.info("agent arrêté proprement")
    return 0
