#!/usr/bin/env bash
# Answer latency on cloud engines (via the loopback stand-ins), healthy and failing.
#   scripts/bench-failover.sh [--calls 3] [--stt 0.3] [--llm 0.4] [--tts 0.15]
#                             [--modes before,after] [--scenarios local,cloud,errors,hang]
# before: hedging off (FIRSTWORD_HEDGE_AFTER_*=0); after: hedging on; side by side, with ratios.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.failover "$@"
