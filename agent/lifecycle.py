"""Long-lived parts as async context managers: the composition root enters them in build order on one
``AsyncExitStack``, so they stop in the reverse order, once, whatever failed in between."""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
