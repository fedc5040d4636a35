"""Percentiles as the benchmarks print them.

A p99 read from fewer than 20 samples is the maximum by another name, so it is left out
(None, printed "-") rather than shown as a figure it is not; the max is always given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The fewest samples a p99 is reported from.
P99_MIN_SAMPLES = 20


def percentiles(values: list[float], *, digits: int = 0) -> dict[str, Any]:
    """n, p50, p90, p99 (None under P99_MIN_SAMPLES) and max; all None without values."""
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=float)

    def at(q: float) -> float | int:
        value = round(float(np.percentile(arr, q)), digits)
        return int(value) if digits == 0 else value

    return {
        "n": len(values),
        "p50": at(50),
        "p90": at(90),
        "p99": at(99) if len(values) >= P99_MIN_SAMPLES else None,
        "max": at(100),
    }


def shown(value: float | None, width: int = 0) -> str:
    """A figure for a table: "-" where there is none."""
    text = "-" if value is None else f"{value:.0f}"
    return text.rjust(width)
