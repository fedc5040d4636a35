#!/usr/bin/env bash
# The time-to-first-word benchmark: baseline vs firstword vs floor on the local LiveKit
# server, with the caller simulator. Prints a table; writes JSON and CSV under .cache/bench.
#   scripts/bench.sh [--warm 20] [--cold 3] [--concurrency 1,4,8] [--rounds 3] [--modes ...]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.ttfw "$@"
