"""Imports go down the layers of docs/ARCHITECTURE.md, never up; no import cycles; no hidden imports; the tray
imports nothing from the agent; the product never imports the simulators.

Layers (a package may import its own modules and those listed for it):
- foundation: errors, clock, logs, config, events, softkey (the software-key Signer), connectivity (the one
  reachability tracker), lifecycle (start/stop as an async context), reference (where the ANS kits are),
  frames (the tap through which transports hand their raw exchanges to the homologation journal),
  netbind (exclusive listeners), platforms (OS facts);
- autostart, locator: foundation only (used by the command line);
- domain: pure rules (errors allowed);
- xml, cards, store: foundation + domain;
- cda, ins, dmp: foundation + domain + xml;
- mss: + dmp (the XDM's metadata are the DMP's own), store (its acknowledgements);
- queue: + store (services only through the DeliveryGateway protocol: no dmp, mss, cards imports);
- audit: + store, dmp (the DMP consultation use case: policy, call, filter, trace);
- routing: + store, queue;
- homologation: + store, dmp, ins (the frames journal names the CNDA's transactions; the test book's plan);
- api: everything but cli; cli: everything (the composition root). The simulators (relais_sandbox/) may import
  the product; only the command line imports them.
Project imports are made at the top of modules (outside cli/, whose commands load only what they run), so that the
graph this test reads is the real one.
Third-party adapters are single modules: pyscard only in cards/pcsc.py, python-pkcs11 only in cards/pkcs11.py,
keyring only in store/keyring_child.py, and so on for saxonche, biip, signxml, zeroconf and aiosmtpd.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FOUNDATION = {"errors", "clock", "logs", "config", "events", "softkey", "connectivity", "lifecycle", "reference",
              "netbind", "platforms", "frames"}
BASE = FOUNDATION | {"domain"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "clock": set(),
    "logs": set(),
    "lifecycle": set(),
    "reference": set(),
    "frames": set(),
    "config": {"errors"},
    "events": {"clock"},
    "connectivity": {"clock", "events"},
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
    "psc": BASE,
    "mss": BASE | {"xml", "dmp", "store"},
    "queue": BASE | {"store", "xml"},
    "audit": BASE | {"store", "dmp"},
    "routing": BASE | {"store", "queue", "xml"},
    "homologation": BASE | {"store", "xml", "dmp", "ins"},
    "api": BASE | {"xml", "cards", "store", "cda", "ins", "dmp", "mss", "queue", "audit", "routing", "homologation",
                   "psc"},
}
SINGLE_ADAPTERS = {"smartcard": "agent/cards/pcsc.py", "pkcs11": "agent/cards/pkcs11.py",
                   "keyring": "agent/store/keyring_child.py", "saxonche": "agent/cda/saxon.py",
                   "biip": "agent/cda/datamatrix.py", "signxml": "agent/xml/signing.py",
                   "zeroconf": "agent/routing/discovery.py", "aiosmtpd": "relais_sandbox/mss.py",
                   "joserfc": "agent/psc/jose.py"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _split_imports(path: Path, modules: set[str]) -> tuple[set[str], list[str]]:
    """The project modules a file imports at module level (outside ``if TYPE_CHECKING``), and those it imports
    inside functions. ``from agent.x import y`` counts as importing ``agent.x.y`` when that is a module."""
    top: set[str] = set()
    hidden: list[str] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if not node.module or node.level:
            return []
        return [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                for a in node.names]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in targets(child):
                    if name in modules:
                        (hidden.append(name) if inside else top.add(name))
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return top, hidden


def _graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    files = {_module(p): p for p in (ROOT / "agent").rglob("*.py")}
    modules = set(files)
    top: dict[str, set[str]] = {}
    hidden: dict[str, list[str]] = {}
    for name, path in files.items():
        top[name], hidden[name] = _split_imports(path, modules)
    return top, hidden


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


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


def test_agent_modules_import_each_other_without_cycles():
    top, _ = _graph()
    cycles = _cycles(top)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_project_imports_are_at_the_top_of_modules_outside_the_command_line():
    """An import inside a function hides a dependency (and often a cycle) from the reader and from this test."""
    _, hidden = _graph()
    offenders = [f"{module}: {', '.join(sorted(set(names)))}" for module, names in sorted(hidden.items())
                 if names and not module.startswith("agent.cli")]
    assert not offenders, "function-level project imports:\n" + "\n".join(offenders)


def test_no_product_module_imports_the_simulators():
    """The simulators (relais_sandbox) are imported by the command line's demo and sandbox commands only."""
    offenders = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in sorted((ROOT / "agent").rglob("*.py"))
        if p.parent.name != "cli"
        for n in _imports(p)
        if n == "relais_sandbox" or n.startswith("relais_sandbox.")
    ]
    assert not offenders, "product modules importing the simulators:\n" + "\n".join(offenders)


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
    for path in sorted([*(ROOT / "agent").rglob("*.py"), *(ROOT / "relais_sandbox").rglob("*.py")]):
        rel = str(path.relative_to(ROOT))
        for name in _imports(path):
            top = name.split(".")[0]
            if top in SINGLE_ADAPTERS and rel != SINGLE_ADAPTERS[top]:
                problems.append(f"{rel} imports {name} (only {SINGLE_ADAPTERS[top]} may)")
    assert not problems, "\n".join(problems)
