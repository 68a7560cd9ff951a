"""Core routes: health, status, the OpenAPI document, and the event stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from agent.api.context import SERVICES
from agent.api.openapi import build_document
from agent.api.spec import RouteTable, json_response, problem_response
from agent.errors import Unavailable

HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status", "version"],
    "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
}

STATUS_SCHEMA = {
    "type": "object",
    "required": ["version", "workstation_id", "started_at", "sandbox", "store"],
    "properties": {
        "version": {"type": "string"},
        "workstation_id": {"type": "string"},
        "started_at": {"type": "string", "format": "date-time"},
        "sandbox": {"type": "boolean"},
        "store": {
            "type": "object",
            "properties": {
                "master_key": {"enum": ["keyring", "file"]}, "warnings": {"type": "array", "items": {"type": "string"}},
                "writable": {"type": "boolean", "description": "false while the disk refuses writes (full, "
                             "read-only): requests that write answer 507"},
                "problem": {"type": ["object", "null"], "description": "why the disk refuses writes: code "
                            "(disk_full, disk_read_only, disk_error), French message, since"},
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
        "dashboard": {"type": "object", "properties": {"sessions": {"type": "integer"}}},
        "cards": {"type": "object"},
        "queue": {"type": "object"},
        "clock": {"type": "object", "description": "last_jump: the last wall clock change the agent saw while "
                  "running (seconds, positive forward; at; French message), or null; running delays kept their "
                  "length across it"},
        "connectivity": {"type": "object"},
        "dmp_parameters": {"type": "object", "description": "the DMP's parameters file (EX_GEN-1540): url, "
                           "final_url (after redirects), source (dmp: downloaded now, cache: the copy on disk, "
                           "configuration: never read), fetched_at, age_hours, stale (older than a week), last_error, "
                           "values {majority_age, minors_management, allow_masked_and_invisible, production}"},
        "peers": {"type": "array", "items": {"type": "object"}},
        "notices": {"type": "array", "items": {"type": "object"}},
    },
}


async def health(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return web.json_response({"status": "ok", "version": services.version})


async def status(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body: dict[str, Any] = {
        "version": services.version,
        "workstation_id": services.config.workstation_id,
        "started_at": services.started_at,
        "sandbox": services.config.sandbox.enabled,
        "store": {"master_key": services.master_key_source},
        "warnings": list(services.warnings),
        "dashboard": {"sessions": services.ui_sessions.active()},
    }
    for provider in services.status_providers:
        for key, value in (await provider()).items():
            # Several parts report under one key (connectivity: dmp, insi, mss): merge, never overwrite.
            if isinstance(value, dict) and isinstance(body.get(key), dict):
                body[key] = {**body[key], **value}
            else:
                body[key] = value
    return web.json_response(body, dumps=_dumps)


async def openapi(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return web.json_response(build_document(services.routes.routes, services.version))


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: every bus event, with heartbeats so proxies and clients see a live stream."""
    services = request.app[SERVICES]
    if len(services.streams) >= services.config.api.max_event_streams:
        raise Unavailable("Trop de flux d'événements ouverts sur cet agent : fermez-en un puis réessayez.",
                          code="too_many_streams")
    last = request.headers.get("Last-Event-ID", "")
    subscription = services.bus.subscribe(after=int(last) if last.isascii() and last.isdigit() else None)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    task = asyncio.current_task()
    if task is not None:
        services.streams[response] = task
    heartbeat = services.config.api.sse_heartbeat_seconds
    try:
        await response.write(b"retry: 2000\n: relais\n\n")
        while not services.stopping.is_set():
            event = await subscription.get(timeout=heartbeat)
            if event is None:
                await response.write(b": ping\n\n")
                continue
            if subscription.lagged:
                subscription.lagged = False
                await response.write(b"event: stream.lagged\ndata: {}\n\n")
            data = json.dumps(event.payload(), ensure_ascii=False)
            await response.write(f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        subscription.close()
        services.streams.pop(response, None)
    return response


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def register(table: RouteTable) -> None:
    table.get("/v1/health", health, summary="État de vie de l'agent", tag="agent", public=True,
              responses={200: json_response("L'agent répond", HEALTH_SCHEMA)})
    table.get("/v1/status", status, summary="État de l'agent, des cartes, de la file et des services", tag="agent",
              responses={200: json_response("État", STATUS_SCHEMA)})
    table.get("/v1/openapi.json", openapi, summary="Ce document OpenAPI", tag="agent", public=True,
              responses={200: json_response("Document OpenAPI 3.1")})
    table.get(
        "/v1/events", events, summary="Flux d'événements (Server-Sent Events)", tag="agent",
        description="card.inserted, card.removed, cps.login, order.updated, notice.due, peer.changed, "
                    "connectivity.changed, store.fault {writable, code, message}, clock.jumped, dmp.parameters "
                    "{source, majority_age, minors_management, allow_masked_and_invisible, production}; each "
                    "data is JSON "
                    "with id and at. Heartbeat comments every "
                    "api.sse_heartbeat_seconds. Last-Event-ID replays recent events.",
        responses={200: {"description": "Flux SSE", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                   503: problem_response("too_many_streams (api.max_event_streams)")},
    )
