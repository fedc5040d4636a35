"""The benchmarks' percentiles: no p99 from fewer than 20 samples (it would be the max)."""

from __future__ import annotations

from benchmarks.stats import P99_MIN_SAMPLES, percentiles, shown


def test_a_p99_needs_twenty_samples_and_the_max_is_always_given() -> None:
    few = percentiles([float(v) for v in range(1, P99_MIN_SAMPLES)])
    assert few["n"] == P99_MIN_SAMPLES - 1 and few["p99"] is None
    assert few["max"] == P99_MIN_SAMPLES - 1 and few["p50"] == 10
    enough = percentiles([float(v) for v in range(1, P99_MIN_SAMPLES + 1)])
    assert enough["p99"] is not None and enough["p90"] <= enough["p99"] <= enough["max"]


def test_no_values_give_no_figures() -> None:
    assert percentiles([]) == {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    assert shown(None, 4) == "   -" and shown(12.4) == "12"


def test_digits_keep_fractions() -> None:
    assert percentiles([1.24, 1.26], digits=2)["p50"] == 1.25
