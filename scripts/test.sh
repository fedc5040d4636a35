#!/usr/bin/env bash
# The test command: set up (idempotent), lint, and run every test, end to end included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# `scripts/test.sh --fast`: the tier to run while you work (no LiveKit server, no browser,
# no set-up once .venv exists): lint and every test not marked e2e or slow. CI runs everything.
fast=0
if [[ "${1:-}" == "--fast" ]]; then
  fast=1
  shift
fi
if [[ $fast == 1 && -x .venv/bin/python ]]; then
  : # set up already; a changed uv.lock is the full run's business
else
  scripts/setup.sh
fi
if [[ $fast == 1 ]]; then
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  set +e
  .venv/bin/python -m pytest -m "not e2e and not slow" -q "$@"
  status=$?
  set -e
  [[ $status == 5 ]] && { echo "test.sh: pytest collected no tests; that is a failure" >&2; exit 1; }
  exit $status
fi
# The browser tests drive Debian's Chromium (Playwright's own browser download is not used);
# only the tests need it, so the demo's set-up does not install it.
scripts/os-packages.sh chromium

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The container image's recipe (hadolint is pinned in uv.lock's dev group).
.venv/bin/hadolint Dockerfile

# Two test processes (pytest-xdist), each with its own LiveKit server and ports
# (tests/conftest.py): most of an end-to-end test is waiting on real-time audio, so one
# process left the 2-core machine ~65 % idle. A module's tests stay in one process; the long
# end-to-end tests are handed out first. The tests marked `serial` (bursts of callers with a
# time bound: beside another test on 2 cores, two of six callers in a burst went unheard)
# then run in one process, alone. Extra arguments go to both phases (a `-m` of your own
# replaces the phases' own: use it with FIRSTWORD_TEST_PROCESSES=0, which runs everything in
# one process). Each phase ends with its slowest tests (--durations), where the suite's time goes.
processes="${FIRSTWORD_TEST_PROCESSES:-2}"
# The container images (tests/test_e2e_image.py, serial phase) build in the background at the
# lowest CPU and I/O priority while the two-process phase runs: that phase leaves about half
# of the machine idle (it waits on real-time audio), so the build's minutes cost the run
# little. The test waits for it and reads its log and exit status from this folder. Only for
# the whole suite: a run with arguments (a file, -k) leaves the test to build if it is chosen.
if [[ $# == 0 ]]; then
  image_build="$(mktemp -d -t firstword-image-build.XXXXXX)"
  export FIRSTWORD_TEST_IMAGE_BUILD="$image_build"
  ( nice -n 19 ionice -c 2 -n 7 bash scripts/image-build.sh --local-bases >"$image_build/log" 2>&1
    echo $? >"$image_build/rc" ) &
  image_pid=$!
  trap 'kill "$image_pid" 2>/dev/null || true' EXIT
fi
set +e
if [[ "$processes" == 0 ]]; then
  .venv/bin/python -m pytest "$@"
  parallel_status=$?
  serial_status=5
else
  .venv/bin/python -m pytest -n "$processes" --dist loadscope -m "not serial" --durations=15 "$@"
  parallel_status=$?
  .venv/bin/python -m pytest -m serial --durations=5 "$@"
  serial_status=$?
fi
set -e
# Exit 5 is "no tests collected": fine for one phase (a file with no serial test), a failure
# when neither phase ran a test.
if [[ $parallel_status == 5 && $serial_status == 5 ]]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
[[ $parallel_status != 0 && $parallel_status != 5 ]] && exit $parallel_status
[[ $serial_status != 0 && $serial_status != 5 ]] && exit $serial_status
exit 0
