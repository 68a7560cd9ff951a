"""Reading what the agent traced, through its real trace log (no stand-in recorder)."""

from __future__ import annotations

from typing import Any

from agent.store.traces import StoredTrace, TraceFilter


async def recorded(services: Any, action: str | None = None) -> list[StoredTrace]:
    """The traces written so far, oldest first (optionally one action's)."""
    page = await services.rights.traces.page(TraceFilter(action=action), 500)
    return list(page.items)
