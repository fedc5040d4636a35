#!/usr/bin/env bash
# The demo: set everything up, start the local LiveKit server and the worker, make real
# calls with the caller simulator, and print the conversation with its timings.
#   scripts/demo.sh [caller options...]     e.g. scripts/demo.sh --runs 3 --account bluebird-bikes
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh

export FIRSTWORD_HTTP_PORT="${FIRSTWORD_HTTP_PORT:-0}" FIRSTWORD_METRICS_PORT="${FIRSTWORD_METRICS_PORT:-0}"
source scripts/local-server-env.sh

worker_log=.cache/demo-worker.log
.venv/bin/python agent.py start >"$worker_log" 2>&1 &
worker=$!
cleanup() {
  kill -INT "$worker" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
  stop_local_server
}
trap cleanup EXIT

echo "waiting for the worker to register (log: $worker_log)"
for _ in $(seq 1 120); do
  grep -q '"registered worker"' "$worker_log" && break
  kill -0 "$worker" 2>/dev/null || { cat "$worker_log" >&2; exit 1; }
  sleep 0.5
done
grep -q '"registered worker"' "$worker_log" || { echo "worker did not register in 60 s" >&2; exit 1; }

.venv/bin/python -m caller "$@"
