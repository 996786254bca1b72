"""Measure bundles side by side: latency, cold load, size, peak memory and every quality facet."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from tflbayes.bench.timing import interleaved, summarize
from tflbayes.errors import InvalidInputError

__all__ = ["measure_bundles", "save_results", "peak_memory_mb", "QUALITY_KEYS"]

QUALITY_KEYS = ("accuracy", "nll", "brier", "ece", "misclassification_auroc", "ood_auroc_total",
                "ood_auroc_epistemic")

# VmHWM (this process image's peak RSS), not getrusage's ru_maxrss: Linux carries ru_maxrss across
# exec, so a child of a big parent would report the parent's peak.
_MEMORY_SCRIPT = """
import sys, numpy as np
from tflbayes.runtime import load_bundle
path = sys.argv[1]
if path != "-":
    b = load_bundle(path, num_threads=1)
    b.run(np.zeros((1, *b.input_shape), np.float32))
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(int(hwm.split()[1]) / 1024.0)
"""


def peak_memory_mb(path=None) -> float:
    """Peak resident set (MiB) of a fresh process that loads the bundle and runs one input.

    ``path=None`` measures the same process without a bundle (the interpreter + numpy baseline).
    """
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(path) if path else "-"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if out.returncode != 0:
        raise RuntimeError(f"memory probe failed for {path}: {out.stderr.strip()[-500:]}")
    return float(out.stdout.strip().splitlines()[-1])


def _sizes(bundle) -> dict:
    raw = gz = 0
    for f in bundle.files:
        data = (bundle.path / f).read_bytes()
        raw += len(data)
        gz += len(gzip.compress(data, 9))
    return {"bytes": raw, "gzip_bytes": gz}


def _cold_load(paths: Dict[str, Path], x1, repeats: int) -> dict:
    """Seconds from nothing to the first answer (load + validate + one invoke), interleaved."""
    from tflbayes.runtime import load_bundle

    times = {k: [] for k in paths}
    for _ in range(repeats):
        for k, p in paths.items():
            t0 = time.perf_counter()
            load_bundle(p, num_threads=1).run(x1)
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1e3) for k, v in times.items()}


def measure_bundles(bundles: Dict[str, os.PathLike], x_test, y_test, x_ood=None, *, baseline: Optional[str] = None,
                    rounds: int = 200, warmup: int = 20, cold_repeats: int = 5, memory: bool = True,
                    plots_dir=None) -> dict:
    """Measure every bundle on the LiteRT interpreter, side by side.

    Args:
        bundles: name -> bundle folder.
        x_test, y_test: in-distribution test data; ``x_ood``: OOD inputs (optional).
        baseline: the name ratios are reported against (default: the first).
        rounds, warmup: batch-1 invokes per configuration, interleaved A B A B ... (>= 200 after
            warm-up is the standard), with 1 thread and with all cores.
        cold_repeats: cold load (load + validate + first invoke) repeats, interleaved.
        memory: measure peak RSS of a fresh process per bundle (minus the no-bundle baseline).
        plots_dir: where to write each configuration's reliability diagram and uncertainty histogram.

    Returns:
        ``{"configs": {name: {...}}, "baseline": name, "machine": {...}}``.
    """
    import tflbayes as tb
    from tflbayes.runtime import load_bundle

    if not bundles:
        raise InvalidInputError("`bundles` is empty: nothing to measure.")
    baseline = baseline or next(iter(bundles))
    if baseline not in bundles:
        raise InvalidInputError(f"baseline {baseline!r} is not one of the bundles: {sorted(bundles)}.")
    paths = {k: Path(v) for k, v in bundles.items()}
    x1 = np.asarray(x_test[:1], np.float32)
    configs = {}
    loaded = {k: load_bundle(p, num_threads=1) for k, p in paths.items()}
    ncpu = os.cpu_count() or 1
    loaded_all = {k: load_bundle(p, num_threads=ncpu) for k, p in paths.items()}
    t1 = interleaved({k: (lambda b=b: b.run(x1)) for k, b in loaded.items()}, rounds, warmup)
    tn = interleaved({k: (lambda b=b: b.run(x1)) for k, b in loaded_all.items()}, rounds, warmup)
    cold = _cold_load(paths, x1, cold_repeats)
    base_mem = peak_memory_mb() if memory else None
    for k, b in loaded.items():
        pred_in = b.predict(x_test)
        pred_ood = b.predict(x_ood) if x_ood is not None else None
        quality = tb.metrics.evaluate_prediction(pred_in, y_test, pred_ood)
        row = {
            "mode": b.mode, "precision": b.precision, "num_samples": b.num_samples,
            "latency_1thread": summarize(t1[k]), f"latency_{ncpu}threads": summarize(tn[k]),
            "latency_ms": summarize(t1[k])["median_ms"],
            "cold_load_ms": cold[k], **_sizes(b), **quality,
        }
        if memory:
            row["peak_rss_mb"] = peak_memory_mb(paths[k])
            row["rss_over_runtime_mb"] = row["peak_rss_mb"] - base_mem
        if plots_dir is not None:
            tb.plots.comparison_plots({k: (pred_in, pred_ood, y_test)}, plots_dir)
        configs[k] = row
    base = configs[baseline]
    for row in configs.values():
        row["latency_ratio"] = row["latency_ms"] / base["latency_ms"]
        row["size_ratio"] = row["bytes"] / base["bytes"]
    return {"configs": configs, "baseline": baseline, "rounds": rounds, "threads": [1, ncpu]}


def save_results(results: dict, path) -> Path:
    """Write results JSON atomically, with the machine, library versions and date recorded."""
    import datetime
    import platform

    from tflbayes._io import write_json

    def version(mod):
        try:
            return __import__(mod).__version__
        except (ImportError, AttributeError):  # not installed on this machine
            return None

    results = {**results, "environment": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__,
        "tensorflow": version("tensorflow"), "ai_edge_litert": _litert_version(),
    }}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    json.dumps(results)
    write_json(path, results)
    return Path(path)


def _litert_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return None
