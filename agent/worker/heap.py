"""Python heap measurement for sizing a worker (FIRSTWORD_TRACEMALLOC=1; off by default).

The capacity benchmark (`benchmarks/capacity.py`) wants the Python heap a call adds, next to
the RSS slope: RSS also holds the engines' native memory (ONNX, CTranslate2, WebRTC), which
tracemalloc cannot see, and allocators keep freed pages. With the setting on, each worker
process (the worker with the thread executor, every job process with the process executor)
starts tracemalloc at prewarm and a daemon thread copies the traced size into the
`firstword_python_heap_bytes` gauge twice a second (a `livesum` gauge: with job processes the
scrape sums them). Each time the heap has grown 8 MB since, it logs the files holding the
most of it ("python heap by file"), which is how the benchmark's per-call heap is explained.
With it off, nothing starts: no tracing cost, no thread.

tracemalloc slows every Python allocation (a hash-table update per block), so the benchmark
measures latency with it off and the heap in a separate pass with it on.
"""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc

from .. import metrics

logger = logging.getLogger("firstword.heap")

_SAMPLE_EVERY_S = 0.5
# Log the heap by file each time it has grown this much since the last log.
_LOG_STEP_BYTES = 8 * 1024 * 1024
_started = threading.Event()


def start_tracing() -> bool:
    """Start tracemalloc and the gauge sampler in this process (once); True if it started now."""
    if _started.is_set():
        return False
    _started.set()
    # One frame per allocation: the size is what we want, not where it came from, and more
    # frames cost more per allocation.
    tracemalloc.start(1)

    def sample() -> None:
        logged = 0
        while True:
            current, _peak = tracemalloc.get_traced_memory()
            metrics.PYTHON_HEAP.set(current)
            if current - logged >= _LOG_STEP_BYTES:  # a new high: where the heap went
                logged = current
                log_top_files()
            time.sleep(_SAMPLE_EVERY_S)

    threading.Thread(target=sample, name="firstword-heap", daemon=True).start()
    logger.info("tracemalloc on: firstword_python_heap_bytes is this process's Python heap")
    return True


def log_top_files(limit: int = 12) -> None:
    """Log the files that hold the most traced memory (one snapshot; tracing only)."""
    if not tracemalloc.is_tracing():
        return
    stats = tracemalloc.take_snapshot().statistics("filename")
    logger.info(
        "python heap by file",
        extra={
            "traced_mb": round(sum(s.size for s in stats) / 1e6, 1),
            "top_files_mb": {
                str(s.traceback[0].filename): round(s.size / 1e6, 2) for s in stats[:limit]
            },
        },
    )
