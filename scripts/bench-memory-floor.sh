#!/usr/bin/env bash
# Memory per call of LiveKit's WebRTC alone (no engines): the floor under the capacity
# benchmark's RSS per call. Prints RSS at each step and the slope, one room per event loop
# and one per thread side by side.
#   scripts/bench-memory-floor.sh [--steps 0,1,2,4,8,16] [--settle 4] [--layouts loop,threads]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.memory_floor "$@"
