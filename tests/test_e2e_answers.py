"""End to end: answers play from the pre-rendered cache and each turn is measured."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent.call.turns import STAGES
from agent.settings import PROJECT_ROOT
from tests.e2e_support import ENV, log_records, metrics_url, running_worker

pytestmark = pytest.mark.e2e


def _metrics(log: Path) -> str:
    with urllib.request.urlopen(metrics_url(log), timeout=5) as response:
        return str(response.read().decode())


def _sum(metrics: str, pattern: str) -> float:
    """Sum of the samples whose name and labels match `pattern` (0 when none yet)."""
    return sum(float(v) for v in re.findall(rf"(?m)^{pattern} (\S+)$", metrics))


def test_answers_are_cached_and_every_turn_is_measured(livekit_server: str, tmp_path: Path) -> None:
    with running_worker(tmp_path / "worker.log") as log:
        # Rendered in the background after prewarm (from a cold cache: a while).
        deadline = time.monotonic() + 180
        while not any(r.get("message") == "answers pre-rendered" for r in log_records(log)):
            assert time.monotonic() < deadline, "answers not pre-rendered in 180 s"
            time.sleep(0.5)
        before = _metrics(log)
        out = tmp_path / "call.json"
        subprocess.run(
            [
                *(sys.executable, "-m", "caller", "--json", str(out)),
                *("--account", "harbor-dental"),
                *("--question", "How much does a teeth cleaning cost?"),
                *("--question", "Do you sell concert tickets?"),
            ],
            cwd=PROJECT_ROOT,
            env=ENV,
            capture_output=True,
            timeout=240,
        )
        report = json.loads(out.read_text())["calls"][0]
        assert all(t["latency_s"] is not None for t in report["turns"]), report["turns"]
        for _ in range(50):
            turns = [r for r in log_records(log) if "turn_ms" in r]
            if len(turns) >= 2:
                break
            time.sleep(0.1)
        after = _metrics(log)

    assert len(turns) >= 2, "no per-turn log line"
    for turn in turns:
        marks = turn["turn_ms"]
        assert list(marks) == list(STAGES)
        values = list(marks.values())
        assert values == sorted(values), marks
    for pattern in (
        r'firstword_answer_latency_seconds_count\{account="harbor-dental"\}',
        r'firstword_turn_stage_seconds_count\{stage="first_audio"\}',
        r'firstword_answer_cache_total\{result="hit"\}',
    ):
        assert _sum(after, pattern) >= _sum(before, pattern) + 2, pattern
