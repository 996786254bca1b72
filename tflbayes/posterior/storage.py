"""The on-disk posterior folder: safe, atomic, validated.

Layout::

    posterior.json     kind, method, options, class names, format version, weight specs, checksums,
                       file sizes and a digest of each of its own fields
    architecture.json  the Keras architecture (``model.to_json()``)
    weights.npz        one array per weight tensor, stacked over the S stored weight sets
                       (``allow_pickle=False``)

An ensemble whose members share one sparsity mask (``EnsemblePosterior.mask``) is written in the
``shared_mask`` layout (format version 2, ``"layout": "shared_mask"`` in posterior.json): each
masked tensor is stored as ``<key>_idx`` (int32 ``[nnz]``, the flat positions of the mask, once)
and ``<key>_val`` (float32 ``[S, nnz]``, the members' values there), so N non-zeros per member
cost ``N + NS`` numbers (``O(2N + NS)`` in the survey's COO accounting) instead of ``O(3NS)``.
Dense posteriors keep format version 1.

A load, before anything is built:

- refuses files that are symlinks leaving the folder or not regular files, and reads no more
  than the sizes ``posterior.json`` declares (``sizes``; older folders: fixed bounds);
- checks every field of ``posterior.json`` for type and range (``num_samples`` and
  ``num_weight_sets`` in ``[1, 10000]``, class names unique non-empty strings other than
  ``"abstain"``, JSON at most 200 levels deep, ...), the checksums of the other two files, and
  the digest of each of its own fields (``fields_sha256``), so an edit of ``kind``,
  ``options`` or ``class_names`` is named; folders written before the digests load with a warning;
- walks ``architecture.json`` against an allowlist (:mod:`tflbayes.posterior.allowlist`): no
  ``Lambda``, no module or function outside Keras's built-ins and tflbayes's layers;
- checks the weight names, shapes and dtypes against both ``posterior.json`` and the
  architecture, and for the shared-mask layout that the indices are sorted, unique and in range.

Posterior kinds register themselves (:func:`register_kind`, called for every subclass of
:class:`~tflbayes.posterior.Posterior` that sets ``kind``); a kind may validate its own options
with a ``check_stored_options(options, where)`` classmethod.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from tflbayes._io import (
    atomic_dir, check_member, digest_json, load_npz, read_json, require_field, sha256_file, write_json,
)
from tflbayes._checks import check_path
from tflbayes._keras import keras
from tflbayes.errors import InvalidTypeError, PosteriorFormatError

__all__ = ["FORMAT", "FORMAT_VERSION", "SHARED_MASK_VERSION", "LAYOUTS", "KINDS", "MAX_SAMPLES", "register_kind",
           "save", "load", "folder_digest"]

FORMAT = "tflbayes-posterior"
FORMAT_VERSION = 1  # what a dense posterior is written as
SHARED_MASK_VERSION = 2  # the shared-mask layout (an older reader says "upgrade" instead of misreading)
_MAX_VERSION = SHARED_MASK_VERSION
LAYOUTS = ("dense", "shared_mask")
_FILES = ("architecture.json", "weights.npz")
_META = "posterior.json"
MAX_SAMPLES = 10_000  # bound on num_samples / num_weight_sets a folder may declare
_MAX_META_BYTES = 16 << 20
_MAX_CLASSES = 100_000
_MAX_NAME = 256
_ABSTAIN = "abstain"  # what a bundle's decide() returns: never a class name

#: ``kind -> Posterior subclass``: every kind a folder may hold.
KINDS: dict = {}


def register_kind(cls) -> None:
    """Make ``cls`` (a Posterior subclass with a ``kind`` and ``_from_storage``) loadable."""
    kind = getattr(cls, "kind", "")
    if not isinstance(kind, str) or not kind:
        raise InvalidTypeError(f"{cls.__name__} needs a non-empty `kind` string to be stored.")
    if not hasattr(cls, "_from_storage"):
        raise InvalidTypeError(f"{cls.__name__} needs a `_from_storage(model, sets, meta)` classmethod to be loaded.")
    KINDS[kind] = cls


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
            "sizes": {f: (tmp / f).stat().st_size for f in _FILES},
            "tflbayes_version": __version__,
        }
        json.dumps(meta)  # fail before the rename if options are not plain data
        meta["fields_sha256"] = {k: digest_json(v) for k, v in meta.items()}
        write_json(tmp / _META, meta)
    return Path(path)


def folder_digest(path) -> str:
    """One sha256 over a posterior folder's three files (compare it with a digest the publisher gives)."""
    import hashlib

    root = check_path("path", path)
    h = hashlib.sha256()
    for f in (_META, *_FILES):
        h.update(f.encode() + b"\0" + sha256_file(check_member(root, f, PosteriorFormatError)).encode() + b"\n")
    return h.hexdigest()


