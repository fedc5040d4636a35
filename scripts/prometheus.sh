#!/usr/bin/env bash
# Run a real Prometheus (Debian's package) that scrapes firstword workers, with the shipped
# recording and alert rules.
#   scripts/prometheus.sh start    start it on 127.0.0.1:$PROMETHEUS_PORT (default 9090) unless it answers already
#   scripts/prometheus.sh stop     stop the Prometheus this script started on that port
#   scripts/prometheus.sh check    promtool check config + rules, and the rules' unit tests
# PROMETHEUS_CONFIG picks another scrape config (default config/prometheus/prometheus.yml);
# its data lives in .cache/prometheus-server-$PORT (FIRSTWORD_CACHE_DIR moves .cache).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${PROMETHEUS_PORT:-9090}"
CONFIG="${PROMETHEUS_CONFIG:-$ROOT/config/prometheus/prometheus.yml}"
STATE="${FIRSTWORD_CACHE_DIR:-$ROOT/.cache}/prometheus-server-$PORT"

"$ROOT/scripts/os-packages.sh" prometheus

answers() { curl -fsS --max-time 1 "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1; }

start_prometheus() {
  if answers; then
    echo "prometheus already answers on 127.0.0.1:$PORT"
    return 0
  fi
  promtool check config "$CONFIG" >/dev/null
  mkdir -p "$STATE/data"
  # --web.enable-lifecycle: `curl -X POST .../-/reload` picks up an edited config or rules.
  nohup prometheus --config.file="$CONFIG" --storage.tsdb.path="$STATE/data" \
    --web.listen-address="127.0.0.1:$PORT" --web.enable-lifecycle \
    >"$STATE/prometheus.log" 2>&1 &
  echo $! >"$STATE/pid"
  for _ in $(seq 1 150); do
    if answers; then
      echo "prometheus started on http://127.0.0.1:$PORT (config: $CONFIG, log: $STATE/prometheus.log)"
      return 0
    fi
    if ! kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
      echo "prometheus exited at start; its log:" >&2
      tail -20 "$STATE/prometheus.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "prometheus did not answer on port $PORT within 30 s; log: $STATE/prometheus.log" >&2
  exit 1
}

stop_prometheus() {
  if [[ -f "$STATE/pid" ]]; then
    local pid
    pid="$(cat "$STATE/pid")"
    kill "$pid" 2>/dev/null || true
    # Wait for it to flush its head block, so a restart on the same data dir is clean.
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -f "$STATE/pid"
  fi
}

check_prometheus() {
  local dir="$ROOT/config/prometheus"
  promtool check config "$dir/prometheus.yml"
  promtool check rules "$dir/rules.yml" "$dir/alerts.yml"
  promtool test rules "$dir/rules_test.yml"
}

case "${1:-}" in
  start) start_prometheus ;;
  stop) stop_prometheus ;;
  check) check_prometheus ;;
  *) echo "usage: $0 start|stop|check" >&2; exit 2 ;;
esac
