"""Benchmarks of the campaign engine against same-run baselines (python -m bench)."""