def _require(meta, field, types, path):
    return require_field(meta, field, types, path, PosteriorFormatError)


def _int_field(meta, field, path, lo, hi):
    v = _require(meta, field, int, path)
    if not lo <= v <= hi:
        raise PosteriorFormatError(f"{path}: field `{field}` must be an integer in [{lo}, {hi}], found {v}.")
    return v


def _check_class_names(names, n_out, path) -> list:
    if len(names) != n_out or len(names) > _MAX_CLASSES:
        raise PosteriorFormatError(
            f"{path}: field `class_names` must list {n_out} strings (the model's outputs); found {names!r:.200}.")
    for i, c in enumerate(names):
        if not isinstance(c, str) or not c or len(c) > _MAX_NAME or c == _ABSTAIN:
            raise PosteriorFormatError(
                f"{path}: field `class_names[{i}]` must be a non-empty string of at most {_MAX_NAME} characters "
                f"other than {_ABSTAIN!r}; found {c!r:.80}.")
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise PosteriorFormatError(f"{path}: field `class_names` must be unique; repeated: {dup[:5]}.")
    return names


def _check_options(cls, options, path) -> None:
    """Fields every kind reads, then the kind's own check."""
    s = options.get("num_samples")
    if s is not None and (isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_SAMPLES):
        raise PosteriorFormatError(
            f"{path}: field `options.num_samples` must be an integer in [1, {MAX_SAMPLES}], found {s!r:.80}.")
    exps = options.get("expectations")
    if exps is not None and (not isinstance(exps, list) or not all(isinstance(e, str) for e in exps)):
        raise PosteriorFormatError(f"{path}: field `options.expectations` must be a list of strings, found {exps!r:.80}.")
    hook = getattr(cls, "check_stored_options", None)
    if hook is not None:
        hook(options, path)


def _check_files(root, meta, meta_path, npz_bytes) -> None:
    """Regular files inside the folder, no larger than the metadata allows, with the recorded checksums."""
    checksums = _require(meta, "sha256", dict, meta_path)
    bounds = {"architecture.json": _MAX_META_BYTES * 4, "weights.npz": npz_bytes}
    for f in _FILES:
        fp = check_member(root, f, PosteriorFormatError)
        size = fp.stat().st_size
        if size > bounds[f]:
            raise PosteriorFormatError(
                f"{fp} is {size} bytes, more than the {bounds[f]} posterior.json's weight specs allow: "
                "it was replaced or edited.")
        if not isinstance(checksums.get(f), str) or checksums[f] != sha256_file(fp):
            raise PosteriorFormatError(
                f"{fp} does not match the checksum recorded in posterior.json: it was truncated or edited.")


def _check_sizes(root, meta, meta_path) -> None:
    """The exact sizes recorded at save (folders written before them have none)."""
    sizes = meta.get("sizes")
    if sizes is None:
        return
    if not isinstance(sizes, dict):
        raise PosteriorFormatError(f"{meta_path}: field `sizes` must be an object, found {type(sizes).__name__}.")
    for f in _FILES:
        want, size = sizes.get(f), (root / f).stat().st_size
        if isinstance(want, bool) or not isinstance(want, int) or size != want:
            raise PosteriorFormatError(
                f"{root / f} is {size} bytes, posterior.json declares {want!r:.40} (field `sizes.{f}`): "
                "it was truncated, replaced or edited.")


def _check_field_digests(meta, meta_path) -> None:
    digests = meta.get("fields_sha256")
    if digests is None:
        warnings.warn(f"{meta_path} has no field digests (written by an older tflbayes): edits to its fields "
                      "cannot be detected. Save the posterior again to add them.", UserWarning, stacklevel=3)
        return
    if not isinstance(digests, dict):
        raise PosteriorFormatError(f"{meta_path}: field `fields_sha256` must be an object.")
    fields = set(meta) - {"fields_sha256"}
    for k in sorted(fields | set(digests)):
        if k not in digests:
            raise PosteriorFormatError(f"{meta_path}: field `{k}` was added after saving (it has no digest).")
        if k not in fields:
            raise PosteriorFormatError(f"{meta_path}: field `{k}` was removed after saving.")
        if digests[k] != digest_json(meta[k]):
            raise PosteriorFormatError(
                f"{meta_path}: field `{k}` was edited after saving (it does not match its digest in fields_sha256).")


def _read_architecture(root, meta_path):
    from tflbayes.posterior.allowlist import check_architecture

    arch_path = root / "architecture.json"
    config = read_json(arch_path, PosteriorFormatError, "architecture file", max_bytes=_MAX_META_BYTES * 4)
    check_architecture(config, arch_path)
    try:  # Keras's safe mode (the default) stays on: it refuses bytecode lambdas too
        return keras.models.model_from_json(json.dumps(config))
    except Exception as e:  # noqa: BLE001 (Keras raises anything on a bad config)
        raise PosteriorFormatError(
            f"{arch_path} cannot be rebuilt as a Keras model: {type(e).__name__}: {str(e)[:300]}") from None


