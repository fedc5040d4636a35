# Sourced by demo.sh and bench.sh: LiveKit settings for the local dev server, started here
# unless one already answers on $LIVEKIT_PORT. Call `stop_local_server` on exit.
export LIVEKIT_PORT="${LIVEKIT_PORT:-7880}"
export LIVEKIT_URL="ws://127.0.0.1:$LIVEKIT_PORT" LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
mkdir -p .cache
_started_local_server=0
if ! curl -fsS --max-time 1 "http://127.0.0.1:$LIVEKIT_PORT/" >/dev/null 2>&1; then
  scripts/livekit-server.sh start
  _started_local_server=1
fi

stop_local_server() {
  if [[ $_started_local_server == 1 ]]; then scripts/livekit-server.sh stop; fi
}
