#!/usr/bin/env bash
# A realistic conversation load on one worker pinned to one core (benchmarks/load.py): TTFW
# and answer p50/p90, lost calls and unanswered turns, CPU and RSS per conversation, event-loop
# lag and GC pauses, per step of conversations at once; local and cloud engines, the old and
# the new defaults side by side.
#   scripts/bench-load.sh [--steps 2,4,6,8] [--step-seconds 90] [--engines local,cloud]
#       [--modes old,new,unrouted] [--layouts pinned|machine,per-core] [--ramp-s 10]
#       [--hang-up 0.15] [--seed 1] [--profile [--profile-gil]]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.load "$@"
