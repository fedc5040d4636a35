"""The garbage collector's settings (agent/worker/stalls.py), each in a fresh interpreter: what is
frozen and the thresholds are process-wide, and the test process must keep its own."""

from __future__ import annotations

import json
import subprocess
import sys

from agent.settings import PROJECT_ROOT

_SCRIPT = """
import gc, json
from agent.worker import stalls

loaded = [[i] for i in range(5000)]  # what prewarm leaves behind (lists: tracked by the GC)
frozen_at_prewarm = stalls.tune_gc()
thresholds = gc.get_threshold()
later = [[i] for i in range(5000)]  # made by the first calls, lives on
busy = stalls.refreeze_if_idle(lambda: False)  # a call is still on: nothing happens
idle = stalls.refreeze_if_idle(lambda: True)
frozen_after_idle = gc.get_freeze_count()
again = stalls.refreeze_if_idle(lambda: True)  # within the interval: not again
print(json.dumps({
    "frozen_at_prewarm": frozen_at_prewarm, "thresholds": thresholds, "busy": busy,
    "idle": idle, "frozen_after_idle": frozen_after_idle, "again": again,
}))
"""


def test_prewarm_freezes_and_an_idle_worker_freezes_what_came_after() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["frozen_at_prewarm"] >= 5000
    assert result["thresholds"] == [7000, 10, 10]
    assert result["busy"] is False and result["idle"] is True and result["again"] is False
    # The objects made after prewarm are out of later collections too.
    assert result["frozen_after_idle"] >= result["frozen_at_prewarm"] + 5000
