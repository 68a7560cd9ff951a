#!/usr/bin/env bash
# Set up everything and run all the checks: system packages (as root, with apt-get), the virtual environment,
# ruff, mypy and the whole pytest suite (unit, integration against real pcscd/SoftHSM2/SQLite/simulators,
# end to end, UI). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  mapfile -t packages < <(grep -v '^\s*#' scripts/system-packages.txt | tr ' ' '\n' | grep -v '^\s*$' || true)
  missing=()
  for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "Not root: system packages from scripts/system-packages.txt are not installed; tests needing them will skip."
fi

bash scripts/setup-venv.sh "dev,cards,desktop"

echo "== ruff"; .venv/bin/ruff check agent tray tests bench
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest -q "$@"
