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

from agent.api.schema import closed, unsupported_keywords

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
    request_examples: dict[str, Any] = field(default_factory=dict)  # OpenAPI Example Objects by name
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
        if kwargs.get("request_schema") is not None:
            # What the OpenAPI document shows is what read_json enforces: objects closed, keywords known.
            kwargs["request_schema"] = closed(kwargs["request_schema"])
            unknown = unsupported_keywords(kwargs["request_schema"])
            if unknown:
                raise ValueError(f"{method} {path}: schema keywords not checked: {unknown}")
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


# Shared schemas: components of the OpenAPI document, referenced by "$ref" from routes (and resolved by the
# request checker). Registered at import time by the API modules, once per name.
COMPONENTS: dict[str, dict[str, Any]] = {}
_REF = "#/components/schemas/"


def component(name: str, schema: dict[str, Any], *, request: bool = False) -> dict[str, Any]:
    """Register ``schema`` as ``#/components/schemas/<name>`` and answer a ``$ref`` to it. A request schema is
    closed (unknown keys refused) and may only use the keywords the checker knows."""
    if request:
        schema = closed(schema)
        unknown = unsupported_keywords(schema)
        if unknown:
            raise ValueError(f"component {name}: schema keywords not checked: {unknown}")
    if COMPONENTS.get(name, schema) != schema:
        raise ValueError(f"component {name} registered twice with different schemas")
    COMPONENTS[name] = schema
    return {"$ref": _REF + name}


def resolve(ref: str) -> dict[str, Any]:
    if not ref.startswith(_REF) or ref[len(_REF):] not in COMPONENTS:
        raise KeyError(f"unknown schema reference {ref}")
    return COMPONENTS[ref[len(_REF):]]


# Reusable schema fragments.
def json_response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
