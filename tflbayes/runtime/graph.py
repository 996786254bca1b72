"""One ``.tflite`` file of a bundle on the LiteRT interpreter: loading, input checks, int8 (de)quantization.

numpy and ``ai_edge_litert`` only. :mod:`tflbayes.runtime.bundle` runs a manifest's pipeline of such
graphs; :mod:`tflbayes.runtime.tflm` reuses the same input checks and quantization rules for TFLite Micro.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tflbayes.errors import BundleError

__all__ = ["Graph", "make_interpreter", "checked_feed", "quantize", "dequantize"]


def make_interpreter(path: Path, num_threads, delegates=None, reference: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # reference=True: LiteRT's reference kernels (no XNNPACK), the arithmetic TFLite Micro runs
    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    try:
        it = Interpreter(model_path=str(path), num_threads=num_threads, experimental_delegates=delegates,
                         experimental_op_resolver_type=resolver)
        it.allocate_tensors()
        runner = it.get_signature_runner()
    except (ValueError, RuntimeError) as e:
        raise BundleError(f"{path} cannot be loaded by the LiteRT interpreter: {str(e).splitlines()[0]}") from None
    return it, runner


class Graph:
    """One .tflite file with its signature runner and (de)quantization of inputs/outputs."""

    def __init__(self, path: Path, num_threads=None, delegates=None, reference: bool = False):
        self.path = path
        self.interpreter, self.runner = make_interpreter(path, num_threads, delegates, reference)
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()

    def __call__(self, **values) -> dict:
        feed = {name: quantize(v, self.inputs[name]) for name, v in checked_feed(self.path, self.inputs, values).items()}
        raw = self.runner(**feed)
        return {k: dequantize(raw[k], self.outputs[k]) for k in raw}


def _qparams(det):
    q = det.get("quantization_parameters") or {}
    scales, zps = q.get("scales", np.array([])), q.get("zero_points", np.array([]))
    if len(scales) == 0:
        return None
    return float(scales[0]), int(zps[0])


def checked_feed(path, inputs: dict, values: dict) -> dict:
    """``{name: array}`` for every input a graph file needs, each of the shape its details say; a missing
    input or a wrong shape is a :class:`BundleError` naming the file (LiteRT and TFLite Micro graphs alike)."""
    feed = {}
    for name, det in inputs.items():
        if name not in values:
            raise BundleError(f"{path}: the graph needs input {name!r}, the pipeline has {sorted(values)}.")
        v = np.asarray(values[name])
        if tuple(v.shape) != tuple(det["shape"]):
            raise BundleError(f"{path}: input {name!r} has shape {list(det['shape'])}, got {list(v.shape)}.")
        feed[name] = v
    return feed


def quantize(v, det):
    """``v`` in the dtype of the input tensor ``det`` (LiteRT tensor details): int8 by its scale and zero point."""
    dtype = det["dtype"]
    if dtype == np.float32:
        return v.astype(np.float32)
    q = _qparams(det)
    if q is None:
        return v.astype(dtype)
    scale, zp = q
    info = np.iinfo(dtype)
    return np.clip(np.round(v / scale + zp), info.min, info.max).astype(dtype)


def dequantize(v, det):
    """An output tensor ``v`` back to float32 by the scale and zero point of ``det`` (float tensors pass through)."""
    v = np.asarray(v)
    if v.dtype in (np.float32, np.float64):
        return v.astype(np.float32)
    q = _qparams(det)
    if q is None:
        return v.astype(np.float32)
    scale, zp = q
    return ((v.astype(np.float32) - zp) * scale).astype(np.float32)
