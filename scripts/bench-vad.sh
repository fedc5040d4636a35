#!/usr/bin/env bash
# How well the VAD finds the caller's speech, per setting, on the labelled turn set, after a
# real LiveKit room's transport (splits inside speech, late starts, false starts, end delay).
#   scripts/bench-vad.sh [--voices hibari,piper] [--configs NAME:K=V,...] [--offline] [--out DIR]
# See benchmarks/vad_accuracy.py. Starts the local LiveKit server unless one answers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.vad_accuracy "$@"
