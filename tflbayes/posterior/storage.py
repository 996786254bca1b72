"""The on-disk posterior folder: safe, atomic, validated.

Layout::

    posterior.json     kind, method, options, class names, format version, weight specs, checksums
    architecture.json  the Keras architecture (``model.to_json()``)
    weights.npz        one array per weight tensor, stacked over the S stored weight sets
                       (``allow_pickle=False``)

An ensemble whose members share one sparsity mask (``EnsemblePosterior.mask``) is written in the
``shared_mask`` layout (format version 2, ``"layout": "shared_mask"`` in posterior.json): each
masked tensor is stored as ``<key>_idx`` (int32 ``[nnz]``, the flat positions of the mask, once)
and ``<key>_val`` (float32 ``[S, nnz]``, the members' values there), so N non-zeros per member
cost ``N + NS`` numbers (``O(2N + NS)`` in the survey's COO accounting) instead of ``O(3NS)``.
Dense posteriors keep format version 1, byte for byte.

A load checks the format version, the checksums (a truncated or edited file is named), the
weight names, shapes and dtypes against both ``posterior.json`` and the architecture, and for
the shared-mask layout that the indices are sorted, unique and in range and that every
member's values match the mask's nnz.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tflbayes._io import atomic_dir, load_npz, read_json, require_field, sha256_file, write_json
from tflbayes._keras import keras
from tflbayes.errors import PosteriorFormatError

__all__ = ["FORMAT", "FORMAT_VERSION", "SHARED_MASK_VERSION", "LAYOUTS", "save", "load"]

FORMAT = "tflbayes-posterior"
FORMAT_VERSION = 1  # what a dense posterior is written as
SHARED_MASK_VERSION = 2  # the shared-mask layout (an older reader says "upgrade" instead of misreading)
_MAX_VERSION = SHARED_MASK_VERSION
LAYOUTS = ("dense", "shared_mask")
_FILES = ("architecture.json", "weights.npz")


def _weight_key(i: int) -> str:
    return f"w{i:03d}"


def save(posterior, path) -> Path:
    from tflbayes import __version__

    sets = posterior.weight_sets()
    names = [w.name for w in posterior.model.weights]
    mask = getattr(posterior, "mask", None)
    masked = mask is not None and any(m is not None for m in mask)
    arrays, specs = {}, []
    for i, n in enumerate(names):
        key = _weight_key(i)
        stacked = np.stack([ws[i] for ws in sets]).astype(np.float32)
        spec = {"key": key, "name": n, "shape": list(stacked.shape[1:]), "dtype": "float32"}
        if masked and mask[i] is not None:
            idx = np.flatnonzero(mask[i].reshape(-1)).astype(np.int32)
            arrays[f"{key}_idx"] = idx
            arrays[f"{key}_val"] = np.ascontiguousarray(stacked.reshape(len(sets), -1)[:, idx])
            spec.update(storage="shared_mask", nnz=int(idx.size))
        else:
            arrays[key] = stacked
        specs.append(spec)
    with atomic_dir(path) as tmp:
        (tmp / "architecture.json").write_text(posterior.model.to_json())
        np.savez(tmp / "weights.npz", **arrays)
        meta = {
            "format": FORMAT,
            "format_version": SHARED_MASK_VERSION if masked else FORMAT_VERSION,
            **({"layout": "shared_mask"} if masked else {}),
            "kind": posterior.kind,
            "method": posterior.method,
            "options": posterior.options,
            "class_names": posterior.class_names,
            "input_shape": [None if d is None else int(d) for d in posterior.input_shape],
            "num_classes": posterior.num_classes,
            "num_weight_sets": len(sets),
            "weights": specs,
            "sha256": {f: sha256_file(tmp / f) for f in _FILES},
            "tflbayes_version": __version__,
        }
        json.dumps(meta)  # fail before the rename if options are not plain data
        write_json(tmp / "posterior.json", meta)
    return Path(path)


def _require(meta, field, types, path):
    return require_field(meta, field, types, path, PosteriorFormatError)


def load(path):
    """Load a posterior folder written by :meth:`Posterior.save`.

    Raises:
        PosteriorFormatError: naming the file and the field that is missing, truncated,
            edited or of an unknown version.
    """
    import tflbayes.layers  # noqa: F401  (registers the custom layers for deserialization)
    from tflbayes.posterior.dirichlet import DirichletPosterior
    from tflbayes.posterior.distilled import DistilledPosterior
    from tflbayes.posterior.ensemble import EnsemblePosterior
    from tflbayes.posterior.stochastic import StochasticPosterior

    kinds = {"ensemble": EnsemblePosterior, "stochastic": StochasticPosterior,
             "dirichlet": DirichletPosterior, "distilled": DistilledPosterior}

    root = Path(path)
    if not root.is_dir():
        raise PosteriorFormatError(f"Posterior folder {root} does not exist.")
    meta_path = root / "posterior.json"
    meta = read_json(meta_path, PosteriorFormatError, "posterior file")
    if meta.get("format") != FORMAT:
        raise PosteriorFormatError(f"{meta_path}: field `format` is {meta.get('format')!r}, expected {FORMAT!r}.")
    version = _require(meta, "format_version", int, meta_path)
    if version > _MAX_VERSION or version < 1:
        raise PosteriorFormatError(
            f"{meta_path}: format_version {version} is not supported (this tflbayes reads 1..{_MAX_VERSION}); "
            "upgrade tflbayes."
        )
    layout = meta.get("layout", "dense")
    if layout not in LAYOUTS or (layout == "shared_mask" and version < SHARED_MASK_VERSION):
        raise PosteriorFormatError(
            f"{meta_path}: field `layout` is {layout!r}; expected one of {list(LAYOUTS)} "
            f"('shared_mask' needs format_version >= {SHARED_MASK_VERSION})."
        )
    kind = _require(meta, "kind", str, meta_path)
    if kind not in kinds:
        raise PosteriorFormatError(f"{meta_path}: field `kind` is {kind!r}; known kinds: {sorted(kinds)}.")
    checksums = _require(meta, "sha256", dict, meta_path)
    for f in _FILES:
        fp = root / f
        if not fp.is_file():
            raise PosteriorFormatError(f"{fp} is missing.")
        if checksums.get(f) != sha256_file(fp):
            raise PosteriorFormatError(
                f"{fp} does not match the checksum recorded in posterior.json: it was truncated or edited."
            )
    try:
        model = keras.models.model_from_json((root / "architecture.json").read_text())
    except Exception as e:
        raise PosteriorFormatError(f"{root / 'architecture.json'} cannot be rebuilt as a Keras model: {e}") from None
    method = _require(meta, "method", str, meta_path)
    options = _require(meta, "options", dict, meta_path)
    class_names = _require(meta, "class_names", list, meta_path)
    n_out = int(model.output_shape[-1])
    if kind == "distilled":  # a GPED student has one extra output per distilled expectation
        n_out -= len(options.get("expectations") or ["predictive"]) - 1
    if len(class_names) != n_out or not all(isinstance(c, str) for c in class_names):
        raise PosteriorFormatError(
            f"{meta_path}: field `class_names` must list {n_out} strings (the model's outputs); found {class_names!r:.200}."
        )
    specs = _require(meta, "weights", list, meta_path)
    model_weights = model.weights
    if len(specs) != len(model_weights):
        raise PosteriorFormatError(
            f"{meta_path}: lists {len(specs)} weight tensors, the architecture has {len(model_weights)}."
        )
    n_sets = _require(meta, "num_weight_sets", int, meta_path)
    if n_sets < 1:
        raise PosteriorFormatError(f"{meta_path}: field `num_weight_sets` must be >= 1, found {n_sets}.")
    for i, (spec, var) in enumerate(zip(specs, model_weights)):
        if not isinstance(spec, dict) or not isinstance(spec.get("key"), str) or not isinstance(spec.get("shape"), list):
            raise PosteriorFormatError(f"{meta_path}: `weights[{i}]` must be an object with `key` and `shape`.")
        if [int(d) for d in var.shape] != spec["shape"]:
            raise PosteriorFormatError(
                f"{meta_path}: `weights[{i}].shape` is {spec['shape']}, the architecture's {var.name} is {list(var.shape)}."
            )
    if layout == "shared_mask" and kind != "ensemble":
        raise PosteriorFormatError(f"{meta_path}: layout 'shared_mask' is only defined for kind 'ensemble', not {kind!r}.")
    arrays = load_npz(root / "weights.npz", PosteriorFormatError)
    stacked, mask = [], []
    for spec, var in zip(specs, model_weights):
        key = spec["key"]
        if layout == "shared_mask" and spec.get("storage") == "shared_mask":
            a, m = _load_shared_mask(arrays, spec, var, n_sets, root / "weights.npz")
            stacked.append(a)
            mask.append(m)
            continue
        mask.append(None)
        if key not in arrays:
            raise PosteriorFormatError(f"{root / 'weights.npz'}: array {key!r} ({spec.get('name')}) is missing.")
        a = arrays[key]
        want = (n_sets, *[int(d) for d in var.shape])
        if a.shape != want:
            raise PosteriorFormatError(
                f"{root / 'weights.npz'}: array {key!r} ({var.name}) has shape {list(a.shape)}, expected {list(want)}."
            )
        if a.dtype != np.float32:
            raise PosteriorFormatError(f"{root / 'weights.npz'}: array {key!r} has dtype {a.dtype}, expected float32.")
        stacked.append(a)
    sets = [[a[s] for a in stacked] for s in range(n_sets)]
    meta = {**meta, "method": method, "options": options, "class_names": class_names,
            "mask": mask if any(m is not None for m in mask) else None}
    cls = kinds[kind]
    try:
        return cls._from_storage(model, sets, meta)
    except (ValueError, TypeError, KeyError) as e:
        raise PosteriorFormatError(f"{meta_path}: the stored fields do not make a valid {kind} posterior: {e}") from None


def _load_shared_mask(arrays, spec, var, n_sets, npz_path):
    """One masked tensor: ``(<key>_idx, <key>_val)`` -> (dense ``[S, *shape]``, bool mask), validated."""
    key = spec["key"]
    shape = [int(d) for d in var.shape]
    size = int(np.prod(shape)) if shape else 1
    for suffix in ("_idx", "_val"):
        if key + suffix not in arrays:
            raise PosteriorFormatError(f"{npz_path}: array {key + suffix!r} ({spec.get('name')}) is missing.")
    idx, val = arrays[key + "_idx"], arrays[key + "_val"]
    if idx.dtype != np.int32 or idx.ndim != 1:
        raise PosteriorFormatError(
            f"{npz_path}: array {key}_idx (the shared mask of {var.name}) must be 1-D int32; "
            f"found {idx.dtype} of shape {list(idx.shape)}.")
    nnz = spec.get("nnz")
    if nnz != idx.size:
        raise PosteriorFormatError(
            f"{npz_path}: the shared mask {key}_idx of {var.name} holds {idx.size} indices but posterior.json "
            f"records nnz={nnz!r}.")
    if idx.size and (idx[0] < 0 or idx[-1] >= size or np.any(np.diff(idx) <= 0)):
        raise PosteriorFormatError(
            f"{npz_path}: the shared mask {key}_idx of {var.name} must hold sorted, unique flat indices in "
            f"[0, {size}).")
    if val.dtype != np.float32:
        raise PosteriorFormatError(f"{npz_path}: array {key}_val has dtype {val.dtype}, expected float32.")
    if val.shape != (n_sets, idx.size):
        raise PosteriorFormatError(
            f"{npz_path}: array {key}_val ({var.name}) has shape {list(val.shape)}; the values must match the "
            f"mask's nnz: expected [{n_sets}, {idx.size}] (S members x nnz).")
    dense = np.zeros((n_sets, size), np.float32)
    dense[:, idx] = val
    mask = np.zeros(size, bool)
    mask[idx] = True
    return dense.reshape(n_sets, *shape), mask.reshape(shape)
