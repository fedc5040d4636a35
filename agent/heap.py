"""Python heap measurement for sizing a worker (FIRSTWORD_TRACEMALLOC=1; off by default).

The capacity benchmark (`benchmarks/capacity.py`) wants the Python heap a call adds, next to
the RSS slope: RSS also holds the engines' native memory (ONNX, CTranslate2, WebRTC), which
tracemalloc cannot see, and allocators keep freed pages. With the setting on, each worker
process (the worker with the thread executor, every job process with the process executor)
starts tracemalloc at prewarm and a daemon thread copies the traced size into the
`firstword_python_heap_bytes` gauge twice a second (a `livesum` gauge: with job processes the
scrape sums them). With it off, nothing starts: no tracing cost, no thread.

tracemalloc slows every Python allocation (a hash-table update per block), so the benchmark
measures latency with it off and the heap in a separate pass with it on.
"""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc

from . import metrics

logger = logging.getLogger("firstword.heap")

_SAMPLE_EVERY_S = 0.5
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
        while True:
            current, _peak = tracemalloc.get_traced_memory()
            metrics.PYTHON_HEAP.set(current)
            time.sleep(_SAMPLE_EVERY_S)

    threading.Thread(target=sample, name="firstword-heap", daemon=True).start()
    logger.info("tracemalloc on: firstword_python_heap_bytes is this process's Python heap")
    return True


def traced_bytes() -> int | None:
    """The Python heap traced now, or None when tracing is off."""
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
