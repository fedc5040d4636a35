"""The process executor's counts and gauges in prometheus_client's multiprocess files.

No engines, no server: a real child process stands in for a job process (it writes its
`livesum` gauge files as a job process does), and this test process plays the worker's main
process (its metrics were made before PROMETHEUS_MULTIPROC_DIR was set, as in the worker,
where the framework sets it inside `AgentServer.run()`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, multiprocess, values

from agent.settings import PROJECT_ROOT
from agent.worker import capacity

JOB = (
    "from agent import metrics\n"
    "metrics.ACTIVE_CALLS.inc()\n"  # one live call in this 'job process'
    "print('ready', flush=True)\n"
    "import time; time.sleep(60)\n"
)


def _scrape(directory: Path) -> dict[str, float]:
    """What the framework's /metrics serves with the process executor: the files only."""
    registry = CollectorRegistry(auto_describe=True)
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return {
        sample.name: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name.startswith("firstword_") and not sample.labels
    }


@pytest.fixture
def job_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[str]]:
    assert values.ValueClass is values.MutexValue, "this test process must be a 'main process'"
    proc = subprocess.Popen(
        [sys.executable, "-c", JOB],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_main_process_gauges_are_served_and_a_killed_job_stops_counting(
    tmp_path: Path, job_process: subprocess.Popen[str]
) -> None:
    assert capacity.current_counts() == capacity.CallCounts(live=1, held=0)
    load = capacity.worker_load(max_calls=4, hold_slots=4)
    assert load == pytest.approx(0.125)
    scraped = _scrape(tmp_path)
    # Set in this (main) process, yet in the scrape that reads only files.
    assert scraped["firstword_worker_load"] == pytest.approx(0.125)
    assert scraped["firstword_capacity_calls"] == 4
    assert scraped["firstword_active_calls"] == 1

    # kill -9 of the job process mid-call: its gauge file still says one live call...
    job_process.send_signal(signal.SIGKILL)
    job_process.wait()
    assert list(tmp_path.glob(f"gauge_livesum_{job_process.pid}.db"))
    # ...until the next load reading, which drops the files of processes that are gone.
    assert capacity.worker_load(max_calls=4, hold_slots=4) == 0.0
    assert not list(tmp_path.glob(f"gauge_livesum_{job_process.pid}.db"))
    assert capacity.current_counts() == capacity.CallCounts(live=0, held=0)
    assert _scrape(tmp_path)["firstword_worker_load"] == 0.0


def test_a_job_process_file_not_sized_yet_is_skipped_not_fatal(
    tmp_path: Path, job_process: subprocess.Popen[str]
) -> None:
    """A starting job process creates its gauge file before sizing it: 0 bytes, which
    prometheus_client's reader fails on (struct.error). That failed the worker's load reading
    in CI (2026-12-07, process executor); the process holds no call yet, so it counts as none."""
    (tmp_path / "gauge_livesum_999999.db").touch()
    assert capacity.current_counts() == capacity.CallCounts(live=1, held=0)
    assert capacity.worker_load(max_calls=4, hold_slots=4) == pytest.approx(0.125)


def test_folders_of_dead_workers_are_removed_at_start(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    dead_pid = int(gone.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid in (dead_pid, alive.pid, os.getpid()):
            (tmp_path / str(pid)).mkdir()
            (tmp_path / str(pid) / "gauge_livesum_1.db").write_bytes(b"")
        (tmp_path / "not-a-pid").mkdir()
        assert capacity.clear_stale_metric_dirs(tmp_path) == [tmp_path / str(dead_pid)]
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {str(alive.pid), str(os.getpid()), "not-a-pid"}
    finally:
        alive.kill()
        alive.wait()
