#!/usr/bin/env bash
# Set up Relais and run the demo: the agent with virtual cards and the DMP, INSi and MSSanté simulators.
# Extra arguments go to `relais demo` (e.g. --port 7463 --delay 60 --token-file demo.token).
# The `relais` command goes into the user's bin folder (~/.local/bin; RELAIS_BIN_DIR elsewhere), where the
# README's `relais orders list` finds it; it reaches this demo agent (the session's agent) by itself.
# RELAIS_SKIP_SETUP=1: .venv is known to be set up already (the README test runs this script as written).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${RELAIS_SKIP_SETUP:-}" != 1 ]; then
  bash scripts/setup-venv.sh "desktop"
fi
# The ANS reference kit (CDA schematrons, XDS schemas, example documents) beside the project, when present:
# documents are then validated and the simulated DMP starts with the demo patients' documents.
if [ -z "${RELAIS_REFERENCE:-}" ] && [ -d ../shared/reference ]; then
  export RELAIS_REFERENCE="$(cd ../shared/reference && pwd)"
fi
.venv/bin/relais install --path-only || echo "(commande relais non installée : .venv/bin/relais reste utilisable)" >&2
exec .venv/bin/relais demo "$@"
