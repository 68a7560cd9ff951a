#!/usr/bin/env bash
# Set up Relais and run the demo: the agent with virtual cards and the DMP, INSi and MSSanté simulators.
# Extra arguments go to `relais demo` (e.g. --port 7463 --delay 60 --token-file demo.token).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh "desktop"
exec .venv/bin/relais demo "$@"
