"""The OpenAPI document: valid 3.1, served by the running agent, and every route of the app is in it."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from agent.cli.wiring import DemoOptions


def _app_routes(agent) -> set[tuple[str, str]]:
    app = agent.agent.runner.app
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "OPTIONS") or path is None:
            continue
        if path.startswith("/ui/"):
            continue  # the dashboard's static files are not API operations
        routes.add((route.method.lower(), path))
    return routes


async def test_document_is_valid_and_lists_every_route(start_agent, http):
    agent = await start_agent(demo=DemoOptions(tray=False))
    async with http.get(f"{agent.url}/v1/openapi.json") as r:
        assert r.status == 200
        document = await r.json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    missing = _app_routes(agent) - documented
    assert not missing, f"routes without OpenAPI documentation: {sorted(missing)}"
    # Contract routes of API.md that exist from the foundation on.
    for path in ("/v1/health", "/v1/status", "/v1/openapi.json", "/v1/events"):
        assert path in document["paths"]
    # Public routes say so; the others declare the 401 problem.
    assert document["paths"]["/v1/health"]["get"]["security"] == []
    assert "401" in document["paths"]["/v1/status"]["get"]["responses"]
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    assert all(re.fullmatch(r"[a-z_0-9]+", i) for i in ids)
