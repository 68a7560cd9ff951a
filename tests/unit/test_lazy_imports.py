"""Issue 24 item 6: what an idle agent does not need is not loaded with it. Loading the composition root (every
part's module) imports neither the keyring (read by a child process of its own), zeroconf (practice discovery),
dnspython (MSSanté autoconfiguration) nor Saxon (the validation workers): each at its first use, and the keyring
never in the agent's process, even when the master key is there (tests/integration/test_masterkey_store.py checks
a started agent the same way)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.keyrings import switched_keyrings

LAZY = ("keyring", "zeroconf", "dns", "saxonche")


def _loaded_after(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; what it printed as JSON, with the lazy libraries it had loaded by then."""
    probe = (f"import json, sys\n{code}\n"
             f"said['loaded'] = sorted({{m.split('.')[0] for m in sys.modules}} & set({list(LAZY)!r}))\n"
             "print(json.dumps(said))")
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_composition_root_loads_none_of_the_libraries_an_idle_agent_does_not_need() -> None:
    assert _loaded_after("import agent.cli.root\nsaid = {}")["loaded"] == []


def test_a_master_key_made_then_read_in_the_keyring_never_loads_keyring_in_the_agents_process(tmp_path) -> None:
    code = ("from pathlib import Path\nfrom agent.store.masterkey import load_master_key\n"
            f"first = load_master_key(Path({str(tmp_path)!r}), 'auto')\n"
            f"again = load_master_key(Path({str(tmp_path)!r}), 'auto')\n"
            "said = {'sources': [first.source, again.source], 'same': first.key == again.key}")
    with switched_keyrings() as keyrings:
        store = keyrings.available()
        said = _loaded_after(code)
        assert len(store.entries) == 1  # the key really is in the keyring, not in a file
    assert said == {"sources": ["keyring", "keyring"], "same": True, "loaded": []}
    assert not (tmp_path / "master.key").exists()
