"""Where the ANS reference kits are (CI-SIS kit, IHE XDS.b schemas, value sets, the CNDA test book): one rule,
used by the agent, the simulators, the tests and the benchmarks.

In order: the folder configuration names, the ``RELAIS_REFERENCE`` environment variable, the kit installed by
``relais kit install`` (``<data_dir>/reference``, passed as ``installed``), then ``shared/reference`` beside the
project's checkout (a developer's or CI's layout). ``RELAIS_REFERENCE`` set but empty says "no
reference kit" (a benchmark that measures the agent without CI-SIS validation). The data is never copied into the
project: code reads it where it is, and says so when it is not there.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "RELAIS_REFERENCE"
# The project's checkout is the parent of the agent/ package; shared/ sits beside it.
BESIDE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "reference"


def find_reference(configured: str = "", *, marker: str = "ci-sis", beside_checkout: bool = True,
                   installed: Path | None = None) -> Path | None:
    """The reference folder holding ``marker`` (a sub-folder such as ``ci-sis`` or ``ihe``), or None.
    ``beside_checkout=False``: only what the configuration, the environment or the installed kit name."""
    candidates = [Path(configured)] if configured else []
    env = os.environ.get(ENV)
    if env:
        candidates.append(Path(env))
    if env is None or env:  # set but empty: only the configured folder
        if installed is not None:
            candidates.append(installed)
        if env is None and beside_checkout:
            candidates.append(BESIDE_CHECKOUT)
    for candidate in candidates:
        if (candidate / marker).is_dir():
            return candidate
    return None
