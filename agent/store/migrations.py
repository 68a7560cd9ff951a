"""Versioned schema migrations, one ordered list per component.

Each component (core, orders, consent, traces...) owns its tables and its list; its version is the number of
its migrations applied. Migrations only ever get appended: an applied one is never edited. Each runs in its own
transaction with the version bump, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: dict[str, list[str]] = {
    "core": [
        """
        CREATE TABLE api_tokens (
            id          TEXT PRIMARY KEY,
            name        TEXT NOT NULL UNIQUE,
            secret_hash BLOB NOT NULL,
            created_at  TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at  TEXT
        );
        CREATE TABLE data_keys (
            id          TEXT PRIMARY KEY,
            wrapped     BLOB NOT NULL,
            created_at  TEXT NOT NULL
        );
        CREATE TABLE settings (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ],
}


def register(component: str, statements: list[str]) -> None:
    """Add a component's migrations (called at import by the component's repository module)."""
    existing = MIGRATIONS.setdefault(component, [])
    if existing and existing != statements[: len(existing)]:
        raise RuntimeError(f"migrations of {component!r} were rewritten; append only")
    MIGRATIONS[component] = list(statements)


def apply_migrations(conn: sqlite3.Connection) -> dict[str, int]:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    versions = {row[0]: row[1] for row in conn.execute("SELECT component, version FROM schema_versions")}
    for component, statements in MIGRATIONS.items():
        current = versions.get(component, 0)
        if current > len(statements):
            raise RuntimeError(
                f"la base est d'une version plus récente ({component} v{current}) que cet agent : mettez Relais à jour"
            )
        for number in range(current, len(statements)):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split(statements[number]):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_versions(component, version) VALUES (?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, number + 1),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        versions[component] = len(statements)
    return versions


def _split(script: str) -> list[str]:
    """Statements of a script; sqlite3.complete_statement keeps triggers' inner semicolons together."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements
