#!/usr/bin/env bash
# Set up a fresh machine: .venv with exactly the packages of uv.lock (engines and their
# weights included, dev tools too) and the LiveKit server binary. Safe to run again: finished
# steps are skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Sync only when the lock, the project file or this script changed.
stamp=".venv/.firstword-deps"
wanted="$(sha256sum uv.lock pyproject.toml scripts/setup.sh scripts/uv.sh | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
  echo "installing Python packages from uv.lock (first time: a few minutes)"
  # Checked first (sync would replace .venv before it notices): uv.lock must match
  # pyproject.toml, i.e. nobody edited the dependencies without re-locking.
  if ! scripts/uv.sh lock --check --quiet; then
    echo "setup.sh: uv.lock is out of date with pyproject.toml; run 'scripts/uv.sh lock'," \
      "review the change to uv.lock and commit both files" >&2
    exit 1
  fi
  # Exactly the packages of uv.lock (dev group included); anything else in .venv is removed.
  scripts/uv.sh sync --locked --quiet
  echo "$wanted" >"$stamp"
fi

scripts/livekit-server.sh install
# The call page's script (livekit-client from npm, bundled): python -m agent.web serves it.
scripts/web-build.sh
echo "setup done"
