"""Benchmarks: figures printed by commands, not asserted by tests."""
