#!/usr/bin/env bash
# Turn-taking: false cut-offs and the caller's wait per strategy, on the labelled set.
#   scripts/bench-turns.sh [--voices hibari,piper] [--out DIR] [--reuse]
# Offline (no server): see benchmarks/turns.py. Writes DIR/turns.json and DIR/turns.png
# (default .cache/turn-bench).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# Smart Turn v3.2 ships inside the pipecat-ai wheel, which cannot share .venv with
# livekit-agents (it pins protobuf < 7): the wheel alone, no dependencies, beside it.
if [[ ! -f .cache/pipecat/pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx ]]; then
  scripts/uv.sh pip install --quiet --no-deps --target .cache/pipecat pipecat-ai==1.14.0
fi
exec .venv/bin/python -m benchmarks.turns "$@"
