"""The bundle format (``manifest.json``): schema, output meanings, writer, validator and version history.

A bundle is a folder: one or more ``.tflite`` graphs and ``manifest.json``. The manifest says how
to run them as a pipeline of *stages*:

- a ``graph`` stage runs one ``.tflite`` file on named values (``x`` is the input) and adds its
  named outputs (``logits``, ``probs``, ``total``, ...) to the pipeline;
- a ``members`` stage runs S member files on ``x`` and stacks their ``logits`` as ``[S, B, C]``;
- a ``host_head`` stage computes the uncertainty from ``logits`` on the host in numpy
  (:func:`tflbayes.uncertainty.decompose`; on a microcontroller ``tb_decompose_logits``).

``postprocessing`` says where the uncertainty head runs: ``"in_graph"`` (in the model),
``"cpu_graph"`` (a separate float head graph, e.g. after an int8 / Edge TPU body) or ``"host"``.

Top-level fields (version 2): ``format`` (``"tflbayes-bundle"``), ``format_version``, ``target``
(``"litert"`` or ``"micro"``), ``mode``, ``precision``, ``num_samples``, ``class_names``,
``input`` (``name``, ``shape`` with the static batch first, ``dtype``, int8 ``quantization``
``{scale, zero_point}``), ``outputs`` (name -> meaning, see :func:`output_meanings`),
``postprocessing``, ``stages``, ``ops`` (file -> sorted op names), ``thresholds`` (calibrated
abstention thresholds or null), ``verification`` (the conversion-time report; int8 bundles add
``kernels``: the result on XNNPACK, LiteRT's reference kernels and TFLite Micro, and their
``spread``), ``provenance``; optional ``edgetpu``, ``micro`` and ``noise``:

- ``micro`` (``target="micro"``): ``{"tflite_micro": version, "graphs": {file: {"arena_bytes",
  "flatbuffer_bytes", "ops"}}, "flash_bytes", "arena_bytes_max", "folder": {"path": "micro",
  "files": {name: sha256}}}`` — ``arena_bytes`` is the smallest arena that allocated and invoked;
- ``noise`` (stochastic micro bundles): ``{"inputs": [{"file", "name", "index", "shape",
  "distribution"}], "generator"}`` — the random tensors the device fills before every invoke.

**Tensor map** (``stages[i]["tensors"]``, version 2, every target): for each ``.tflite`` file of
the stage, what C (TFLite Micro ``interpreter.input(i)``) and Java (``Interpreter.getInputTensor(i)``)
code needs, since the order of outputs differs between files::

    "tensors": {"<file>.tflite": {
        "inputs":  [{"name": "x", "index": 0, "tensor_index": 0, "shape": [1, 8, 8, 1],
                     "dtype": "int8", "quantization": {"scale": 0.0039, "zero_point": -128}}, ...],
        "outputs": [{"name": "logits", "index": 0, "tensor_index": 57, "shape": [5, 1, 10],
                     "dtype": "int8", "quantization": {"scale": 0.12, "zero_point": 3}}, ...]}}

``name`` is the signature name the pipeline uses, ``index`` the position among the graph's
inputs / outputs (what interpreters index by), ``tensor_index`` the flatbuffer tensor id,
``quantization`` null for float tensors. Noise inputs of stochastic micro graphs carry
``"distribution": "uniform" | "normal"`` (filled by ``tb_rng_uniform`` / ``tb_rng_normal``).

**Versions**: 1 (no ``target``, no ``tensors``) is still read: :func:`upgrade_manifest` returns the
version-2 view (``target="litert"``; tensors computed from the files when a folder is given).
"""
from __future__ import annotations

import datetime
import platform
from pathlib import Path

from tflbayes._io import digest_json, require_field, sha256_file, write_json
from tflbayes.errors import BundleError

__all__ = [
    "FORMAT", "FORMAT_VERSION", "READABLE_VERSIONS", "MODES", "PRECISIONS", "POSTPROCESSING", "TARGETS",
    "OUTPUT_MEANINGS", "output_meanings", "graph_tensors", "build_stages", "build_manifest", "write_manifest",
    "validate_manifest", "upgrade_manifest", "stage_files", "MAX_SAMPLES", "seal", "check_seal", "SEAL"]

