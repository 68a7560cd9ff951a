"""The localhost API: app factory, guard, routes, OpenAPI document, events, dashboard."""
