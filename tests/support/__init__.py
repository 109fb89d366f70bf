"""Helpers shared by the tests and the benchmarks: model builders and the brute-force oracle."""
