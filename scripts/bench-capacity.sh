#!/usr/bin/env bash
# Capacity of one worker: ramps simultaneous calls (local engines, and cloud engines via the
# stand-ins; thread and process executors) and prints TTFW/answer p50/p90, CPU and memory per
# call, and the largest step within TTFW p90 <= 500 ms and answer p90 <= 1.5 s.
#   scripts/bench-capacity.sh [--quick] [--steps 1,2,4,8,12,16] [--rounds 2]
#       [--engines local,cloud] [--executors thread,process] [--process-steps 1,2,4]
# --quick: steps 1,2,4,8 (process 1,2,4), one round: all four combinations in about 10 minutes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.capacity "$@"
