#!/usr/bin/env bash
# Answer latency and accuracy, before and after issue 10, clean / telephone / paused / cloud.
#   scripts/bench-answers.sh [--modes before,after,...] [--per-call 8] [--after-env NAME=VALUE]
# The after-uvloop mode needs uvloop importable: PYTHONPATH=.cache/uvloop (see benchmarks/answers.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.answers "$@"
