"""The digest of what the installer locks are resolved from: pyproject.toml's runtime dependencies and the extras
the installers bundle (cards, desktop). scripts/lock-installers.sh writes it into each lock; the builds and
tests/unit/test_installer_locks.py refuse a lock whose digest no longer matches. Reads pyproject.toml only.
Usage: python lock_digest.py [PYPROJECT]
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

BUNDLED_EXTRAS = ("cards", "desktop")


def digest(pyproject: Path) -> str:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    spec = {"dependencies": project["dependencies"], **{name: extras.get(name, []) for name in BUNDLED_EXTRAS}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


if __name__ == "__main__":
    print(digest(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")))
