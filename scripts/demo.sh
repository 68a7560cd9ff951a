#!/usr/bin/env bash
# Set up Relais and run the demo: the agent with virtual cards and the DMP, INSi and MSSanté simulators.
# Extra arguments go to `relais demo` (e.g. --port 7463 --delay 60 --token-file demo.token).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh "desktop"
# The ANS reference kit (CDA schematrons, XDS schemas, example documents) beside the project, when present:
# documents are then validated and the simulated DMP starts with the demo patients' documents.
if [ -z "${RELAIS_REFERENCE:-}" ] && [ -d ../shared/reference ]; then
  export RELAIS_REFERENCE="$(cd ../shared/reference && pwd)"
fi
exec .venv/bin/relais demo "$@"
