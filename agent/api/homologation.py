"""Homologation routes: the frames journal's switch and the CNDA test code, for an LGC that plays the CNDA's cases
through its own screens (``PUT /v1/homologation/frames {"test_code": "2.1-010"}`` before each case)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.guard import read_json
from agent.api.spec import RouteTable, json_response, problem_response
from agent.errors import InvalidInput, Unavailable
from agent.homologation.journal import FramesJournal

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
FRAMES_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["enabled", "test_code", "count", "retention_days"],
    "properties": {"enabled": {"type": "boolean"}, "test_code": {"type": "string"},
                   "count": {"type": "integer", "description": "exchanges kept"},
                   "oldest": {"type": ["string", "null"]}, "retention_days": {"type": "number"}}}
FRAMES_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"enabled": {"type": "boolean"},
                   "test_code": {"type": "string", "description": "CNDA test code (e.g. 2.1-010); empty: none"}}}


def _journal(request: web.Request) -> FramesJournal:
    journal = request.app[SERVICES].frames
    if journal is None:
        raise Unavailable("Le journal des trames n'est pas disponible sur cet agent.", code="frames_unavailable")
    return journal


async def get_frames(request: web.Request) -> web.Response:
    return web.json_response((await _journal(request).status())["frames"])


async def put_frames(request: web.Request) -> web.Response:
    journal = _journal(request)
    body = await read_json(request)
    unknown = sorted(set(body) - {"enabled", "test_code"})
    if unknown:
        raise InvalidInput.field(unknown[0], "Champ inconnu.")
    enabled, code = body.get("enabled"), body.get("test_code")
    if enabled is not None and not isinstance(enabled, bool):
        raise InvalidInput.field("enabled", "true ou false attendu.")
    if code is not None and (not isinstance(code, str) or (code and not _CODE.fullmatch(code))):
        raise InvalidInput.field("test_code", "Code de test du CNDA attendu (ex. 2.1-010), 40 caractères au plus.")
    if enabled is not None:
        await journal.set_enabled(enabled)
    if code is not None:
        await journal.set_test_code(code)
    return web.json_response((await journal.status())["frames"])


def register(table: RouteTable) -> None:
    tag = "homologation"
    table.get("/v1/homologation/frames", get_frames, summary="État du journal des trames (homologation CNDA)",
              tag=tag, responses={200: json_response("Journal des trames", FRAMES_SCHEMA),
                                  503: problem_response("frames_unavailable")})
    table.put("/v1/homologation/frames", put_frames, summary="Activer le journal des trames ou fixer le code de test",
              tag=tag, request_schema=FRAMES_REQUEST,
              description="Stored: `relais frames status` and a restarted agent see the same. Frames exchanged "
                          "afterwards are filed under test_code.",
              responses={200: json_response("Journal des trames", FRAMES_SCHEMA),
                         422: problem_response("invalid_input"), 503: problem_response("frames_unavailable")})
