"""Issue 24 item 6: what an idle agent does not need is not loaded with it. Loading the composition root (every
part's module) imports neither the keyring (read only where the master key is), zeroconf (practice discovery),
dnspython (MSSanté autoconfiguration) nor Saxon (the validation workers): each at its first use."""

from __future__ import annotations

import json
import subprocess
import sys

LAZY = ("keyring", "zeroconf", "dns", "saxonche")


def test_the_composition_root_loads_none_of_the_libraries_an_idle_agent_does_not_need() -> None:
    probe = ("import json, sys; import agent.cli.root; "
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(LAZY)!r}))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                       text=True).stdout)
    assert loaded == []
