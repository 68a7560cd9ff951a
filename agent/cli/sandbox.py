"""`relais sandbox`: the simulators as their own process, loopback only, state kept in --state-dir."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from agent.config import Config
from agent.logs import get_logger, setup_logging
from agent.netbind import bind_first_free, start_sites
from agent.platforms import install_stop_handlers
from relais_sandbox.demo import build_simulators
from relais_sandbox.host import SandboxContext, SandboxHost, create_sandbox_app
from relais_sandbox.pki import SandboxPki

log = get_logger("sandbox")


async def serve_sandbox(state_dir: Path, port: int, config: Config) -> int:
    setup_logging(config.agent.log_level, state_dir / "logs")
    host = SandboxHost(SandboxContext(state_dir, SandboxPki(state_dir)), build_simulators())
    await host.start()
    runner = web.AppRunner(create_sandbox_app(host, port), handle_signals=False, access_log=None)
    await runner.setup()
    await start_sites(runner, bind_first_free("127.0.0.1", port, what="le bac à sable"))
    print(f"Bac à sable Relais : http://127.0.0.1:{port}/_sandbox/endpoints", flush=True)
    stop = asyncio.Event()
    install_stop_handlers(stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await host.stop()
    return 0
