"""The on-disk posterior folder: safe, atomic, validated.

Layout::

    posterior.json     kind, method, options, class names, format version, weight specs, checksums
    architecture.json  the Keras architecture (``model.to_json()``)
    weights.npz        one array per weight tensor, stacked over the S stored weight sets
                       (``allow_pickle=False``)

A load checks the format version, the checksums (a truncated or edited file is named), the
weight names, shapes and dtypes against both ``posterior.json`` and the architecture.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tflbayes._io import atomic_dir, load_npz, read_json, sha256_file, write_json
from tflbayes._keras import keras
from tflbayes.errors import PosteriorFormatError

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load"]

FORMAT = "tflbayes-posterior"
FORMAT_VERSION = 1
_FILES = ("architecture.json", "weights.npz")


def _weight_key(i: int) -> str:
    return f"w{i:03d}"


def save(posterior, path) -> Path:
    from tflbayes import __version__

    sets = posterior.weight_sets()
    names = [w.name for w in posterior.model.weights]
    arrays = {_weight_key(i): np.stack([ws[i] for ws in sets]).astype(np.float32) for i in range(len(names))}
    with atomic_dir(path) as tmp:
        (tmp / "architecture.json").write_text(posterior.model.to_json())
        np.savez(tmp / "weights.npz", **arrays)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": posterior.kind,
            "method": posterior.method,
            "options": posterior.options,
            "class_names": posterior.class_names,
            "input_shape": [None if d is None else int(d) for d in posterior.input_shape],
            "num_classes": posterior.num_classes,
            "num_weight_sets": len(sets),
            "weights": [
                {"key": _weight_key(i), "name": n, "shape": list(arrays[_weight_key(i)].shape[1:]), "dtype": "float32"}
                for i, n in enumerate(names)
            ],
            "sha256": {f: sha256_file(tmp / f) for f in _FILES},
            "tflbayes_version": __version__,
        }
        json.dumps(meta)  # fail before the rename if options are not plain data
        write_json(tmp / "posterior.json", meta)
    return Path(path)


def _require(meta, field, types, path):
    if field not in meta:
        raise PosteriorFormatError(f"{path}: field `{field}` is missing.")
    if not isinstance(meta[field], types):
        raise PosteriorFormatError(f"{path}: field `{field}` has the wrong type ({type(meta[field]).__name__}).")
    return meta[field]


def load(path):
    """Load a posterior folder written by :meth:`Posterior.save`.

    Raises:
        PosteriorFormatError: naming the file and the field that is missing, truncated,
            edited or of an unknown version.
    """
    import tflbayes.layers  # noqa: F401  (registers the custom layers for deserialization)
    from tflbayes.posterior.ensemble import EnsemblePosterior
    from tflbayes.posterior.stochastic import StochasticPosterior

    kinds = {"ensemble": EnsemblePosterior, "stochastic": StochasticPosterior}

    root = Path(path)
    if not root.is_dir():
        raise PosteriorFormatError(f"Posterior folder {root} does not exist.")
    meta_path = root / "posterior.json"
    meta = read_json(meta_path, PosteriorFormatError, "posterior file")
    if meta.get("format") != FORMAT:
        raise PosteriorFormatError(f"{meta_path}: field `format` is {meta.get('format')!r}, expected {FORMAT!r}.")
    version = _require(meta, "format_version", int, meta_path)
    if version > FORMAT_VERSION or version < 1:
        raise PosteriorFormatError(
            f"{meta_path}: format_version {version} is not supported (this tflbayes reads 1..{FORMAT_VERSION}); "
            "upgrade tflbayes."
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
    arrays = load_npz(root / "weights.npz", PosteriorFormatError)
    stacked = []
    for spec, var in zip(specs, model_weights):
        key = spec["key"]
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
    meta = {**meta, "method": method, "options": options, "class_names": class_names}
    cls = kinds[kind]
    try:
        return cls._from_storage(model, sets, meta)
    except (ValueError, TypeError, KeyError) as e:
        raise PosteriorFormatError(f"{meta_path}: the stored fields do not make a valid {kind} posterior: {e}") from None
