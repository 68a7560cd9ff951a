"""`relais demo --token-file`: the file holds the current token before the API answers at all (issue 23 #16).
Before, the token was rotated after the API listened: a client that read the file as soon as `/v1/health`
answered got the previous, revoked token and its first call answered 401."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp

from agent.cli.wiring import Agent, DemoOptions
from agent.config import Config


async def test_the_token_file_holds_the_current_token_once_the_api_listens(
        make_config: Callable[..., Config], tmp_path: Path) -> None:
    config = make_config(sandbox={"enabled": True})
    token_file = tmp_path / "demo.token"
    seen: list[str] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # the second start rotates the token: the file must not lag behind
            agent = Agent(config, DemoOptions(token_file=token_file, cards="none", tray=False))
            await agent.start()  # from here on the API answers /v1/health
            try:
                token = token_file.read_text().strip()
                url = f"http://127.0.0.1:{agent.port}"
                async with http.get(f"{url}/v1/health") as response:
                    assert response.status == 200
                async with http.get(f"{url}/v1/status", headers={"Authorization": f"Bearer {token}"}) as response:
                    assert response.status == 200, "the token file held a previous token"
                seen.append(token)
            finally:
                await agent.stop()
    assert seen[0] != seen[1]
