#!/usr/bin/env bash
# Quick start 1: set up, then deploy a sample image to four local clients over a swarm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node scripts/demo.mjs "$@"
