#!/usr/bin/env bash
# How soon the desk can see a handoff: the request's attribute against the caller's question
# and the agent's handoff phrase.   scripts/bench-handoff.sh [--calls 10]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.handoff_notice "$@"
