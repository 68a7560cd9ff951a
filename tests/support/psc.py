"""Pro Santé Connect in tests: the simulated provider on loopback, and the browser's part of a login (driven by
HTTP: follow PSC's redirect back to the agent's loopback listener)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from relais_sandbox.host import SandboxContext
from relais_sandbox.pki import SandboxPki
from relais_sandbox.psc import PscSimulator


@asynccontextmanager
async def running_psc(state_dir: Path) -> AsyncIterator[PscSimulator]:
    sim = PscSimulator()
    await sim.start(SandboxContext(state_dir, SandboxPki(state_dir)))
    try:
        yield sim
    finally:
        await sim.stop()


async def browse(authorization_url: str) -> tuple[int, str, str]:
    """What the system browser does with the authorization URL: open it, follow PSC's redirect to the agent's
    loopback URI; returns (status, final URL, page text)."""
    async with aiohttp.ClientSession() as browser, browser.get(authorization_url, allow_redirects=True) as page:
        return page.status, str(page.url), await page.text()
