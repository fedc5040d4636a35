"""What the end-to-end tests share: the server's address, starting workers, making calls."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.settings import PROJECT_ROOT

PORT = int(os.environ.get("FIRSTWORD_TEST_LIVEKIT_PORT", "7980"))
URL = f"ws://127.0.0.1:{PORT}"
ENV = {
    **os.environ,
    "LIVEKIT_URL": URL,
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "secret",
    "LIVEKIT_PORT": str(PORT),
    "FIRSTWORD_HTTP_HOST": "127.0.0.1",
    "FIRSTWORD_HTTP_PORT": "0",
    "FIRSTWORD_METRICS_PORT": "0",
    "FIRSTWORD_IDLE_PROCESSES": "1",
    # The tests read what was said from the worker's log.
    "FIRSTWORD_LOG_TRANSCRIPTS": "true",
    # No staff logins (a developer's own staff.json stays out of the tests); the desk tests
    # pass a file of their own.
    "FIRSTWORD_STAFF_FILE": "",
    # FIRSTWORD_CACHE_DIR: a temporary folder, set by conftest's `e2e_cache_dir` fixture.
}


# Rendered greetings and answers shared by the end-to-end workers of a run (both test
# processes, and the modules with caches of their own), so a text is rendered once rather
# than once per fresh cache (about a minute of the busy machine each time). The cache writes
# each file atomically, so workers in several processes can share it. Tests of the cache
# itself use folders of their own.
SHARED_AUDIO = PROJECT_ROOT / ".cache" / "test-audio"


def share_rendered_audio(cache_dir: Path) -> None:
    """Point `cache_dir`'s rendered-audio folder at SHARED_AUDIO."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    link = cache_dir / "greetings"
    if not link.exists():
        SHARED_AUDIO.mkdir(parents=True, exist_ok=True)
        link.symlink_to(SHARED_AUDIO, target_is_directory=True)


@contextmanager
def worker_process(
    log: Path, env: Mapping[str, str] | None = None, *, within_s: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """`python agent.py start`, registered with the test server; stopped on exit (unless the
    test already ended it, e.g. with kill -9)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "agent.py", "start"],
            cwd=PROJECT_ROOT,
            env={**ENV, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + within_s
        while '"registered worker"' not in log.read_text():
            assert proc.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"worker did not register in {within_s:.0f} s"
            time.sleep(0.3)
        yield proc
    finally:
        stop_process(proc, signal.SIGINT)


def stop_process(proc: subprocess.Popen[Any], sig: int, *, within_s: float = 30) -> None:
    """Signal a process that is still running, and kill it if it has not ended `within_s`."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running_worker(log: Path, env: Mapping[str, str] | None = None) -> Iterator[Path]:
    """A registered worker (see `worker_process`); yields its log."""
    with worker_process(log, env):
        yield log


def log_records(log: Path) -> list[dict[str, Any]]:
    """The worker's JSON log lines (other lines skipped)."""
    records = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def metrics_url(log: Path) -> str:
    """The worker's /metrics, from livekit-agents' log line (it binds all interfaces: host "")."""
    match = re.search(
        r"Prometheus metrics exposed at http://([^\s:/\"]*):(\d+)/metrics", log.read_text()
    )
    assert match, "the worker did not log its metrics address"
    return f"http://{match.group(1) or '127.0.0.1'}:{match.group(2)}/metrics"


def health_url(log: Path, path: str = "/ready") -> str:
    """The worker's health server (FIRSTWORD_HTTP_PORT), from livekit-agents' log line."""
    match = re.search(r"HTTP server listening on ([^\s:\"]*):(\d+)", log.read_text())
    assert match, "the worker did not log its health server's address"
    return f"http://{match.group(1) or '127.0.0.1'}:{match.group(2)}{path}"
