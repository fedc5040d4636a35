"""`python -m benchmarks.uvloop_worker start`: the worker with uvloop on every event loop.

For the answer benchmark's `after-uvloop` mode only (issue 10 asked for uvloop to be
measured before it is adopted). livekit-agents makes its loops with
`asyncio.new_event_loop()` (the CLI's, and each job thread's in `ipc/proc_client.py`), so
setting uvloop's policy before the CLI starts puts every loop of the worker on uvloop.
uvloop is not a dependency of the project: put it on PYTHONPATH for this mode, e.g.
`pip install --target .cache/uvloop uvloop==0.21.0` and `PYTHONPATH=.cache/uvloop`.
"""

from __future__ import annotations

import asyncio
import runpy
import sys

from agent.settings import PROJECT_ROOT

try:
    import uvloop
except ImportError as error:  # pragma: no cover - depends on the environment
    raise SystemExit(
        "benchmarks.uvloop_worker: uvloop is not importable; install it outside the venv, e.g. "
        "`pip install --target .cache/uvloop uvloop==0.21.0`, and set PYTHONPATH=.cache/uvloop"
    ) from error

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    agent = PROJECT_ROOT / "agent.py"
    sys.argv = [str(agent), *sys.argv[1:]]
    runpy.run_path(str(agent), run_name="__main__")
