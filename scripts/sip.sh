#!/usr/bin/env bash
# Phone calls on this machine: LiveKit's SIP bridge beside a local server, on loopback.
#   scripts/sip.sh install     build bin/livekit-sip (pinned in tools/sip/go.mod) unless current
#   scripts/sip.sh start       Redis, livekit-server in Redis mode, the bridge, then the trunks and
#                              dispatch rules of every account (python -m agent.sip.provision)
#   scripts/sip.sh stop        stop what start started (bridge, server, Redis)
#   scripts/sip.sh env         print the exports a worker/caller needs (eval "$(scripts/sip.sh env)")
# Settings (environment): LIVEKIT_PORT (7880; +1/+2 taken too), REDIS_PORT (6379), SIP_PORT
# (5060), SIP_RTP_PORTS ("10000-10999"), LIVEKIT_API_KEY (devkey), LIVEKIT_API_SECRET (32+
# characters; generated once into the state dir when unset), FIRSTWORD_CACHE_DIR (.cache).
# The bridge talks to the server only through Redis (the server needs a redis: section and a
# 32+ character secret, so no --dev), and must not look up an external IP offline:
# use_external_ip false and nat_1_to_1_ip 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIP_VERSION="1.8.0" # must match tools/sip/go.mod (checked below)
BIN="$ROOT/bin/livekit-sip"
LIVEKIT_PORT="${LIVEKIT_PORT:-7880}"
REDIS_PORT="${REDIS_PORT:-6379}"
SIP_PORT="${SIP_PORT:-5060}"
SIP_RTP_PORTS="${SIP_RTP_PORTS:-10000-10999}"
CACHE="${FIRSTWORD_CACHE_DIR:-$ROOT/.cache}"
STATE="$CACHE/sip-$SIP_PORT"

