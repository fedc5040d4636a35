#!/usr/bin/env bash
# Time to first word from a real browser (headless Chromium, Playwright) and from the caller
# simulator, pre-dispatched vs dispatched on join, in one run on the local LiveKit server.
# Needs the call page's bundle (scripts/web-build.sh) and Chromium (scripts/os-packages.sh).
#   scripts/bench-web.sh [--calls 10] [--lead 1.0] [--account harbor-dental]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
scripts/os-packages.sh chromium
source scripts/local-server-env.sh
trap stop_local_server EXIT
.venv/bin/python -m benchmarks.ttfw_web "$@"
