"""The OS keyring in a short-lived process of its own: ``python -m agent.store.keyring_child``.

The only `keyring` importer. The agent never imports it: its backends pull in large native libraries (GLib through
libsecret on Linux, about 7 MiB of resident memory that the agent would never give back) to read one key once at
start. ``agent.store.masterkey`` runs this module as a child process, writes one JSON request on its standard input
and reads one JSON answer on its standard output, then the process ends and its memory with it. The key travels
only through those pipes: never on a command line, in the environment or in a log, and this module prints nothing
else (a failure is reported by its exception's type name only). Secret Service, macOS Keychain and Windows
Credential Manager are all reached the same way, through `keyring`'s own choice of backend (``PYTHON_KEYRING_BACKEND``
and keyringrc.cfg included).

Request: ``{"op": "probe" | "get" | "set", "service": ..., "account": ..., "secret": ...}`` (``secret`` for set).
Answer: ``{"state": "ok" | "absent" | "locked" | "failed", "secret": str | null, "error": exception type name}``;
``absent`` means no usable backend in this session, ``locked`` a backend that refused to open.
"""

from __future__ import annotations

import json
import sys
from typing import Any

OK, ABSENT, LOCKED, FAILED = "ok", "absent", "locked", "failed"


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The answer to one request; never raises, never says more than an exception's type name."""
    try:
        import keyring
        from keyring.backends import fail
        from keyring.errors import KeyringLocked

        backend = keyring.get_keyring()
        usable = not isinstance(backend, fail.Keyring) and float(getattr(backend, "priority", 1)) > 0
    except Exception as exc:  # no backend can even be chosen (a broken keyringrc.cfg, a missing library)
        return {"state": ABSENT, "secret": None, "error": type(exc).__name__}
    if not usable:
        return {"state": ABSENT, "secret": None, "error": ""}
    op, service, account = request.get("op"), str(request.get("service")), str(request.get("account"))
    try:
        if op == "get":
            return {"state": OK, "secret": backend.get_password(service, account), "error": ""}
        if op == "set":
            backend.set_password(service, account, str(request["secret"]))
        elif op != "probe":
            return {"state": FAILED, "secret": None, "error": "UnknownOperation"}
        return {"state": OK, "secret": None, "error": ""}
    except KeyringLocked as exc:
        return {"state": LOCKED, "secret": None, "error": type(exc).__name__}
    except Exception as exc:  # no session bus, access denied, backend error
        return {"state": FAILED, "secret": None, "error": type(exc).__name__}


def main() -> int:
    try:
        request = json.loads(sys.stdin.buffer.read())
        if not isinstance(request, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        reply: dict[str, Any] = {"state": FAILED, "secret": None, "error": type(exc).__name__}
    else:
        reply = answer(request)
    sys.stdout.buffer.write(json.dumps(reply).encode("ascii"))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
