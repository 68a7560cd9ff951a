#!/usr/bin/env bash
# Prove that every package of the macOS locks exists as a wheel for CPython 3.13 on macOS 13+ (arm64 and x86_64)
# and matches its hash, by downloading them (build/macos/<arch>/, reused by the future macOS packaging: see
# installer/README.md). Runs on Linux; needs the package index (about 110 MB per architecture the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-build.sh
tools_venv
for arch in arm64 x86_64; do
  lock="installer/macos/requirements-macos-$arch.txt"
  check_lock "$lock"
  "$TOOLS_VENV/bin/pip" download --quiet --disable-pip-version-check -d "build/macos/$arch" \
    --platform "macosx_13_0_$arch" --python-version 3.13 --implementation cp \
    --only-binary=:all: --no-binary="$SDIST_ONLY" --no-deps --require-hashes -r "$lock"
  echo "$lock: $(ls "build/macos/$arch" | grep -c '\.whl$') wheels, $(du -sh "build/macos/$arch" | cut -f1)"
done
