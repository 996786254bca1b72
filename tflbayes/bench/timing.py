"""Latency measured side by side: interleaved rounds (A B A B ...) so machine noise hits all alike.

The one timer of the project: the bench suite, the demo, the student search and the scripts in
``benchmarks/`` all time through :func:`interleaved`.
"""
from __future__ import annotations

import random
import time
from typing import Callable, Dict, Optional

import numpy as np

__all__ = ["interleaved", "summarize", "SelfTimed"]


class SelfTimed:
    """Wrap a callable that measures itself and returns the seconds that count (e.g. ``invoke()``
    alone, with the input set before its clock starts); :func:`interleaved` records that value."""

    def __init__(self, fn: Callable[[], float]):
        self.fn = fn

    def __call__(self) -> float:
        return float(self.fn())


def interleaved(fns: Dict[str, Callable[[], object]], rounds: int = 200, warmup: int = 20,
                shuffle_seed: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Time each zero-argument callable ``rounds`` times, interleaved; returns seconds per call.

    Every round calls each callable once, after ``warmup`` untimed rounds. The order within a round
    is the order of ``fns``, or, with ``shuffle_seed``, shuffled anew every round (warm-up rounds
    included) by ``random.Random(shuffle_seed)``, so that no callable always follows the same
    other one (a warm-cache bias). A :class:`SelfTimed` callable reports its own seconds.
    """
    names = list(fns)
    rng = None if shuffle_seed is None else random.Random(shuffle_seed)
    out = {k: np.empty(rounds) for k in names}
    for r in range(warmup + rounds):
        if rng is not None:
            rng.shuffle(names)
        for k in names:
            fn = fns[k]
            if isinstance(fn, SelfTimed):
                dt = fn()
            else:
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
            if r >= warmup:
                out[k][r - warmup] = dt
    return out


def summarize(samples: np.ndarray) -> dict:
    """Median and p90 in milliseconds."""
    return {"median_ms": float(np.median(samples) * 1e3), "p90_ms": float(np.percentile(samples, 90) * 1e3),
            "n": int(len(samples))}
