"""The route table: every route is declared once, with what the guard and the OpenAPI document need.

A route says whether it needs a token, how large a body it accepts (refused before reading), and its OpenAPI
operation (summary, request schema, responses). ``openapi.py`` builds the document from this table, so a route
cannot exist without being documented.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyKind = Literal["none", "small", "upload"]

ROUTE_KEY = "relais_route"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    public: bool = False
    body: BodyKind = "none"
    request_schema: dict[str, Any] | None = None
    responses: dict[int, dict[str, Any]] = field(default_factory=dict)
    parameters: tuple[dict[str, Any], ...] = ()
    description: str = ""
    # Extra OpenAPI operation members (e.g. a text/event-stream response).
    extra: dict[str, Any] = field(default_factory=dict)


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, path: str, handler: Handler, *, summary: str, tag: str, **kwargs: Any) -> None:
        method = method.upper()
        body: BodyKind = kwargs.pop("body", "small" if method in ("POST", "PUT", "PATCH") else "none")
        if method == "GET" and body != "none":
            raise ValueError(f"GET {path} cannot take a body")
        self.routes.append(Route(method, path, handler, summary, tag, body=body, **kwargs))

    def get(self, path: str, handler: Handler, **kwargs: Any) -> None:
        self.add("GET", path, handler, **kwargs)

    def post(self, path: str, handler: Handler, **kwargs: Any) -> None:
        self.add("POST", path, handler, **kwargs)

    def put(self, path: str, handler: Handler, **kwargs: Any) -> None:
        self.add("PUT", path, handler, **kwargs)

    def delete(self, path: str, handler: Handler, **kwargs: Any) -> None:
        self.add("DELETE", path, handler, **kwargs)

    def install(self, app: web.Application) -> None:
        for route in self.routes:
            resource = app.router.add_resource(route.path)
            aio_route = resource.add_route(route.method, route.handler)
            # The guard reads the declaration back from the matched route.
            setattr(aio_route, ROUTE_KEY, route)


def route_of(request: web.Request) -> Route | None:
    return getattr(request.match_info.route, ROUTE_KEY, None)


# Reusable schema fragments.
def json_response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