FORMAT = "tflbayes-bundle"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MODES = ("members", "batched", "stochastic", "dirichlet", "single_pass")
PRECISIONS = ("float32", "float16", "dynamic", "int8", "edgetpu")
POSTPROCESSING = ("in_graph", "cpu_graph", "host")
STAGE_KINDS = ("graph", "members", "host_head")
TARGETS = ("litert", "micro")

# Sample-based posteriors (ensembles, MC dropout, VI, SG-MCMC): S samples per input.
OUTPUT_MEANINGS = {
    "probs": "posterior predictive probabilities, mean over the S samples [B, C]",
    "total": "total uncertainty: entropy of probs, nats [B]",
    "aleatoric": "expected data uncertainty: mean entropy of the samples, nats [B]",
    "epistemic": "knowledge uncertainty: mutual information = total - aleatoric, nats [B]",
    "member_probs": "per-sample (member) probabilities [S, B, C]",
    "logits": "per-sample logits [S, B, C] (input of the uncertainty head)",
    "features": "the deterministic prefix's features [B, ...] (input of the sampling suffix)",
}
# An EnD² student: one Dirichlet, closed form, no samples.
_DIRICHLET_MEANINGS = {
    "probs": "expected probabilities of the Dirichlet, alpha / alpha_0 [B, C]",
    "total": "total uncertainty: entropy of probs, nats [B]",
    "aleatoric": "expected data uncertainty E_Dir H[p] = -sum_c (alpha_c/alpha_0)(psi(alpha_c+1) - "
                 "psi(alpha_0+1)), nats [B]",
    "epistemic": "knowledge uncertainty: mutual information of the Dirichlet = total - aleatoric, nats [B]",
    "alpha": "Dirichlet concentrations [B, C]",
    "alpha_logits": "the EnD² student's raw outputs z, alpha = exp(clip(z, ln 1e-3, ln 1e4)) [B, C] "
                    "(input of the Dirichlet head)",
}
# A BDK / GPED student: one network distilled from a teacher's samples, no samples of its own.
_DISTILLED_MEANINGS = {
    "probs": "the student's predictive probabilities (distilled teacher mean) [B, C]",
    "total": "total uncertainty: entropy of probs, nats [B]",
    "aleatoric": "GPED: the distilled expected entropy E_theta H[p(y|x,theta)] of the teacher, nats [B]",
    "epistemic": "GPED: the distilled mutual information (else max(total - aleatoric, 0)), nats [B]",
    "student_outputs": "a BDK/GPED student's raw outputs [B, C + E] (input of its head)",
}

# A last-layer Laplace posterior: a Gaussian over the last layer, pushed through its link in closed form.
_LAPLACE_MEANINGS = {
    "probs": "the last-layer Laplace predictive (probit approximation, Laplace bridge or its link's closed "
             "form over the Gaussian logits) [B, C]",
    "total": "total uncertainty: entropy of probs, nats [B]",
    "aleatoric": "expected data uncertainty under the Laplace posterior (bridge: the Dirichlet's closed form), nats [B]",
    "epistemic": "knowledge uncertainty: total - aleatoric, nats [B]",
    "features": "the network's last-layer features [B, F] (input of the Laplace head)",
}


def output_meanings(kind: str, names) -> dict:
    """``{name: meaning}`` for the outputs ``names`` of a ``kind`` posterior's bundle.

    Sample-based kinds (ensembles, MC dropout, VI, SG-MCMC, MIMO / BatchEnsemble) mean over S
    samples; a Dirichlet (EnD²) student, a BDK / GPED student and a last-layer Laplace posterior
    have no samples, and their meanings say what they compute instead.
    """
    table = {"dirichlet": _DIRICHLET_MEANINGS, "distilled": _DISTILLED_MEANINGS,
             "laplace": _LAPLACE_MEANINGS}.get(kind, OUTPUT_MEANINGS)
    return {k: table.get(k, OUTPUT_MEANINGS.get(k, k)) for k in names}


# -- the tensor map ----------------------------------------------------------------------------
def _tensor_entry(name, position, det) -> dict:
    import numpy as np

    q = det.get("quantization_parameters") or {}
    scales, zps = list(q.get("scales", [])), list(q.get("zero_points", []))
    quant = {"scale": float(scales[0]), "zero_point": int(zps[0])} if scales else None
    return {"name": name, "index": int(position), "tensor_index": int(det["index"]),
            "shape": [int(d) for d in det["shape"]], "dtype": np.dtype(det["dtype"]).name, "quantization": quant}