def load(path):
    """Load a posterior folder written by :meth:`Posterior.save`.

    Raises:
        PosteriorFormatError: naming the file and the field that is missing, truncated,
            edited, out of range, of an unknown version, or names code outside the allowlist.
    """
    import tflbayes.posterior  # noqa: F401  (registers the built-in kinds)

    root = check_path("path", path)
    if not root.is_dir():
        raise PosteriorFormatError(f"Posterior folder {root} does not exist.")
    meta_path = check_member(root, _META, PosteriorFormatError, "posterior file")
    meta = read_json(meta_path, PosteriorFormatError, "posterior file", max_bytes=_MAX_META_BYTES)
    if meta.get("format") != FORMAT:
        raise PosteriorFormatError(f"{meta_path}: field `format` is {meta.get('format')!r:.80}, expected {FORMAT!r}.")
    version = _require(meta, "format_version", int, meta_path)
    if version > _MAX_VERSION or version < 1:
        raise PosteriorFormatError(
            f"{meta_path}: format_version {version!r:.20} is not supported (this tflbayes reads 1..{_MAX_VERSION}); "
            "upgrade tflbayes.")
    layout = meta.get("layout", "dense")
    if not isinstance(layout, str) or layout not in LAYOUTS or (layout == "shared_mask" and version < SHARED_MASK_VERSION):
        raise PosteriorFormatError(
            f"{meta_path}: field `layout` is {layout!r:.80}; expected one of {list(LAYOUTS)} "
            f"('shared_mask' needs format_version >= {SHARED_MASK_VERSION}).")
    kind = _require(meta, "kind", str, meta_path)
    if kind not in KINDS:
        raise PosteriorFormatError(f"{meta_path}: field `kind` is {kind!r:.80}; known kinds: {sorted(KINDS)}.")
    cls = KINDS[kind]
    if layout == "shared_mask" and kind != "ensemble":
        raise PosteriorFormatError(f"{meta_path}: layout 'shared_mask' is only defined for kind 'ensemble', not {kind!r}.")
    method = _require(meta, "method", str, meta_path)
    options = _require(meta, "options", dict, meta_path)
    class_names = _require(meta, "class_names", list, meta_path)
    specs = _require(meta, "weights", list, meta_path)
    n_sets = _int_field(meta, "num_weight_sets", meta_path, 1, MAX_SAMPLES)
    if kind != "ensemble" and n_sets != 1:
        raise PosteriorFormatError(f"{meta_path}: field `num_weight_sets` is {n_sets}; a {kind} posterior stores 1.")
    _check_options(cls, options, meta_path)
    npz_bytes = _spec_bytes(specs, layout, n_sets, meta_path)
    _check_files(root, meta, meta_path, npz_bytes)
    model = _read_architecture(root, meta_path)
    n_out = int(model.output_shape[-1])
    if kind == "distilled":  # a GPED student has one extra output per distilled expectation
        n_out -= len(options.get("expectations") or ["predictive"]) - 1
    _check_class_names(class_names, n_out, meta_path)
    _check_shapes(meta, model, len(class_names), meta_path)
    model_weights = model.weights
    if len(specs) != len(model_weights):
        raise PosteriorFormatError(
            f"{meta_path}: lists {len(specs)} weight tensors, the architecture has {len(model_weights)}.")
    for i, (spec, var) in enumerate(zip(specs, model_weights)):
        if spec["shape"] != [int(d) for d in var.shape]:
            raise PosteriorFormatError(
                f"{meta_path}: `weights[{i}].shape` is {spec['shape']!s:.80}, the architecture's {var.name} is "
                f"{list(var.shape)}.")
    arrays = load_npz(root / "weights.npz", PosteriorFormatError, max_bytes=npz_bytes)
    stacked, mask = _weights(arrays, specs, model_weights, layout, n_sets, root / "weights.npz")
    _check_sizes(root, meta, meta_path)
    _check_field_digests(meta, meta_path)
    sets = [[a[s] for a in stacked] for s in range(n_sets)]
    meta = {**meta, "method": method, "options": options, "class_names": class_names,
            "mask": mask if any(m is not None for m in mask) else None}
    try:
        return cls._from_storage(model, sets, meta)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        raise PosteriorFormatError(f"{meta_path}: the stored fields do not make a valid {kind} posterior: {e}") from None


