#!/usr/bin/env bash
# Quick start 2: set up, then lint, type-check and run every test (unit and end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export PATH="$PWD/.cache/pnpm/node_modules/.bin:$PATH"
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
exec pnpm test