def graph_tensors(model) -> dict:
    """``{"inputs": [...], "outputs": [...]}`` of a ``.tflite`` (path or bytes), in interpreter order."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        it = Interpreter(model_content=bytes(model)) if isinstance(model, (bytes, bytearray)) else \
            Interpreter(model_path=str(model))
        runner = it.get_signature_runner()
    except (ValueError, RuntimeError, OSError) as e:
        raise BundleError(f"{model if not isinstance(model, (bytes, bytearray)) else 'graph'} cannot be read by "
                          f"the LiteRT interpreter: {str(e).splitlines()[0]}") from None
    out = {}
    for side, sig, order in (("inputs", runner.get_input_details(), it.get_input_details()),
                             ("outputs", runner.get_output_details(), it.get_output_details())):
        pos = {int(d["index"]): i for i, d in enumerate(order)}
        out[side] = sorted((_tensor_entry(n, pos[int(d["index"])], d) for n, d in sig.items()),
                           key=lambda e: e["index"])
    return out


# -- the writer --------------------------------------------------------------------------------
def build_stages(folder, mode: str, files, precision: str, body_out, outputs) -> tuple:
    """``(stages, postprocessing)`` of a bundle whose ``files`` are written in ``folder``."""
    folder = Path(folder)
    int8 = precision in ("int8", "edgetpu")
    runs_on = "edgetpu" if precision == "edgetpu" else "cpu"
    tensors = lambda names: {n: graph_tensors(folder / n) for n in names}  # noqa: E731
    if mode == "members":
        members = sorted(n for n in files if n.startswith("member_"))
        return [{"kind": "members", "files": members, "sha256": [sha256_file(folder / n) for n in members],
                 "outputs": ["logits"], "runs_on": runs_on, "tensors": tensors(members)},
                {"kind": "host_head", "inputs": ["logits"],
                 "outputs": ["member_probs", "probs", "total", "aleatoric", "epistemic"]}], "host"
    body = next(n for n in files if n != "head.tflite")
    stage = {"kind": "graph", "file": body, "sha256": sha256_file(folder / body), "inputs": ["x"], "runs_on": runs_on,
             "outputs": list(body_out) if int8 else list(outputs), "tensors": tensors([body])}
    if precision == "edgetpu":
        stage["edgetpu_file"] = body.replace(".tflite", "_edgetpu.tflite")
    stages = [stage]
    if int8:
        stages.append({"kind": "graph", "file": "head.tflite", "sha256": sha256_file(folder / "head.tflite"),
                       "inputs": list(body_out), "runs_on": "cpu", "outputs": list(outputs),
                       "tensors": tensors(["head.tflite"])})
    return stages, "cpu_graph" if int8 else "in_graph"


def build_manifest(folder, posterior, *, mode: str, precision: str, num_samples: int, batch_size: int, outputs,
                   body_out, ops: dict, target: str = "litert", sparse_layout: str = "dense",
                   tensorflow_version: str = "") -> dict:
    """The version-2 manifest of a bundle whose ``.tflite`` files are written in ``folder``."""
    stages, post = build_stages(folder, mode, list(ops), precision, body_out, outputs)
    int8 = precision in ("int8", "edgetpu")
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "target": target,
        "mode": mode, "precision": precision, "num_samples": int(num_samples),
        "class_names": list(posterior.class_names),
        "input": {"name": "x", "shape": [int(batch_size), *[int(d) for d in posterior.input_shape]],
                  "dtype": "int8" if int8 else "float32"},
        "outputs": output_meanings(posterior.kind, outputs),
        "postprocessing": post, "stages": stages, "ops": ops,
        "thresholds": None, "verification": None,
        "provenance": {
            "posterior_kind": posterior.kind, "method": posterior.method, "options": posterior.options,
            "sparse_layout": sparse_layout,
            **({"sparse_cost": "the shared mask is densified in the graph (SCATTER_ND, TRANSPOSE) on every "
                               "invoke; sparse_layout='dense' trades bytes for latency"}
               if sparse_layout == "shared_mask" else {}),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tensorflow": tensorflow_version, "python": platform.python_version(),
        },
    }
    if int8:  # the quantization the runtime applies to the float input
        first = stages[0]["tensors"][stages[0]["files"][0] if mode == "members" else stages[0]["file"]]
        x = next((e for e in first["inputs"] if e["name"] == "x"), None)
        if x is not None and x["quantization"] is not None:
            manifest["input"]["quantization"] = dict(x["quantization"])
    return manifest


SEAL = "fields_sha256"


def seal(manifest: dict) -> dict:
    """``manifest`` plus its seal: ``fields_sha256`` maps every other top-level field to the sha256
    of its canonical JSON, so an edit of any field (thresholds, class names, mode, ...) is caught at
    load time. A seal is a checksum, not a signature: whoever can write the folder can re-seal it."""
    body = {k: v for k, v in manifest.items() if k != SEAL}
    return {**body, SEAL: {k: digest_json(v) for k, v in body.items()}}


def check_seal(manifest: dict, path) -> bool:
    """Raise :class:`BundleError` naming the field when ``manifest`` does not match its seal.

    Returns False for an unsealed manifest (format 1, or written before seals existed), True when
    the seal matches."""
    if SEAL not in manifest:
        return False
    digests = manifest[SEAL]
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise BundleError(f"{path}: field `{SEAL}` must be an object of sha256 strings.")
    body = {k: v for k, v in manifest.items() if k != SEAL}
    for key in sorted(set(body) | set(digests)):
        if key not in digests:
            raise BundleError(f"{path}: field `{key}` is not covered by `{SEAL}`: added after conversion.")
        if key not in body:
            raise BundleError(f"{path}: field `{key}` listed in `{SEAL}` is missing: removed after conversion.")
        if digest_json(body[key]) != digests[key]:
            raise BundleError(f"{path}: field `{key}` does not match its digest in `{SEAL}`: manifest.json was "
                              "edited after conversion (re-convert, or restore the original file).")
    return True


def write_manifest(folder, manifest: dict) -> Path:
    """Validate ``manifest`` and write it, sealed (:func:`seal`), atomically as ``folder/manifest.json``."""
    path = Path(folder) / "manifest.json"
    validate_manifest(manifest, path)
    write_json(path, seal(manifest))
    return path


# -- the reader --------------------------------------------------------------------------------
def _need(obj, key, types, where):
    return require_field(obj, key, types, where, BundleError)


def stage_files(stage: dict) -> list:
    """The ``.tflite`` files a stage runs (none for ``host_head``)."""
    return [stage["file"]] if stage.get("kind") == "graph" else list(stage.get("files", []))


def _check_tensors(st: dict, sw: str) -> None:
    tensors = _need(st, "tensors", dict, sw)
    for f in stage_files(st):
        entry = _need(tensors, f, dict, f"{sw} tensors")
        for side in ("inputs", "outputs"):
            for j, t in enumerate(_need(entry, side, list, f"{sw} tensors[{f!r}]")):
                tw = f"{sw} tensors[{f!r}].{side}[{j}]"
                if not isinstance(t, dict):
                    raise BundleError(f"{tw}: must be an object.")
                for key, types in (("name", str), ("index", int), ("tensor_index", int), ("shape", list), ("dtype", str)):
                    _need(t, key, types, tw)
                q = t.get("quantization")
                if q is not None and not (isinstance(q, dict) and isinstance(q.get("scale"), (int, float))
                                          and isinstance(q.get("zero_point"), int)):
                    raise BundleError(f"{tw}: quantization must be null or {{scale, zero_point}}, found {q!r}.")
                if t.get("distribution") not in (None, "uniform", "normal"):
                    raise BundleError(f"{tw}: distribution {t['distribution']!r} is not 'uniform' or 'normal'.")


MAX_SAMPLES = 10_000
_ABSTAIN = "abstain"
_HEX = frozenset("0123456789abcdef")


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _check_class_names(names, where) -> None:
    """>= 2 unique, non-empty strings (at most 256 characters), none of them ``"abstain"``."""
    if not 2 <= len(names) <= 100_000:
        raise BundleError(f"{where}: field `class_names` must list >= 2 classes, found {len(names)}.")
    for i, c in enumerate(names):
        if not isinstance(c, str) or not c or len(c) > 256 or c == _ABSTAIN:
            raise BundleError(f"{where}: field `class_names[{i}]` must be a non-empty string other than "
                              f"{_ABSTAIN!r}; found {c!r:.80}.")
    if len(set(names)) != len(names):
        raise BundleError(f"{where}: field `class_names` must be unique; found repeated names.")


def _finite_number(v) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_thresholds(thr, where) -> None:
    """null, or ``{"score": "epistemic"|"total", <score>: finite >= 0, "coverage": (0, 1], ...}``."""
    if thr is None:
        return
    if not isinstance(thr, dict):
        raise BundleError(f"{where}: field `thresholds` must be an object or null, found {type(thr).__name__}.")
    score = thr.get("score")
    if score not in ("epistemic", "total"):
        raise BundleError(f"{where}: field `thresholds.score` must be 'epistemic' or 'total', found {score!r:.40}.")
    if not _finite_number(thr.get(score)) or thr[score] < 0:
        raise BundleError(f"{where}: field `thresholds.{score}` must be a finite number >= 0, found {thr.get(score)!r:.40}.")
    for k in ("epistemic", "total", "accepted_fraction", "accuracy_all", "accuracy_accepted"):
        if thr.get(k) is not None and not _finite_number(thr[k]):
            raise BundleError(f"{where}: field `thresholds.{k}` must be a finite number or null, found {thr[k]!r:.40}.")
    cov = thr.get("coverage")
    if cov is not None and not (_finite_number(cov) and 0 < cov <= 1):
        raise BundleError(f"{where}: field `thresholds.coverage` must be in (0, 1], found {cov!r:.40}.")


def _check_consistency(m, where) -> None:
    """Mode, precision, input dtype, stages and output names must tell one story (no relabelling)."""
    mode, prec, stages = m["mode"], m["precision"], m["stages"]
    int8 = prec in ("int8", "edgetpu")
    dtype = m["input"]["dtype"]
    if int8 != (dtype in ("int8", "uint8")):
        raise BundleError(f"{where}: precision {prec!r} does not match input.dtype {dtype!r} "
                          f"({'int8' if int8 else 'float32'} expected): the manifest was relabelled.")
    members = [st for st in stages if st["kind"] == "members"]
    if (mode == "members") != bool(members):
        raise BundleError(f"{where}: mode {mode!r} does not match the stages "
                          f"({'a members stage' if mode == 'members' else 'no members stage'} expected).")
    if m["format_version"] >= 2 and ("edgetpu" in m or any("edgetpu_file" in st for st in stages)) != (prec == "edgetpu") \
            and not (prec == "edgetpu" and mode == "members"):
        raise BundleError(f"{where}: precision {prec!r} does not match the Edge TPU fields (an edgetpu bundle has an "
                          "`edgetpu` section and an edgetpu_file per body graph; no other has).")
    kinds = [st["kind"] for st in stages]
    want_kinds = ["members", "host_head"] if mode == "members" else ["graph", "graph"] if int8 else ["graph"]
    if kinds != want_kinds:
        raise BundleError(f"{where}: field `stages` has kinds {kinds}; a {mode}/{prec} bundle runs {want_kinds}.")
    want_post = "host" if mode == "members" else "cpu_graph" if int8 else "in_graph"
    if m["postprocessing"] != want_post:
        raise BundleError(f"{where}: postprocessing {m['postprocessing']!r} does not match mode {mode!r} and "
                          f"precision {prec!r} ({want_post!r} expected).")
    for i, st in enumerate(stages):
        sums = [st.get("sha256")] if st["kind"] == "graph" else list(st.get("sha256") or [])
        if st["kind"] != "host_head" and not all(isinstance(d, str) and len(d) == 64 and set(d) <= _HEX for d in sums):
            raise BundleError(f"{where} stages[{i}]: sha256 must be 64 lowercase hex digits per file.")
        etpu = st.get("edgetpu_file")
        if etpu is not None:
            if prec != "edgetpu" or not isinstance(etpu, str) or Path(etpu).name != etpu or not etpu.endswith(".tflite"):
                raise BundleError(f"{where} stages[{i}]: edgetpu_file {etpu!r:.80} must be a plain .tflite name "
                                  "inside the bundle folder, in an edgetpu bundle.")
            digest = st.get("edgetpu_sha256")
            if digest is not None and not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= _HEX):
                raise BundleError(f"{where} stages[{i}]: edgetpu_sha256 must be 64 lowercase hex digits.")
        etpus = st.get("edgetpu_files")
        if etpus is not None:  # a members stage's compiled files, one per member
            digests = st.get("edgetpu_sha256")
            if prec != "edgetpu" or not isinstance(etpus, list) or len(etpus) != len(st.get("files") or []) or not all(
                    isinstance(f, str) and Path(f).name == f and f.endswith(".tflite") for f in etpus):
                raise BundleError(f"{where} stages[{i}]: edgetpu_files must list one plain .tflite name inside the "
                                  "bundle folder per member, in an edgetpu bundle.")
            if digests is not None and not (isinstance(digests, list) and len(digests) == len(etpus) and all(
                    isinstance(d, str) and len(d) == 64 and set(d) <= _HEX for d in digests)):
                raise BundleError(f"{where} stages[{i}]: edgetpu_sha256 must list 64-hex-digit checksums, one per "
                                  "file of edgetpu_files.")
    outputs = m.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in outputs.items()):
            raise BundleError(f"{where}: field `outputs` must map output names to their meanings (strings).")
        if m["format_version"] >= 2 and (mode == "dirichlet") != ("alpha" in outputs):
            raise BundleError(f"{where}: mode {mode!r} does not match the outputs {sorted(outputs)} "
                              "(a dirichlet bundle outputs alpha, no other does).")
    ops = m.get("ops")
    if ops is not None and not (isinstance(ops, dict) and all(
            isinstance(v, list) and all(isinstance(o, str) for o in v) for v in ops.values())):
        raise BundleError(f"{where}: field `ops` must map file names to lists of op names.")
    ver = m.get("verification")
    if ver is not None and not isinstance(ver, dict):
        raise BundleError(f"{where}: field `verification` must be an object or null.")


def validate_manifest(m: dict, path) -> dict:
    """Check the structure of a manifest (any readable version); raise :class:`BundleError` naming the field."""
    where = str(path)
    if not isinstance(m, dict):
        raise BundleError(f"{where}: the manifest must be a JSON object. Received: {type(m).__name__}")
    if m.get("format") != FORMAT:
        raise BundleError(f"{where}: field `format` is {m.get('format')!r}, expected {FORMAT!r}.")
    v = _need(m, "format_version", int, where)
    if v not in READABLE_VERSIONS:
        raise BundleError(f"{where}: format_version {v} is not supported (this runtime reads "
                          f"{', '.join(map(str, READABLE_VERSIONS))}).")
    if v >= 2 and _need(m, "target", str, where) not in TARGETS:
        raise BundleError(f"{where}: field `target` is {m['target']!r}; known targets: {', '.join(TARGETS)}.")
    mode = _need(m, "mode", str, where)
    if mode not in MODES:
        raise BundleError(f"{where}: field `mode` is {mode!r}; known modes: {', '.join(MODES)}.")
    prec = _need(m, "precision", str, where)
    if prec not in PRECISIONS:
        raise BundleError(f"{where}: field `precision` is {prec!r}; known precisions: {', '.join(PRECISIONS)}.")
    s = _need(m, "num_samples", int, where)
    if not 1 <= s <= MAX_SAMPLES:
        raise BundleError(f"{where}: field `num_samples` must be an integer in [1, {MAX_SAMPLES}], found {s}.")
    names = _need(m, "class_names", list, where)
    _check_class_names(names, where)
    inp = _need(m, "input", dict, where)
    shape = _need(inp, "shape", list, f"{where} input")
    if not shape or len(shape) > 8 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < 1 << 24
                                              for d in shape) or _prod(shape) > 1 << 28:
        raise BundleError(f"{where}: input.shape must be at most 8 static positive sizes, found {shape!s:.80}.")
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
        for f in stage_files(st):
            if not isinstance(f, str) or Path(f).name != f:
                raise BundleError(f"{sw}: file name {f!r} must be a plain name inside the bundle folder.")
        if v >= 2 and kind != "host_head":
            _check_tensors(st, sw)
    _check_thresholds(m.get("thresholds"), where)
    _check_consistency(m, where)
    micro = m.get("micro")
    if micro is not None and not isinstance(micro, dict):
        raise BundleError(f"{where}: field `micro` must be an object.")
    return m


def upgrade_manifest(m: dict, folder=None) -> dict:
    """The version-2 view of a valid manifest of any readable version (a new dict; ``m`` is unchanged).

    Version 1 had no ``target`` (it was always LiteRT) and no tensor map; with ``folder`` the map is
    read from the bundle's files, else each stage's ``tensors`` is ``None``.
    """
    import copy

    out = copy.deepcopy(m)
    if out["format_version"] == 1:
        out["target"] = "litert"
        for st in out["stages"]:
            if st["kind"] != "host_head":
                st["tensors"] = {f: graph_tensors(Path(folder) / f) for f in stage_files(st)} if folder else None
        out["format_version"] = 2
    return out
