"""Latency measured side by side: interleaved rounds (A B A B ...) so machine noise hits all alike."""
from __future__ import annotations

import time
from typing import Callable, Dict

import numpy as np

__all__ = ["interleaved", "summarize"]


def interleaved(fns: Dict[str, Callable[[], object]], rounds: int = 200, warmup: int = 20) -> Dict[str, np.ndarray]:
    """Time each zero-argument callable ``rounds`` times, interleaved; returns seconds per call."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {k: np.empty(rounds) for k in fns}
    for r in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[k][r] = time.perf_counter() - t0
    return out


def summarize(samples: np.ndarray) -> dict:
    """Median and p90 in milliseconds."""
    return {"median_ms": float(np.median(samples) * 1e3), "p90_ms": float(np.percentile(samples, 90) * 1e3),
            "n": int(len(samples))}
