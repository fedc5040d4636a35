"""The C allocator settings: arenas limited, free pages given back (glibc only)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.worker import native_memory

_FREED_IN_THREADS = """
import threading, resource
from agent.worker import native_memory

def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

pins = []

def churn() -> None:
    # Many small blocks (below glibc's mmap threshold) in this thread's arena, then freed,
    # with one block allocated after them kept alive: it holds the heap's top, so free()
    # cannot hand the pages back by itself (as a call's long-lived objects do); only a trim can.
    blocks = [bytearray(4000) for _ in range(20000)]
    pins.append(bytearray(4000))
    del blocks

threads = [threading.Thread(target=churn) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
before = rss_mb()
native_memory.give_back()
print(round(before - rss_mb()))
"""


@pytest.mark.skipif(native_memory._LIBC is None, reason="not glibc")
def test_free_pages_of_finished_threads_go_back_to_the_system() -> None:
    # A fresh interpreter: this one's heap is whatever earlier tests left.
    run = subprocess.run(
        [sys.executable, "-c", _FREED_IN_THREADS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # 4 threads x 20000 x 4 kB freed below a live block: without the trim glibc keeps it.
    assert int(run.stdout) > 100, run.stdout + run.stderr


@pytest.mark.skipif(native_memory._LIBC is None, reason="not glibc")
def test_arena_limit() -> None:
    assert native_memory.limit_arenas(0) is False  # 0: glibc's default, nothing set
    assert native_memory.limit_arenas(8) is True
