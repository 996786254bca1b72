"""Benchmarks: latency, size and quality side by side (grows with issue 7)."""