install_bridge() {
  "$ROOT/scripts/os-packages.sh" libopus-dev libopusfile-dev libsoxr-dev pkg-config
  grep -q "github.com/livekit/sip v$SIP_VERSION " "$ROOT/tools/sip/go.mod" || {
    echo "sip.sh: tools/sip/go.mod does not pin github.com/livekit/sip v$SIP_VERSION" >&2
    exit 1
  }
  # One build at a time (parallel test processes each start a bridge): the others wait here,
  # then find the binary current.
  mkdir -p "$ROOT/bin"
  exec 8>"$ROOT/bin/.livekit-sip.lock"
  flock -w 900 8
  # Current = built from this go.mod/go.sum (the stamp beside the binary holds their hash).
  local wanted
  wanted="$(cat "$ROOT/tools/sip/go.mod" "$ROOT/tools/sip/go.sum" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$BIN" && "$(cat "$BIN.stamp" 2>/dev/null)" == "$wanted" ]]; then
    exec 8>&-
    return 0
  fi
  [[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || { echo "sip.sh: Go is needed to build livekit-sip; install Go 1.26+" >&2; exit 1; }
  echo "building livekit-sip v$SIP_VERSION from its Go module (about a minute the first time)..."
  mkdir -p "$ROOT/bin"
  # `go install module@v1.8.0` is refused (the module is marked deprecated), so the pin lives in
  # a tools module: `go get -tool github.com/livekit/sip/cmd/livekit-sip@v1.8.0` wrote it.
  (cd "$ROOT/tools/sip" && go build -o "$BIN.tmp" \
    -ldflags "-X github.com/livekit/sip/version.Version=$SIP_VERSION" \
    github.com/livekit/sip/cmd/livekit-sip)
  mv "$BIN.tmp" "$BIN"
  echo "$wanted" >"$BIN.stamp"
  "$BIN" --version
  # Released here, not at the script's end: the bridge, Redis and the server it starts next
  # would inherit the open lock and hold it for their lifetime (another test process's
  # `sip.sh start` then waited for this one's stack to stop).
  exec 8>&-
}

api_secret() {
  if [[ -n "${LIVEKIT_API_SECRET:-}" ]]; then
    printf '%s' "$LIVEKIT_API_SECRET"
    return
  fi
  # A loopback-only secret, made once per cache dir (the server refuses one under 32 characters).
  mkdir -p "$CACHE"
  if [[ ! -s "$CACHE/sip-api-secret" ]]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$CACHE/sip-api-secret.tmp")
    printf 'firstword-%s' "$(cat "$CACHE/sip-api-secret.tmp")" >"$CACHE/sip-api-secret"
    rm -f "$CACHE/sip-api-secret.tmp"
  fi
  cat "$CACHE/sip-api-secret"
}

print_env() {
  echo "export LIVEKIT_URL=ws://127.0.0.1:$LIVEKIT_PORT"
  echo "export LIVEKIT_API_KEY=${LIVEKIT_API_KEY:-devkey}"
  echo "export LIVEKIT_API_SECRET=$(api_secret)"
  echo "export FIRSTWORD_SIP_ADDRESS=127.0.0.1:$SIP_PORT"
}

bridge_config() {
  cat <<EOF
api_key: ${LIVEKIT_API_KEY:-devkey}
api_secret: $(api_secret)
ws_url: ws://127.0.0.1:$LIVEKIT_PORT
redis:
  address: 127.0.0.1:$REDIS_PORT
sip_port: $SIP_PORT
rtp_port: $SIP_RTP_PORTS
use_external_ip: false
nat_1_to_1_ip: 127.0.0.1
listen_ip: 127.0.0.1
# Inbound calls are taken whatever the load; 1.0 also keeps a busy 2-core box from reporting the
# bridge unavailable (its health check trips at the default 0.9).
max_cpu_utilization: 1.0
logging:
  level: ${SIP_LOG_LEVEL:-info}
EOF
}

bridge_running() { [[ -f "$STATE/pid" ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; }

start_all() {
  install_bridge
  REDIS_PORT="$REDIS_PORT" "$ROOT/scripts/redis-server.sh" start
  LIVEKIT_REDIS="127.0.0.1:$REDIS_PORT" LIVEKIT_API_KEY="${LIVEKIT_API_KEY:-devkey}" \
    LIVEKIT_API_SECRET="$(api_secret)" LIVEKIT_PORT="$LIVEKIT_PORT" \
    "$ROOT/scripts/livekit-server.sh" start
  mkdir -p "$STATE"
  if bridge_running; then
    echo "livekit-sip already running (pid $(cat "$STATE/pid"))"
  else
    # The config holds the API secret: passed in the environment, not on the command line.
    SIP_CONFIG_BODY="$(bridge_config)" nohup "$BIN" >"$STATE/sip.log" 2>&1 &
    echo $! >"$STATE/pid"
    local ok=""
    for _ in $(seq 1 100); do
      if ! kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
        echo "livekit-sip exited at start; its log:" >&2
        tail -20 "$STATE/sip.log" >&2
        exit 1
      fi
      if grep -q "sip signaling listening\|service ready" "$STATE/sip.log" 2>/dev/null; then
        ok=1
        break
      fi
      sleep 0.1
    done
    [[ -n "$ok" ]] || { echo "livekit-sip did not get ready in 10 s; log: $STATE/sip.log" >&2; exit 1; }
    echo "livekit-sip v$SIP_VERSION on udp 127.0.0.1:$SIP_PORT, RTP $SIP_RTP_PORTS (log: $STATE/sip.log)"
  fi
  eval "$(print_env)"
  export LIVEKIT_URL LIVEKIT_API_KEY LIVEKIT_API_SECRET
  "$ROOT/.venv/bin/python" -m agent.sip.provision
}

stop_all() {
  if [[ -f "$STATE/pid" ]]; then
    kill "$(cat "$STATE/pid")" 2>/dev/null || true
    rm -f "$STATE/pid"
  fi
  LIVEKIT_PORT="$LIVEKIT_PORT" "$ROOT/scripts/livekit-server.sh" stop
  REDIS_PORT="$REDIS_PORT" "$ROOT/scripts/redis-server.sh" stop
}

case "${1:-}" in
  install) install_bridge ;;
  start) start_all ;;
  stop) stop_all ;;
  env) print_env ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
