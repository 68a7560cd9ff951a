#!/usr/bin/env bash
# Set up everything and run all the checks: system packages (apt-get, through sudo when not root), the venv,
# ruff, mypy and the whole pytest suite (unit, integration against real pcscd/SoftHSM2/SQLite/simulators,
# end to end, UI). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
  as_root="sudo"
fi
if { [ "$(id -u)" = 0 ] || [ -n "$as_root" ]; } && command -v apt-get >/dev/null 2>&1; then
  mapfile -t packages < <(grep -v '^\s*#' scripts/system-packages.txt | tr ' ' '\n' | grep -v '^\s*$' || true)
  missing=()
  for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing system packages: ${missing[*]}"
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "Neither root nor sudo: system packages from scripts/system-packages.txt are not installed;"
  echo "the tests that need them will skip and say so."
fi

extras="dev,cards,desktop"
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists gobject-introspection-1.0 cairo; then
  extras="$extras,gtk"  # PyGObject builds against them: the tray's GTK backends and the dashboard window
fi
bash scripts/setup-venv.sh "$extras"

echo "== ruff"; .venv/bin/ruff check agent relais_sandbox tray tests bench
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest -q "$@"
