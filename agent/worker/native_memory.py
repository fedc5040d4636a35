"""The C allocator's share of a worker's memory: glibc malloc arenas, and giving back.

A call's RSS is mostly native (WebRTC, ONNX Runtime, CTranslate2 and the buffers Python hands
them), allocated by glibc's malloc. glibc gives each thread that meets contention an arena
of its own, up to 8 per core, and an arena keeps the pages its blocks were freed from. With
the thread executor every call runs on its own threads, so calls spread over many arenas,
each holding its high-water mark after the call ends (README, "Memory per call").

- `limit_arenas(n)`: at most `n` arenas from now on (`FIRSTWORD_MALLOC_ARENAS`; 0 leaves
  glibc's default). The environment variable MALLOC_ARENA_MAX does the same, but glibc reads
  it only when the process starts; `mallopt(M_ARENA_MAX)` applies to arenas created later,
  so the worker can set it itself, before any call's thread exists.
- `give_back()`: `malloc_trim(0)`, which returns every arena's free pages to the system;
  run after each call (`FIRSTWORD_MALLOC_TRIM`), off the event loop.

Neither exists outside glibc (musl, macOS): there both report False and change nothing.
There is no Python binding for either call, so they go through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger("firstword.memory")

# glibc's <malloc.h>
_M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


_LIBC = _libc()


def limit_arenas(count: int) -> bool:
    """At most `count` malloc arenas for threads created from now on; False if unsupported."""
    if count <= 0 or _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(count)))
    if not ok:
        logger.warning("mallopt(M_ARENA_MAX, %d) was refused; glibc's default stays", count)
    return ok


def give_back() -> bool:
    """Return free heap pages to the system (blocking: call it in a thread); True if any."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(ctypes.c_size_t(0)))
