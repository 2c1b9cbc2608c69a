"""Helpers shared by the test suite and the benchmarks (``bench/`` imports them from here)."""
