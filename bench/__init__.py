"""Benchmarks run by `make bench` and `make load`; each writes its figures into bench/results.json."""
