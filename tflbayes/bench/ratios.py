"""Raw LiteRT timings for the headline ratios (no Python pipeline around the interpreter)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from tflbayes.bench.timing import interleaved

__all__ = ["Call", "call_ratio", "cold_load_ratio"]


class Call:
    """One ``.tflite``: set the input, invoke, read every output (what an app does per input)."""

    def __init__(self, path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=str(path), num_threads=num_threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.outs = [d["index"] for d in self.it.get_output_details()]
        rng = np.random.default_rng(0)
        if self.inp["dtype"] == np.float32:
            self.x = rng.random(self.inp["shape"]).astype(np.float32)
        else:
            self.x = rng.integers(-128, 127, self.inp["shape"]).astype(self.inp["dtype"])

    def __call__(self):
        self.it.set_tensor(self.inp["index"], self.x)
        self.it.invoke()
        return [self.it.get_tensor(i) for i in self.outs]


def call_ratio(one: Path, many: Sequence[Path], repeat_many: int = 1, rounds: int = 200, warmup: int = 20) -> dict:
    """Median time of one call of ``one`` over the time of calling every file of ``many``
    (each ``repeat_many`` times) in sequence, interleaved."""
    a = Call(one)
    bs = [Call(p) for p in many]

    def seq():
        for b in bs:
            for _ in range(repeat_many):
                b()

    t = interleaved({"one": a, "many": seq}, rounds=rounds, warmup=warmup)
    one_ms, many_ms = float(np.median(t["one"]) * 1e3), float(np.median(t["many"]) * 1e3)
    return {"one_ms": one_ms, "many_ms": many_ms, "ratio": one_ms / many_ms}


def cold_load_ratio(one: Path, many: Sequence[Path], repeats: int = 15) -> dict:
    """Load + allocate + first call of ``one`` over the same for every file of ``many``, interleaved."""
    t_one, t_many = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        Call(one)()
        t_one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for p in many:
            Call(p)()
        t_many.append(time.perf_counter() - t0)
    one_ms, many_ms = float(np.median(t_one) * 1e3), float(np.median(t_many) * 1e3)
    return {"one_ms": one_ms, "many_ms": many_ms, "ratio": one_ms / many_ms}
