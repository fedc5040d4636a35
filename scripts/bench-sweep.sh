#!/usr/bin/env bash
# Server API calls per second of the unanswered-room sweep with many workers, before (every
# worker sweeps) and after (one lease holder sweeps), side by side, and the takeover time
# when the holder is killed: a real livekit-server (its own port, with Prometheus on) and
# a real Redis.
#   scripts/bench-sweep.sh [--workers 20] [--rooms 50] [--window 20] [--kills 3]
#                          [--modes before,after]
# LIVEKIT_PORT (default 7940; Prometheus on +9) and REDIS_PORT (default 6379) pick the ports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# A server of its own, so that nobody else's calls are counted, with its metrics on.
export LIVEKIT_PORT="${LIVEKIT_PORT:-7940}"
export LIVEKIT_PROMETHEUS_PORT="${LIVEKIT_PROMETHEUS_PORT:-$((LIVEKIT_PORT + 9))}"
source scripts/local-server-env.sh
export REDIS_PORT="${REDIS_PORT:-6379}"
started_redis=0
if ! redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
  scripts/redis-server.sh start
  started_redis=1
fi
cleanup() {
  stop_local_server
  if [[ $started_redis == 1 ]]; then scripts/redis-server.sh stop; fi
}
trap cleanup EXIT
BENCH_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/14" \
  BENCH_LIVEKIT_METRICS="http://127.0.0.1:$LIVEKIT_PROMETHEUS_PORT/metrics" \
  .venv/bin/python -m benchmarks.sweep "$@"
