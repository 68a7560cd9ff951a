"""What a doctor may change from the dashboard, kept in the store's ``settings`` table under ``doctor.*``.

The configuration file gives the defaults (``[queue] delay_seconds``, ``[notifications]``); a value saved here
overrides it on this workstation until it is reset (``None``). Only these keys: the rest of the configuration is
the integrator's, read-only in the dashboard. Values are plain numbers and booleans, never patient data.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent.domain.orders import MAX_DELAY_SECONDS

PREFIX = "doctor."
DELAY = "queue.delay_seconds"
NOTIFICATIONS = ("notifications.send_failures", "notifications.patients", "notifications.notices")
KEYS = (DELAY, *NOTIFICATIONS)
MAX_DELAY = MAX_DELAY_SECONDS


def read_preferences(conn: sqlite3.Connection) -> dict[str, Any]:
    """The saved overrides, by key (absent: the configuration's default applies)."""
    rows = conn.execute("SELECT key, value FROM settings WHERE key LIKE ?", (PREFIX + "%",)).fetchall()
    out: dict[str, Any] = {}
    for key, value in rows:
        name = str(key).removeprefix(PREFIX)
        if name in KEYS:
            out[name] = json.loads(value)
    return out


def write_preferences(conn: sqlite3.Connection, values: dict[str, Any]) -> None:
    """Save (or, for ``None``, drop) each override, in the caller's transaction."""
    for name, value in values.items():
        if name not in KEYS:
            raise ValueError(f"unknown preference {name!r}")
        if value is None:
            conn.execute("DELETE FROM settings WHERE key = ?", (PREFIX + name,))
        else:
            conn.execute("INSERT INTO settings(key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (PREFIX + name, json.dumps(value)))


def delay_override(conn: sqlite3.Connection) -> int | None:
    """The cancellation delay the doctor chose, or None for the configuration's."""
    value = read_preferences(conn).get(DELAY)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
