#!/usr/bin/env bash
# Soak: calls with random hang-up points (before the first word, at it, mid-answer, after)
# against one worker, at up to FIRSTWORD_MAX_CALLS at once. Reports calls lost (heard nothing
# within 3 s), tracebacks in the worker log, and the worker's threads / file descriptors /
# RSS before and after with their slope per 100 calls. Exit code 1 if a call was lost or the
# log has a traceback. Not part of the test suite (200 calls take ~10 minutes).
#   scripts/soak.sh [--calls 200] [--concurrency N] [--executor thread|process] [--seed 1]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.soak "$@"
