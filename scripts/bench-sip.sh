#!/usr/bin/env bash
# Phone calls beside WebRTC calls on one worker: ring time (INVITE -> 200 OK), first word and
# answer latency, p50/p90. Starts Redis, livekit-server in Redis mode and LiveKit's SIP bridge
# (scripts/sip.sh, same settings: LIVEKIT_PORT, REDIS_PORT, SIP_PORT, SIP_RTP_PORTS) and one
# worker; stops what it started.
#   scripts/bench-sip.sh [--calls 10] [--number +15035550100]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/sip.sh start
eval "$(scripts/sip.sh env)"
export LIVEKIT_URL LIVEKIT_API_KEY LIVEKIT_API_SECRET FIRSTWORD_SIP_ADDRESS
mkdir -p "${FIRSTWORD_CACHE_DIR:-.cache}/bench"
log="${FIRSTWORD_CACHE_DIR:-.cache}/bench/sip-worker.log"
FIRSTWORD_HTTP_PORT=0 FIRSTWORD_METRICS_PORT=0 FIRSTWORD_HTTP_HOST=127.0.0.1 \
  .venv/bin/python agent.py start >"$log" 2>&1 &
worker=$!
cleanup() {
  kill -INT "$worker" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
  scripts/sip.sh stop
}
trap cleanup EXIT
# Registered, and the stored answers rendered (from a cold cache they take a minute and would
# share the CPU with the first calls).
for _ in $(seq 1 480); do
  grep -q '"answers pre-rendered"' "$log" 2>/dev/null && break
  kill -0 "$worker" 2>/dev/null || { echo "the worker exited; log: $log" >&2; exit 1; }
  sleep 0.5
done
.venv/bin/python -m benchmarks.sip "$@"
