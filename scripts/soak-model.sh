#!/usr/bin/env bash
# The model-based test (test/integration/model-soak.test.ts) over many random sequences:
#   scripts/soak-model.sh 50
# Builds first (the test runs dist/cli.js); prints fast-check's counterexample and seed on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
npm run build >/dev/null
SLOTLINE_MODEL_RUNS=$runs npx vitest run --project heavy test/integration/model-soak.test.ts
