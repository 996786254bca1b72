"""Run a tflbayes bundle on the LiteRT interpreter (``ai_edge_litert``): numpy only, no TensorFlow.

This is what a Linux edge board runs (the base install, ``pip install tflbayes``: no TensorFlow)::

    from tflbayes.runtime import load_bundle
    b = load_bundle("bundles/ens")
    pred = b.predict(x)          # Prediction(probs, total, aleatoric, epistemic)
    b.decide(x)                  # class names, or "abstain" where the uncertainty passes the threshold
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np

from tflbayes._checks import check_inputs, check_path
from tflbayes._io import check_member, read_json, sha256_file
from tflbayes.errors import BundleError, InvalidInputError
from tflbayes.runtime.graph import Graph as _Graph
from tflbayes.runtime.graph import checked_feed, dequantize, quantize  # noqa: F401  (public here too)
from tflbayes.runtime.manifest import check_seal, validate_manifest
from tflbayes.uncertainty import Prediction, decompose

__all__ = ["Bundle", "load_bundle", "ABSTAIN", "quantize", "dequantize"]

ABSTAIN = "abstain"
_MAX_MANIFEST_BYTES = 16 << 20
_MAX_GRAPH_BYTES = 2 << 30  # a flatbuffer cannot be larger
RUNTIMES = ("litert", "litert-reference", "tflm")


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Bundle:
    """A converted posterior on the LiteRT interpreter.

    Args:
        path: the bundle folder (``manifest.json`` and its ``.tflite`` files).
        num_threads: LiteRT CPU threads (None: the interpreter's default).
        max_resident: for ``members`` bundles, how many member interpreters stay loaded
            (None: all; 1 streams members through memory one at a time).
        use_edgetpu: for ``edgetpu`` bundles, run the compiled ``*_edgetpu.tflite`` body (or
            members) on a Coral Edge TPU through the delegate ``libedgetpu.so.1`` (Coral's Edge TPU
            runtime); otherwise the int8 body runs on the CPU.
        edgetpu_device: which Edge TPU (pycoral's convention): None (the first found), ``":0"``,
            ``":1"`` (by enumeration index), ``"usb"`` / ``"pci"`` (the first of that kind) or
            ``"usb:0"`` / ``"pci:1"``.
        runtime: ``"litert"`` (LiteRT with its default XNNPACK kernels), ``"litert-reference"``
            (LiteRT's reference kernels) or ``"tflm"`` (TFLite Micro's Python interpreter,
            :mod:`tflbayes.runtime.tflm`: what a microcontroller computes).
        noise_seed: seed of the PRNG that fills noise inputs (``tb_rng_seed`` on the device).
    """

    def __init__(self, path, num_threads: Optional[int] = None, max_resident: Optional[int] = None,
                 use_edgetpu: bool = False, runtime: str = "litert", noise_seed: int = 0,
                 edgetpu_device: Optional[str] = None):
        self.path = check_path("path", path)
        if not self.path.is_dir():
            raise BundleError(f"Bundle folder {self.path} does not exist.")
        mpath = self.path / "manifest.json"
        if not mpath.is_file() and not mpath.is_symlink():
            raise BundleError(f"{mpath} is missing: not a tflbayes bundle.")
        check_member(self.path, "manifest.json", BundleError, "manifest")
        manifest = read_json(mpath, BundleError, "manifest", max_bytes=_MAX_MANIFEST_BYTES)
        self.manifest = validate_manifest(manifest, mpath)
        if max_resident is not None and (not isinstance(max_resident, int) or max_resident < 1):
            raise InvalidInputError(
                f"Invalid value received for argument `max_resident`. Expected an integer >= 1. "
                f"Received: max_resident={max_resident!r}"
            )
        if runtime not in RUNTIMES:
            raise InvalidInputError(f"Invalid value received for argument `runtime`. Expected one of "
                                    f"{', '.join(RUNTIMES)}. Received: runtime={runtime!r}")
        from tflbayes.uncertainty.prng import Xoshiro128

        self.runtime = runtime
        self.noise = Xoshiro128(noise_seed)  # the device's tb_rng_* stream for noise inputs
        self.num_threads = num_threads
        self.max_resident = max_resident
        self.use_edgetpu = use_edgetpu
        self.edgetpu_device = _check_edgetpu_device(edgetpu_device, use_edgetpu, self.manifest, self.path)
        self._check_files()
        self._graphs = {}
        self._resident = []  # member files currently loaded, oldest first
        self._check_against_models()
        # last, so that a field that contradicts the graphs is named by the check above
        self.sealed = check_seal(manifest, mpath)

    # -- manifest facts ---------------------------------------------------------------------
    mode = property(lambda self: self.manifest["mode"])
    precision = property(lambda self: self.manifest["precision"])
    num_samples = property(lambda self: self.manifest["num_samples"])
    class_names = property(lambda self: list(self.manifest["class_names"]))
    thresholds = property(lambda self: self.manifest.get("thresholds"))

    @property
    def input_shape(self) -> tuple:
        """Shape of one input (without the batch axis)."""
        return tuple(self.manifest["input"]["shape"][1:])

    @property
    def batch_size(self) -> int:
        return int(self.manifest["input"]["shape"][0])

    @property
    def files(self) -> list:
        out = []
        for st in self.manifest["stages"]:
            out += [st["file"]] if st["kind"] == "graph" else st.get("files", [])
        return out

    @property
    def size_bytes(self) -> int:
        """Bytes of all .tflite files of the bundle."""
        return sum((self.path / f).stat().st_size for f in self.files)

    def __repr__(self):
        return (f"Bundle({str(self.path)!r}, mode={self.mode!r}, precision={self.precision!r}, "
                f"S={self.num_samples}, {self.size_bytes} bytes)")

    # -- loading and checking ------------------------------------------------------------------
    def _check_files(self):
        for st in self.manifest["stages"]:
            pairs = [(st["file"], st["sha256"])] if st["kind"] == "graph" else list(
                zip(st.get("files", []), st.get("sha256", [])))
            for f, digest in pairs:
                self._verified_file(f, digest)

    def _verified_file(self, name: str, digest) -> Path:
        """``name`` inside the bundle folder (no symlink out), of a flatbuffer's size, with checksum ``digest``."""
        if not (self.path / name).exists() and not (self.path / name).is_symlink():
            raise BundleError(f"{self.path / name} is missing (listed in manifest.json).")
        fp = check_member(self.path, name, BundleError, "graph file")
        if fp.stat().st_size > _MAX_GRAPH_BYTES:
            raise BundleError(f"{fp} is larger than a .tflite flatbuffer can be; refused.")
        if not isinstance(digest, str) or sha256_file(fp) != digest:
            raise BundleError(f"{fp} does not match the checksum in manifest.json: corrupt, truncated or replaced.")
        return fp

    def _edgetpu_file(self, st: dict) -> Optional[str]:
        """The stage's compiled Edge TPU file when it is to run: inside the folder and checksummed."""
        name = st.get("edgetpu_file")
        if not (self.use_edgetpu and name) or not (self.path / name).exists():
            return None
        if name not in self._graphs:
            if st.get("edgetpu_sha256") is None:
                raise BundleError(
                    f"{self.path / name} has no checksum in manifest.json (stage field `edgetpu_sha256`): "
                    "only checksummed files run. Convert with edgetpu_compiler on PATH, which records it.")
            self._verified_file(name, st["edgetpu_sha256"])
        return name

    def _compiled_member(self, name: str) -> Optional[Path]:
        """With use_edgetpu: a member's co-compiled file (members stage ``edgetpu_files``), checksummed."""
        if not self.use_edgetpu:
            return None
        for st in self.manifest["stages"]:
            if st["kind"] == "members" and name in st.get("files", []) and st.get("edgetpu_files"):
                i = st["files"].index(name)
                compiled, digests = st["edgetpu_files"][i], st.get("edgetpu_sha256") or []
                if not (self.path / compiled).exists():
                    return None
                if i >= len(digests):
                    raise BundleError(f"{self.path / compiled} has no checksum in manifest.json (stage field "
                                      "`edgetpu_sha256`): only checksummed files run.")
                return self._verified_file(compiled, digests[i])
        return None

    def _graph(self, name: str) -> _Graph:
        g = self._graphs.get(name)
        if g is None:
            delegates = None
            path = self._compiled_member(name) or self.path / name
            if self.use_edgetpu and path.name.endswith("_edgetpu.tflite"):
                delegates = [_edgetpu_delegate(self.edgetpu_device)]
            if self.runtime == "tflm":
                from tflbayes.runtime.tflm import TflmGraph

                g = TflmGraph(path, self.manifest, self.noise)
            else:
                g = _Graph(path, self.num_threads, delegates, reference=self.runtime == "litert-reference")
                from tflbayes.runtime.noise import with_noise

                g = with_noise(g, self.manifest, path, self.noise)  # noise inputs from the device's PRNG
            self._graphs[name] = g
        return g

    def _member(self, name: str) -> _Graph:
        g = self._graph(name)
        if name in self._resident:
            self._resident.remove(name)
        self._resident.append(name)
        if self.max_resident is not None:
            while len(self._resident) > self.max_resident:
                self._graphs.pop(self._resident.pop(0), None)
        return g

    def _check_against_models(self):
        """The manifest must match its models: input shape/dtype, S, classes."""
        m = self.manifest
        inp = m["input"]
        first = m["stages"][0]
        fname = first["file"] if first["kind"] == "graph" else first["files"][0]
        g = self._member(fname) if first["kind"] == "members" else self._graph(fname)
        det = g.inputs.get("x")
        if det is None:
            raise BundleError(f"{self.path / fname}: has no input named 'x' (inputs: {sorted(g.inputs)}).")
        if list(det["shape"]) != list(inp["shape"]):
            raise BundleError(
                f"manifest.json says input shape {inp['shape']}, {fname} takes {list(det['shape'])}.")
        if np.dtype(det["dtype"]).name != inp["dtype"]:
            raise BundleError(f"manifest.json says input dtype {inp['dtype']}, {fname} takes {np.dtype(det['dtype']).name}.")
        for name, out in g.outputs.items():
            shape = list(out["shape"])
            if name in ("logits", "member_probs") and first["kind"] == "graph" and shape[0] != m["num_samples"]:
                raise BundleError(
                    f"manifest.json says num_samples={m['num_samples']}, {fname} output {name!r} has {shape[0]} samples.")
            if name in ("logits", "member_probs", "probs") and shape[-1] != len(m["class_names"]):
                raise BundleError(
                    f"manifest.json lists {len(m['class_names'])} classes, {fname} output {name!r} has {shape[-1]}.")
        self._check_precision(fname, g)
        self._check_sampling()
        for st in m["stages"][1:]:  # later graphs (a float head after an int8 body): S and classes too
            if st["kind"] != "graph":
                continue
            for name, out in self._graph(st["file"]).outputs.items():
                shape = list(out["shape"])
                if (name in ("member_probs", "logits") and shape[0] != m["num_samples"]) or (
                        name in ("member_probs", "probs") and shape[-1] != len(m["class_names"])):
                    raise BundleError(f"manifest.json says num_samples={m['num_samples']} and "
                                      f"{len(m['class_names'])} classes; {st['file']} output {name!r} has shape {shape}.")

    def _check_sampling(self) -> None:
        """``stochastic`` graphs sample (RANDOM_* ops); ``batched`` ones do not (LiteRT targets)."""
        m = self.manifest
        if m["mode"] not in ("batched", "stochastic") or m.get("target", "litert") != "litert":
            return
        ops = set()
        for st in m["stages"]:
            it = getattr(self._graph(st["file"]), "interpreter", None) if st["kind"] == "graph" else None
            if it is None:
                return
            ops |= {str(d.get("op_name", "")) for d in it._get_ops_details()}
        samples = any(o.startswith("RANDOM") for o in ops)
        if samples != (m["mode"] == "stochastic"):
            raise BundleError(f"manifest.json says mode {m['mode']!r}, but its graphs "
                              f"{'sample (RANDOM ops)' if samples else 'have no random ops'}: the manifest was relabelled.")

    def _check_precision(self, fname: str, g) -> None:
        """The body graph's tensor types must be what ``precision`` says (a relabelled manifest is refused)."""
        it = getattr(g, "interpreter", None)
        if it is None:  # another runtime's graph (TFLite Micro): its own checks apply
            return
        dtypes = {np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
        prec = self.manifest["precision"]
        has16, has8 = "float16" in dtypes, bool(dtypes & {"int8", "uint8"})
        ok = {"float32": not has16 and not has8, "float16": has16, "dynamic": has8 and not has16}.get(prec, has8)
        if not ok:
            raise BundleError(f"manifest.json says precision {prec!r}, but {fname} holds tensors of "
                              f"{sorted(dtypes & {'float16', 'int8', 'uint8'}) or 'float32 only'}: the manifest "
                              "was relabelled or the file replaced.")

    # -- running ----------------------------------------------------------------------------
    def _run_batch(self, xb: np.ndarray) -> dict:
        values = {"x": xb}
        for st in self.manifest["stages"]:
            if st["kind"] == "graph":
                fname = self._edgetpu_file(st) or st["file"]
                g = self._graph(fname)
                values.update(g(**{k: values[k] for k in g.inputs}))
            elif st["kind"] == "members":
                values["logits"] = np.stack([self._member(f)(x=values["x"])["logits"] for f in st["files"]])
            else:  # host_head
                values["member_probs"] = _softmax(values["logits"].astype(np.float64))
        if "probs" not in values or "total" not in values:
            total, aleatoric, epistemic = decompose(values["member_probs"])
            values.update(probs=values["member_probs"].mean(axis=0), total=total, aleatoric=aleatoric,
                          epistemic=epistemic)
        return values

    def run(self, x) -> dict:
        """All named outputs of the pipeline for inputs ``x`` ``[N, *input_shape]`` (float)."""
        x = check_inputs(x, self.input_shape, "x")
        b = self.batch_size
        chunks = []
        for i in range(0, len(x), b):
            xb = x[i : i + b]
            n = len(xb)
            if n < b:  # pad the last chunk: graphs have static shapes
                xb = np.concatenate([xb, np.repeat(xb[-1:], b - n, axis=0)])
            out = self._run_batch(xb)
            chunks.append({k: (v[:, :n] if v.ndim == 3 else v[:n]) for k, v in out.items() if k != "x"})
        return {k: np.concatenate([c[k] for c in chunks], axis=1 if chunks[0][k].ndim == 3 else 0)
                for k in chunks[0]}

    def sample_probs(self, x) -> np.ndarray:
        """``[S, N, C]`` per-member / per-sample probabilities (where the bundle outputs them)."""
        out = self.run(x)
        if "member_probs" not in out:
            raise BundleError(f"{self.path}: this bundle does not output per-sample probabilities.")
        return out["member_probs"].astype(np.float64)

    def predict(self, x, num_samples=None) -> Prediction:
        """Posterior predictive and uncertainty (nats), like :meth:`Posterior.predict`.

        ``num_samples`` is fixed at conversion time for bundles; passing another value is an error.
        """
        if num_samples is not None and num_samples != self.num_samples:
            raise InvalidInputError(
                f"This bundle draws S={self.num_samples} samples per invoke (set at conversion); "
                f"received num_samples={num_samples}. Reconvert with num_samples={num_samples}."
            )
        out = self.run(x)
        probs = out["probs"].astype(np.float64)
        probs = probs / probs.sum(axis=-1, keepdims=True)
        get = lambda k: None if out.get(k) is None else out[k].astype(np.float64)  # noqa: E731
        return Prediction(probs=probs, total=get("total"), aleatoric=get("aleatoric"), epistemic=get("epistemic"))

    def decide(self, x, threshold: Optional[float] = None, score: Optional[str] = None) -> list:
        """Per input: the class name, or ``"abstain"`` where the uncertainty passes the threshold.

        Args:
            x: inputs ``[N, *input_shape]``.
            threshold: overrides the calibrated threshold from the manifest.
            score: ``"epistemic"`` (default where calibrated) or ``"total"``.
        """
        thr = self.thresholds or {}
        score = score or thr.get("score", "epistemic")
        if score not in ("epistemic", "total"):
            raise InvalidInputError(f"Invalid value received for argument `score`. Expected 'epistemic' or 'total'. Received: score={score!r}")
        if threshold is None:
            threshold = thr.get(score)
            if threshold is None:
                raise BundleError(
                    f"{self.path}: no calibrated {score} threshold in manifest.json; convert with "
                    "calibration=(x_val, y_val) or pass threshold=."
                )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
                or np.isnan(threshold):  # +inf: never abstain, -inf: always
            raise InvalidInputError(f"Invalid value received for argument `threshold`. Expected a number (not NaN). "
                                    f"Received: threshold={threshold!r}")
        pred = self.predict(x)
        u = getattr(pred, score)
        if u is None:
            raise BundleError(f"{self.path}: this bundle provides no {score} uncertainty; use score='total'.")
        names = self.class_names
        # non-finite outputs (inputs near the float32 limit overflow inside the graph) never pass as a class
        finite = np.isfinite(u) & np.all(np.isfinite(pred.probs), axis=-1)
        return [names[k] if ok and ui <= threshold else ABSTAIN for ui, k, ok in zip(u, pred.label, finite)]


_EDGETPU_DEVICE = re.compile(r"^(?:(usb|pci)(?::\d+)?|:\d+)$")


def _check_edgetpu_device(device, use_edgetpu: bool, manifest: dict, path: Path):
    """Validate the Edge TPU selection; an Edge TPU run needs compiled files in the bundle."""
    if device is not None and (not isinstance(device, str) or not _EDGETPU_DEVICE.match(device)):
        raise InvalidInputError(
            "Invalid value received for argument `edgetpu_device`. Expected None, ':<index>', 'usb', 'pci', "
            f"'usb:<index>' or 'pci:<index>'. Received: edgetpu_device={device!r}")
    if device is not None and not use_edgetpu:
        raise InvalidInputError("edgetpu_device is given but use_edgetpu=False; pass use_edgetpu=True.")
    if use_edgetpu:
        if manifest["precision"] != "edgetpu":
            raise BundleError(f"{path}: use_edgetpu=True needs a precision='edgetpu' bundle; this one is "
                              f"{manifest['precision']!r}.")
        if not any(f.endswith("_edgetpu.tflite") for f in (p.name for p in path.iterdir())):
            cmd = (manifest.get("edgetpu") or {}).get("command", "edgetpu_compiler")
            raise BundleError(f"{path}: no compiled *_edgetpu.tflite file; compile the bundle first: {cmd}")
    return device


def _edgetpu_delegate(device):
    """The Edge TPU delegate from Coral's runtime library, or a BundleError saying what is missing."""
    from ai_edge_litert.interpreter import load_delegate

    try:
        return load_delegate("libedgetpu.so.1", {"device": device} if device else {})
    except (ValueError, OSError, RuntimeError) as e:
        where = f" on device {device!r}" if device else ""
        raise BundleError(
            f"Cannot load the Edge TPU delegate libedgetpu.so.1{where}: {str(e).splitlines()[0] if str(e) else e}. "
            "Install Coral's Edge TPU runtime (libedgetpu1-std) and attach the device, or load the bundle "
            "with use_edgetpu=False to run the int8 graphs on the CPU.") from None


def load_bundle(path, num_threads: Optional[int] = None, max_resident: Optional[int] = None,
                use_edgetpu: bool = False, runtime: str = "litert", noise_seed: int = 0,
                edgetpu_device: Optional[str] = None) -> Bundle:
    """Load a bundle folder written by :func:`tflbayes.convert` (validates files and manifest).

    ``runtime="tflm"`` runs the graphs in TFLite Micro's interpreter (what the MCU outputs),
    ``"litert-reference"`` on LiteRT's reference kernels; see :class:`Bundle`.
    """
    return Bundle(path, num_threads=num_threads, max_resident=max_resident, use_edgetpu=use_edgetpu,
                  runtime=runtime, noise_seed=noise_seed, edgetpu_device=edgetpu_device)
