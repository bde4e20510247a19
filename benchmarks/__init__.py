"""Benchmarks: one script per question, ``python -m benchmarks.<name>``; ratios in one run."""
