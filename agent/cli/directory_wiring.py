"""The Annuaire santé client for ``GET /v1/directory``: the configured FHIR API, or the sandbox directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.api.context import Services
from agent.config import Config
from agent.mss.directory import DirectoryClient


async def directory_for(config: Config, services: Services, endpoint: dict[str, Any] | None = None) -> Any:
    section = config.mss
    if endpoint:
        return DirectoryClient(endpoint["url"], ca_file=endpoint["ca"])
    if not section.directory_url:
        return None
    key = Path(section.directory_api_key_file).read_text(encoding="utf-8").strip() \
        if section.directory_api_key_file else ""
    return DirectoryClient(section.directory_url, api_key=key, ca_file=section.ca_file)
