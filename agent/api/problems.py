"""The one place where errors become HTTP: problem+json (RFC 9457) with a French title and detail."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from agent import errors as e

# Most specific class first.
_STATUS: list[tuple[type[e.RelaisError], int]] = [
    (e.PayloadTooLarge, 413),
    (e.InvalidInput, 422),
    (e.ConfigError, 422),
    (e.AuthenticationRequired, 401),
    (e.AccessRefused, 403),
    (e.TooManyFailures, 429),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.Unavailable, 503),
    (e.TransientRemoteError, 503),
    (e.PermanentRemoteError, 502),
    (e.RemoteError, 502),
    (e.AgentLockedError, 409),
    (e.StorageUnavailable, 507),
    (e.StoreError, 500),
]

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def status_for(error: e.RelaisError) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def problem(status: int, code: str, title: str, detail: str, **members: Any) -> web.Response:
    body: dict[str, Any] = {
        "type": f"urn:relais:error:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **members,
    }
    response = web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/problem+json",
        charset="utf-8",
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def problem_from(error: e.RelaisError) -> web.Response:
    status = status_for(error)
    members: dict[str, Any] = dict(error.extra)
    if isinstance(error, e.InvalidInput) and error.errors:
        members["errors"] = [fe.as_dict() for fe in error.errors]
    if isinstance(error, e.RemoteError) and error.service:
        members["service"] = error.service
    response = problem(status, error.code, error.title, error.message, **members)
    if isinstance(error, e.TooManyFailures):
        response.headers["Retry-After"] = str(error.retry_after)
    return response
