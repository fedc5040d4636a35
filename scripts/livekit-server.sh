#!/usr/bin/env bash
# Install and run the real LiveKit server (dev mode, devkey/secret) for local calls and tests.
#   scripts/livekit-server.sh install   build it from its Go module into ./bin (skipped if built)
#   scripts/livekit-server.sh start     start it on 127.0.0.1:$LIVEKIT_PORT (default 7880) unless it answers already
#   scripts/livekit-server.sh stop      stop the server this script started on that port
# Multi-node mode (LiveKit's distributed mode): set LIVEKIT_REDIS=host:port (a Redis shared by
# every node, e.g. scripts/redis-server.sh) and LIVEKIT_API_KEY / LIVEKIT_API_SECRET (32+
# characters). Then there is no --dev: the keys reach the server through LIVEKIT_KEYS (its
# environment, not its command line), and each node gets its own ports from LIVEKIT_PORT
# (+1 TCP, +2 UDP) and its own state dir, so several nodes run side by side on one host.
# LIVEKIT_PROMETHEUS_PORT=N: the server's own Prometheus metrics on 127.0.0.1:N/metrics
# (e.g. livekit_node_twirp_request_status, its server API calls; scripts/bench-sweep.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# v1.13.5 is the newest release tag whose go.mod has no replace directives, so that
# `go install module@tag` builds it as released.
LIVEKIT_SERVER_VERSION="v1.13.5"
BIN="$ROOT/bin/livekit-server"
PORT="${LIVEKIT_PORT:-7880}"
STATE="${FIRSTWORD_CACHE_DIR:-$ROOT/.cache}/livekit-server-$PORT"

install_server() {
  if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -q "version ${LIVEKIT_SERVER_VERSION#v}\$"; then
    return 0
  fi
  # Go's official tarball installs outside the default PATH.
  [[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || { echo "livekit-server.sh: Go is needed to build livekit-server; install Go 1.26+" >&2; exit 1; }
  echo "building livekit-server ${LIVEKIT_SERVER_VERSION} from its Go module (a few minutes the first time)..."
  local gobin
  gobin="$(mktemp -d)"
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "github.com/livekit/livekit-server/cmd/server@${LIVEKIT_SERVER_VERSION}"
  mkdir -p "$ROOT/bin"
  mv "$gobin/server" "$BIN"
  rmdir "$gobin"
  "$BIN" --version
}

answers() { curl -fsS --max-time 1 "http://127.0.0.1:$PORT/" >/dev/null 2>&1; }

start_server() {
  install_server
  if answers; then
    echo "livekit-server already answers on 127.0.0.1:$PORT"
    return 0
  fi
  mkdir -p "$STATE"
  local config
  # Info, not the debug level --dev implies: debug logs ~200 MB per benchmark run and costs CPU.
  config="$(printf 'port: %d\nrtc:\n  tcp_port: %d\n  udp_port: %d\nlogging:\n  level: info\n' "$PORT" $((PORT + 1)) $((PORT + 2)))"
  if [[ -n "${LIVEKIT_PROMETHEUS_PORT:-}" ]]; then
    config="$config$(printf '\nprometheus:\n  port: %d\n' "$LIVEKIT_PROMETHEUS_PORT")"
  fi
  if [[ -n "${LIVEKIT_REDIS:-}" ]]; then
    local key="${LIVEKIT_API_KEY:-}" secret="${LIVEKIT_API_SECRET:-}"
    if [[ -z "$key" || ${#secret} -lt 32 ]]; then
      echo "livekit-server.sh: multi-node mode (LIVEKIT_REDIS=$LIVEKIT_REDIS) needs LIVEKIT_API_KEY and a LIVEKIT_API_SECRET of 32+ characters" >&2
      exit 2
    fi
    config="$config$(printf '\nredis:\n  address: %s\n' "$LIVEKIT_REDIS")"
    LIVEKIT_KEYS="$key: $secret" nohup "$BIN" --bind 127.0.0.1 --node-ip 127.0.0.1 \
      --config-body "$config" >"$STATE/server.log" 2>&1 &
  else
    nohup "$BIN" --dev --bind 127.0.0.1 --node-ip 127.0.0.1 --config-body "$config" \
      >"$STATE/server.log" 2>&1 &
  fi
  echo $! >"$STATE/pid"
  for _ in $(seq 1 100); do
    if answers; then
      echo "livekit-server ${LIVEKIT_SERVER_VERSION} started on ws://127.0.0.1:$PORT (log: $STATE/server.log)"
      return 0
    fi
    if ! kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
      echo "livekit-server exited at start; its log:" >&2
      tail -20 "$STATE/server.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "livekit-server did not answer on port $PORT within 20 s; log: $STATE/server.log" >&2
  exit 1
}

stop_server() {
  if [[ -f "$STATE/pid" ]]; then
    kill "$(cat "$STATE/pid")" 2>/dev/null || true
    rm -f "$STATE/pid"
  fi
}

case "${1:-}" in
  install) install_server ;;
  start) start_server ;;
  stop) stop_server ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
