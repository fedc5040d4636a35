"""Objects built once per worker process and shared by every call it runs.

With the thread executor, each idle "process" is a thread of the worker and runs prewarm
itself; this makes the second and later prewarms reuse what the first one loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_objects: dict[str, Any] = {}
_lock = threading.Lock()


def process_wide(name: str, build: Callable[[], T]) -> T:
    """The object registered under `name`, built by the first caller (others wait)."""
    with _lock:
        if name not in _objects:
            _objects[name] = build()
        return _objects[name]
