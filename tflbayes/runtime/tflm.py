"""Run a bundle's graphs in TFLite Micro's Python interpreter: what a microcontroller computes, on a PC.

``tb.load_bundle(path, runtime="tflm")`` builds every graph with
``tflite_micro.runtime.Interpreter`` (the TFLite Micro kernels: reference int8 arithmetic, no
XNNPACK) instead of LiteRT. Inputs and outputs are addressed by position, as on the device, through
the manifest's tensor map (:func:`tflbayes.runtime.manifest.graph_tensors`); noise inputs of
stochastic micro graphs (tensor entries with a ``distribution``) are filled from the bundle's
:class:`~tflbayes.uncertainty.prng.Xoshiro128`, the generator of the C library's ``tb_rng_*``.

TFLite Micro reports its errors on C ``stderr`` (Python sees only "failed to allocate tensors");
:func:`captured_stderr` reads them so that a :class:`~tflbayes.errors.BundleError` carries the op
or allocation message. Needs ``pip install tflite-micro``.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from tflbayes.errors import BundleError
from tflbayes.runtime.manifest import graph_tensors, stage_files

__all__ = ["TflmGraph", "captured_stderr", "make_interpreter", "tensor_map", "DEFAULT_ARENA"]

DEFAULT_ARENA = 4 << 20  # bytes, for graphs whose manifest records no measured arena
ARENA_HEADROOM = 1024     # added to a measured arena (the Python binding's buffer alignment varies)


@contextlib.contextmanager
def captured_stderr():
    """Redirect file descriptor 2 (C and Python stderr) into a buffer; yields a list that holds the text."""
    out = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def _message(err: Exception, captured: list) -> str:
    lines = [l.strip() for l in "".join(captured).splitlines() if l.strip()]
    return "; ".join(lines[-6:]) or str(err).splitlines()[0]


def make_interpreter(model: bytes, arena_size: int, what: str):
    """A TFLite Micro interpreter for ``model`` with an arena of ``arena_size`` bytes (BundleError on failure)."""
    try:
        from tflite_micro import runtime
    except ImportError:
        raise BundleError(f"{what}: runtime='tflm' needs TFLite Micro's interpreter: pip install tflite-micro") from None
    with captured_stderr() as err:
        try:
            return runtime.Interpreter.from_bytes(bytes(model), arena_size=int(arena_size))
        except (RuntimeError, ValueError) as e:
            exc = e
    raise BundleError(f"{what}: TFLite Micro cannot build the interpreter (arena {arena_size} bytes): "
                      f"{_message(exc, err)}")


def tensor_map(manifest: dict, path: Path) -> dict:
    """The ``{"inputs", "outputs"}`` tensor map of ``path``: from the manifest, else read from the file."""
    for st in manifest.get("stages", []):
        if path.name in stage_files(st) and isinstance(st.get("tensors"), dict) and path.name in st["tensors"]:
            return st["tensors"][path.name]
    return graph_tensors(path)


def _details(entry: dict) -> dict:
    # the layout of LiteRT's details, so the bundle's (de)quantization applies unchanged
    q = entry.get("quantization")
    return {"index": entry["index"], "shape": np.array(entry["shape"], dtype=np.int32),
            "dtype": np.dtype(entry["dtype"]).type,
            "quantization_parameters": {"scales": np.array([q["scale"]] if q else [], dtype=np.float32),
                                        "zero_points": np.array([q["zero_point"]] if q else [], dtype=np.int32)}}


class TflmGraph:
    """One ``.tflite`` file in TFLite Micro, with the interface of the LiteRT graph of :class:`Bundle`.

    Args:
        path: the ``.tflite`` file.
        manifest: the bundle's manifest (tensor map; ``micro.graphs[file].arena_bytes`` if measured).
        rng: the noise generator (:class:`~tflbayes.uncertainty.prng.Xoshiro128`) shared by the bundle.
        arena_size: override the arena (bytes).
    """

    def __init__(self, path: Path, manifest: dict, rng, arena_size=None):
        from tflbayes.runtime.graph import dequantize, quantize  # the LiteRT path's rules

        self.path = Path(path)
        self.quantize, self.dequantize = quantize, dequantize
        tmap = tensor_map(manifest, self.path)
        measured = ((manifest.get("micro") or {}).get("graphs") or {}).get(self.path.name, {}).get("arena_bytes")
        self.arena_size = int(arena_size or (measured + ARENA_HEADROOM if measured else DEFAULT_ARENA))
        self.tflm = make_interpreter(self.path.read_bytes(), self.arena_size, str(self.path))
        self.rng = rng
        self.noise = [e for e in tmap["inputs"] if e.get("distribution")]
        self.inputs = {e["name"]: _details(e) for e in tmap["inputs"] if not e.get("distribution")}
        self.outputs = {e["name"]: _details(e) for e in tmap["outputs"]}

    def __call__(self, **values) -> dict:
        from tflbayes.runtime.graph import checked_feed

        it = self.tflm
        with captured_stderr() as err:
            try:
                for name, v in checked_feed(self.path, self.inputs, values).items():
                    det = self.inputs[name]
                    it.set_input(np.ascontiguousarray(self.quantize(v, det)), det["index"])
                for e in self.noise:  # the device's tb_rng_uniform / tb_rng_normal fills, in input order
                    det = _details(e)
                    it.set_input(np.ascontiguousarray(self.quantize(self.rng.fill(e["distribution"], e["shape"]), det)),
                                 e["index"])
                it.invoke()
                raw = {name: it.get_output(det["index"]) for name, det in self.outputs.items()}
            except (RuntimeError, ValueError) as e:
                exc = e
            else:
                exc = None
        if exc is not None:
            raise BundleError(f"{self.path}: TFLite Micro failed to invoke: {_message(exc, err)}")
        return {k: self.dequantize(np.asarray(v), self.outputs[k]) for k, v in raw.items()}
