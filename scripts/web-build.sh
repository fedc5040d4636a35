#!/usr/bin/env bash
# Build the call page's and the front desk's scripts: livekit-client from npm (versions locked
# in web/package-lock.json), bundled with esbuild into agent/web/static/{call,desk}.js (not
# committed). Skipped when both bundles are newer than their sources and the lock.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/web"
out="$ROOT/agent/web/static/call.js"
desk="$ROOT/agent/web/static/desk.js"
if [[ -f "$out" && -f "$desk" && -z "$(find src package-lock.json package.json -newer "$out" 2>/dev/null)" \
  && -z "$(find src package-lock.json package.json -newer "$desk" 2>/dev/null)" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "web-build.sh: npm (Node.js 18+) is needed to build the call page" >&2; exit 1; }
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
npm run --silent build
echo "built $out $desk"
