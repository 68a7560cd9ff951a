"""Imports go down the layers of ARCHITECTURE.md, never up; the tray imports nothing from the agent.

Layers (a package may import its own modules and those listed for it):
- foundation: errors, clock, logs, config, events, softkey (the software-key Signer), netbind (exclusive
  listeners), platforms (OS facts): each other only as below;
- autostart, locator: foundation only (used by the command line);
- domain: pure rules (errors allowed);
- xml, cards, store: foundation + domain;
- cda, ins, dmp, mss: foundation + domain + xml;
- queue: + store (service clients only through protocols: no dmp, mss, cards imports);
- audit: + store;
- routing: + store, queue, xml;
- api: everything but cli and sandbox; sandbox: everything but cli; cli: everything.
Third-party adapters are single modules: pyscard only in cards/pcsc.py, python-pkcs11 only in cards/pkcs11.py,
keyring only in store/masterkey.py, and so on for saxonche, biip, signxml, zeroconf and aiosmtpd.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FOUNDATION = {"errors", "clock", "logs", "config", "events", "softkey", "netbind", "platforms"}
BASE = FOUNDATION | {"domain"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "clock": set(),
    "logs": set(),
    "config": {"errors"},
    "events": {"clock"},
    "softkey": {"errors", "domain"},
    # OS facts and exclusive listeners, for every layer.
    "netbind": {"errors"},
    "platforms": {"errors"},
    # Only the command line uses these: autostart at logon, the session file an LGC reads.
    "autostart": FOUNDATION,
    "locator": FOUNDATION,
    "domain": {"errors"},
    "xml": BASE,
    "cards": BASE,
    "store": BASE,
    "cda": BASE | {"xml"},
    "ins": BASE | {"xml"},
    "dmp": BASE | {"xml"},
    "mss": BASE | {"xml"},
    "queue": BASE | {"store", "xml"},
    "audit": BASE | {"store"},
    "routing": BASE | {"store", "queue", "xml"},
    "api": BASE | {"xml", "cards", "store", "cda", "ins", "dmp", "mss", "queue", "audit", "routing"},
    "sandbox": BASE | {"xml", "cards", "store", "cda", "ins", "dmp", "mss", "queue", "audit", "routing", "api"},
}
SINGLE_ADAPTERS = {"smartcard": "agent/cards/pcsc.py", "pkcs11": "agent/cards/pkcs11.py",
                   "keyring": "agent/store/masterkey.py", "saxonche": "agent/cda/saxon.py",
                   "biip": "agent/cda/datamatrix.py", "signxml": "agent/xml/signing.py",
                   "zeroconf": "agent/routing/discovery.py", "aiosmtpd": "agent/sandbox/mss.py"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _layer(module_path: Path) -> str:
    rel = module_path.relative_to(ROOT / "agent")
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else "__init__"


def test_agent_imports_follow_the_layers():
    problems = []
    for path in sorted((ROOT / "agent").rglob("*.py")):
        layer = _layer(path)
        if layer in ("cli", "__init__"):
            continue
        allowed = ALLOWED.get(layer)
        assert allowed is not None, f"new top-level package agent/{layer}: add it to ARCHITECTURE and this test"
        for name in _imports(path):
            if name == "agent" or not name.startswith("agent."):
                continue
            target = name.split(".")[1]
            if target != layer and target not in allowed:
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_tray_imports_nothing_from_the_agent():
    offenders = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in (ROOT / "tray").rglob("*.py")
        for n in _imports(p)
        if n == "agent" or n.startswith("agent.")
    ]
    assert not offenders


def test_third_party_adapters_are_single_modules():
    problems = []
    for path in sorted((ROOT / "agent").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for name in _imports(path):
            top = name.split(".")[0]
            if top in SINGLE_ADAPTERS and rel != SINGLE_ADAPTERS[top]:
                problems.append(f"{rel} imports {name} (only {SINGLE_ADAPTERS[top]} may)")
    assert not problems, "\n".join(problems)
