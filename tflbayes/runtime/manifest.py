"""The bundle manifest (``manifest.json``): schema, constants and validation (numpy only).

A bundle is a folder: one or more ``.tflite`` graphs and ``manifest.json``. The manifest says
how to run them as a pipeline of *stages*:

- a ``graph`` stage runs one ``.tflite`` file on named values (``x`` is the input) and adds
  its named outputs (``logits``, ``probs``, ``total``, ...) to the pipeline;
- a ``members`` stage runs S member files on ``x`` and stacks their ``logits`` as ``[S, B, C]``;
- a ``host_head`` stage computes the uncertainty from ``logits`` on the host in numpy
  (:func:`tflbayes.uncertainty.decompose`).

``postprocessing`` says where the uncertainty head runs: ``"in_graph"`` (in the model),
``"cpu_graph"`` (a separate float head graph, e.g. after an int8 / Edge TPU body) or ``"host"``.
"""
from __future__ import annotations

from pathlib import Path

from tflbayes._io import require_field
from tflbayes.errors import BundleError

__all__ = [
    "FORMAT", "FORMAT_VERSION", "MODES", "PRECISIONS", "POSTPROCESSING", "OUTPUT_MEANINGS",
    "validate_manifest",
]

FORMAT = "tflbayes-bundle"
FORMAT_VERSION = 1
MODES = ("members", "batched", "stochastic", "dirichlet", "single_pass")
PRECISIONS = ("float32", "float16", "dynamic", "int8", "edgetpu")
POSTPROCESSING = ("in_graph", "cpu_graph", "host")
STAGE_KINDS = ("graph", "members", "host_head")

OUTPUT_MEANINGS = {
    "probs": "posterior predictive probabilities, mean over the S samples [B, C]",
    "total": "total uncertainty: entropy of probs, nats [B]",
    "aleatoric": "expected data uncertainty: mean entropy of the samples, nats [B]",
    "epistemic": "knowledge uncertainty: mutual information = total - aleatoric, nats [B]",
    "member_probs": "per-sample (member) probabilities [S, B, C]",
    "logits": "per-sample logits [S, B, C] (input of the uncertainty head)",
    "alpha": "Dirichlet concentrations [B, C] (mode dirichlet)",
    "alpha_logits": "the EnD² student's raw outputs z, alpha = exp(clip(z, ln 1e-3, ln 1e4)) [B, C] "
                    "(input of the Dirichlet head)",
    "student_outputs": "a BDK/GPED student's raw outputs [B, C + E] (input of its head)",
}


def _need(obj, key, types, where):
    return require_field(obj, key, types, where, BundleError)


def validate_manifest(m: dict, path) -> dict:
    """Check the structure of a manifest; raise :class:`BundleError` naming the field."""
    where = str(path)
    if m.get("format") != FORMAT:
        raise BundleError(f"{where}: field `format` is {m.get('format')!r}, expected {FORMAT!r}.")
    v = _need(m, "format_version", int, where)
    if not 1 <= v <= FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {v} is not supported (this runtime reads 1..{FORMAT_VERSION}).")
    mode = _need(m, "mode", str, where)
    if mode not in MODES:
        raise BundleError(f"{where}: field `mode` is {mode!r}; known modes: {', '.join(MODES)}.")
    prec = _need(m, "precision", str, where)
    if prec not in PRECISIONS:
        raise BundleError(f"{where}: field `precision` is {prec!r}; known precisions: {', '.join(PRECISIONS)}.")
    s = _need(m, "num_samples", int, where)
    if s < 1:
        raise BundleError(f"{where}: field `num_samples` must be >= 1, found {s}.")
    names = _need(m, "class_names", list, where)
    if len(names) < 2:
        raise BundleError(f"{where}: field `class_names` must list >= 2 classes.")
    inp = _need(m, "input", dict, where)
    shape = _need(inp, "shape", list, f"{where} input")
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise BundleError(f"{where}: input.shape must be static positive sizes, found {shape}.")
    if _need(inp, "dtype", str, f"{where} input") not in ("float32", "int8", "uint8"):
        raise BundleError(f"{where}: input.dtype {inp['dtype']!r} is not supported.")
    if _need(m, "postprocessing", str, where) not in POSTPROCESSING:
        raise BundleError(f"{where}: field `postprocessing` must be one of {', '.join(POSTPROCESSING)}.")
    stages = _need(m, "stages", list, where)
    if not stages:
        raise BundleError(f"{where}: field `stages` is empty.")
    for i, st in enumerate(stages):
        sw = f"{where} stages[{i}]"
        if not isinstance(st, dict):
            raise BundleError(f"{sw}: must be an object.")
        kind = _need(st, "kind", str, sw)
        if kind not in STAGE_KINDS:
            raise BundleError(f"{sw}: kind {kind!r} unknown; known kinds: {', '.join(STAGE_KINDS)}.")
        if kind == "graph":
            _need(st, "file", str, sw)
            _need(st, "sha256", str, sw)
        elif kind == "members":
            files = _need(st, "files", list, sw)
            sums = _need(st, "sha256", list, sw)
            if len(files) != s or len(sums) != s:
                raise BundleError(f"{sw}: lists {len(files)} member files for num_samples={s}.")
        for f in ([st["file"]] if kind == "graph" else st.get("files", [])):
            if Path(f).name != f:
                raise BundleError(f"{sw}: file name {f!r} must be a plain name inside the bundle folder.")
    thr = m.get("thresholds")
    if thr is not None and not isinstance(thr, dict):
        raise BundleError(f"{where}: field `thresholds` must be an object or null.")
    return m
