#!/usr/bin/env bash
# A burst of callers against one worker: time to hear the business p50/p90/max, held,
# redispatched and lost callers, the default hold slots and the old default (4) side by side.
#   scripts/bench-burst.sh [--bursts 3,4] [--rounds 2] [--stay 10] [--variants default,old-4,unrouted]
# --bursts: burst sizes as multiples of FIRSTWORD_MAX_CALLS (the worker's conversations).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.burst "$@"
