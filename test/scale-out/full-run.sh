#!/usr/bin/env bash
# The scale-out tests with the issue's full 60 s of load in three-instances.test.ts (CI runs 20 s).
# Usage: test/scale-out/full-run.sh [vitest args]; XO_DIST selects the build (default dist/).
set -euo pipefail
cd "$(dirname "$0")/../.."
XO_SCALEOUT_SEC="${XO_SCALEOUT_SEC:-60}" exec npx vitest run test/scale-out "$@"
