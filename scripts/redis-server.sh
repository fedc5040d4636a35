#!/usr/bin/env bash
# A real Redis on loopback for the worker caches, LiveKit's multi-node mode and the SIP bridge.
#   scripts/redis-server.sh start   start it on 127.0.0.1:$REDIS_PORT (default 6379) unless it answers
#   scripts/redis-server.sh stop    stop the one this script started on that port
# redis-server comes from the Debian packages (installed here if missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${REDIS_PORT:-6379}"
STATE="$ROOT/.cache/redis-$PORT"

answers() { redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; }

start_redis() {
  "$ROOT/scripts/os-packages.sh" redis-server
  if answers; then
    echo "redis already answers on 127.0.0.1:$PORT"
    return 0
  fi
  mkdir -p "$STATE"
  # No persistence: what it holds is rebuilt by the workers (caches) or the server (room state).
  redis-server --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
    --dir "$STATE" --daemonize yes --pidfile "$STATE/pid" --logfile "$STATE/redis.log"
  for _ in $(seq 1 50); do
    if answers; then
      echo "redis started on 127.0.0.1:$PORT (log: $STATE/redis.log)"
      return 0
    fi
    sleep 0.1
  done
  echo "redis did not answer on port $PORT within 5 s; log: $STATE/redis.log" >&2
  exit 1
}

stop_redis() {
  if [[ -f "$STATE/pid" ]]; then
    local pid
    pid="$(cat "$STATE/pid")"
    kill "$pid" 2>/dev/null || true
    # Until it is gone (at most 5 s): a `start` right after a stop found the dying server
    # still answering, reused it, and lost it a moment later (tests of two modules in turn).
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$STATE/pid"
  fi
}

case "${1:-}" in
  start) start_redis ;;
  stop) stop_redis ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
