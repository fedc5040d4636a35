#!/usr/bin/env bash
# Run the project's pinned uv, installing it first if needed:  scripts/uv.sh lock | add | sync ...
# uv comes from its PyPI package (no other download), into a small tools venv under
# .cache/tools, apart from .venv so that `uv sync` of the project never removes it. uv is told
# to use this machine's Python 3.11 and never to download an interpreter.
set -euo pipefail

UV_VERSION="0.13.8"

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
[[ -n "$PYTHON" ]] || { echo "uv.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
# The interpreter itself, not a wrapper (pyenv shim), so that uv does not see it change.
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"

tools=".cache/tools"
uv="$tools/bin/uv"
if [[ "$("$uv" --version 2>/dev/null)" != "uv $UV_VERSION"* ]]; then
  echo "installing uv $UV_VERSION from PyPI into $tools" >&2
  [[ -x "$tools/bin/python" ]] || "$PYTHON" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

export UV_PYTHON="$PYTHON" UV_PYTHON_DOWNLOADS=never
exec "$uv" "$@"
