"""Long-lived parts as async context managers: the composition root enters them in build order on one
``AsyncExitStack``, so they stop in the reverse order, once, whatever failed in between."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any, Self


class Lifecycle:
    """Mixin: ``async with part:`` runs ``start()`` then, on the way out, ``stop()``."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Stop a part's background task: cancelled, then awaited to its end (None: nothing runs)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