def _check_shapes(meta, model, num_classes, meta_path) -> None:
    """``input_shape`` / ``num_classes`` (informational fields) must describe the architecture."""
    shape = meta.get("input_shape")
    want = [None if d is None else int(d) for d in model.input_shape[1:]]
    if shape is not None and shape != want:
        raise PosteriorFormatError(f"{meta_path}: field `input_shape` is {shape!r:.80}, the architecture takes {want}.")
    n = meta.get("num_classes")
    if n is not None and (isinstance(n, bool) or n != num_classes):
        raise PosteriorFormatError(f"{meta_path}: field `num_classes` is {n!r:.80}, class_names lists {num_classes}.")


def _spec_bytes(specs, layout, n_sets, meta_path) -> int:
    """Validate the structure of every ``weights[i]``; return the bytes weights.npz may hold."""
    keys, total = set(), 1 << 16
    for i, spec in enumerate(specs):
        where = f"{meta_path}: `weights[{i}]`"
        if not isinstance(spec, dict) or not isinstance(spec.get("key"), str) or not isinstance(spec.get("shape"), list):
            raise PosteriorFormatError(f"{where} must be an object with `key` and `shape`.")
        if spec["key"] in keys or not spec["key"].isidentifier():
            raise PosteriorFormatError(f"{where}.key {spec['key']!r:.40} must be a unique plain name.")
        keys.add(spec["key"])
        shape = spec["shape"]
        if len(shape) > 8 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 31 for d in shape):
            raise PosteriorFormatError(f"{where}.shape must list at most 8 sizes >= 0, found {shape!s:.80}.")
        if spec.get("dtype", "float32") != "float32":
            raise PosteriorFormatError(f"{where}.dtype is {spec.get('dtype')!r:.40}; only float32 is stored.")
        size = math.prod(shape)
        storage = spec.get("storage")
        if storage is None:
            total += n_sets * size * 4 + 1024
        elif storage == "shared_mask" and layout == "shared_mask":
            nnz = spec.get("nnz")
            if isinstance(nnz, bool) or not isinstance(nnz, int) or not 0 <= nnz <= size:
                raise PosteriorFormatError(f"{where}.nnz must be an integer in [0, {size}], found {nnz!r:.40}.")
            total += (n_sets + 1) * nnz * 4 + 2048
        else:
            raise PosteriorFormatError(f"{where}.storage is {storage!r:.40}; expected 'shared_mask' in that layout, or none.")
    return total


def _weights(arrays, specs, model_weights, layout, n_sets, npz_path):
    """The stacked ``[S, *shape]`` arrays and the shared mask, checked against the specs; no extra members."""
    stacked, mask, used = [], [], set()
    for spec, var in zip(specs, model_weights):
        key = spec["key"]
        if layout == "shared_mask" and spec.get("storage") == "shared_mask":
            a, m = _load_shared_mask(arrays, spec, var, n_sets, npz_path)
            stacked.append(a)
            mask.append(m)
            used |= {key + "_idx", key + "_val"}
            continue
        mask.append(None)
        if key not in arrays:
            raise PosteriorFormatError(f"{npz_path}: array {key!r} ({spec.get('name')!s:.80}) is missing.")
        a = arrays[key]
        used.add(key)
        want = (n_sets, *[int(d) for d in var.shape])
        if a.shape != want:
            raise PosteriorFormatError(
                f"{npz_path}: array {key!r} ({var.name}) has shape {list(a.shape)}, expected {list(want)}.")
        if a.dtype != np.float32:
            raise PosteriorFormatError(f"{npz_path}: array {key!r} has dtype {a.dtype}, expected float32.")
        if not np.all(np.isfinite(a)):
            raise PosteriorFormatError(f"{npz_path}: array {key!r} ({var.name}) holds NaN or inf weights.")
        stacked.append(a)
    extra = sorted(set(arrays) - used)
    if extra:
        raise PosteriorFormatError(f"{npz_path}: holds arrays posterior.json does not list: {extra[:5]}.")
    return stacked, mask


def _load_shared_mask(arrays, spec, var, n_sets, npz_path):
    """One masked tensor: ``(<key>_idx, <key>_val)`` -> (dense ``[S, *shape]``, bool mask), validated."""
    key = spec["key"]
    shape = [int(d) for d in var.shape]
    size = int(np.prod(shape)) if shape else 1
    for suffix in ("_idx", "_val"):
        if key + suffix not in arrays:
            raise PosteriorFormatError(f"{npz_path}: array {key + suffix!r} ({spec.get('name')!s:.80}) is missing.")
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
    if not np.all(np.isfinite(val)):
        raise PosteriorFormatError(f"{npz_path}: array {key}_val ({var.name}) holds NaN or inf weights.")
    dense = np.zeros((n_sets, size), np.float32)
    dense[:, idx] = val
    mask = np.zeros(size, bool)
    mask[idx] = True
    return dense.reshape(n_sets, *shape), mask.reshape(shape)
