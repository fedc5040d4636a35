#!/usr/bin/env bash
# Answer latency on the cloud stand-ins with the response/voice caches off and on.
#   scripts/bench-cloud-cache.sh [--calls 3] [--stt 0.3] [--llm 0.4] [--tts 0.15] [--modes miss,miss-voice,hit]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.cloud_cache "$@"
