"""Shared-mask sparse ensembles on disk and on the device.

- the posterior folder stores the mask's indices once and the members' values: its size follows
  ``idx + S * values`` (checked on the real ``weights.npz``), far below the dense folder;
- a corrupted shared-mask folder (values that do not match the mask's nnz, bad indices) fails to
  load with PosteriorFormatError naming the file;
- the ``batched`` graph with ``sparse_layout="shared_mask"`` (SCATTER_ND densification) gives the
  dense layout's outputs within 1e-5 and a much smaller file, with builtin ops only.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import tflbayes as tb
from tflbayes._io import sha256_file
from tflbayes.architectures import cnn
from tflbayes.compress._targets import kernel_slots
from tflbayes.converters.graphs.batched import build_batched
from tflbayes.converters.tflite import op_names, to_tflite
from tflbayes.errors import InvalidInputError, PosteriorFormatError, TflbayesError
from tflbayes.posterior import EnsemblePosterior, load

from _litert import run
from conftest import make_mlp

DENSITY = 0.1  # 90 % sparsity


def shared_mask_ensemble(model, s, seed=0, density=DENSITY):
    """S random members inside one random mask over the kernels (biases dense)."""
    rng = np.random.default_rng(seed)
    base = model.get_weights()
    slots = kernel_slots(model)
    mask = [None] * len(base)
    for sl in slots:
        mask[sl.index] = rng.random(sl.shape) < density
    members = []
    for _ in range(s):
        ws = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in base]
        for sl in slots:
            ws[sl.index] = np.where(mask[sl.index], ws[sl.index], np.float32(0))
        members.append(ws)
    return EnsemblePosterior(model, members, method="sghmc", mask=mask, class_names=[f"c{i}" for i in range(10)])


@pytest.fixture(scope="module")
def mlp_sm():
    return shared_mask_ensemble(make_mlp(), 4)


# --------------------------------------------------------------------------- the posterior folder


def test_shared_mask_folder_round_trip(mlp_sm, tmp_path, digits):
    mlp_sm.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "posterior.json").read_text())
    assert meta["layout"] == "shared_mask" and meta["format_version"] == 2
    sparse_specs = [w for w in meta["weights"] if w.get("storage") == "shared_mask"]
    assert len(sparse_specs) == len(kernel_slots(mlp_sm.model))
    with np.load(tmp_path / "p" / "weights.npz", allow_pickle=False) as z:
        for spec in sparse_specs:
            assert z[spec["key"] + "_idx"].dtype == np.int32
            assert z[spec["key"] + "_val"].shape == (4, spec["nnz"])
    loaded = load(tmp_path / "p")
    assert loaded.mask is not None
    for a, b in zip(loaded.mask, mlp_sm.mask):
        assert (a is None and b is None) or np.array_equal(a, b)
    x = digits.x_test[:20]
    np.testing.assert_array_equal(loaded.sample_probs(x), mlp_sm.sample_probs(x))
    # a dense ensemble keeps the version-1 layout
    EnsemblePosterior(mlp_sm.model, mlp_sm.members).save(tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "posterior.json").read_text())
    assert meta["format_version"] == 1 and "layout" not in meta


def test_storage_follows_idx_plus_s_values_on_real_files(tmp_path):
    """weights.npz bytes = 4·nnz (indices, once) + S·4·(nnz + dense biases) + a constant per array."""
    model = make_mlp(hidden=(256, 128))
    slots = kernel_slots(model)
    sizes, dense_sizes = {}, {}
    for s in (1, 2, 4, 8):
        post = shared_mask_ensemble(model, s)
        post.save(tmp_path / f"s{s}")
        EnsemblePosterior(model, post.members).save(tmp_path / f"d{s}")
        sizes[s] = (tmp_path / f"s{s}" / "weights.npz").stat().st_size
        dense_sizes[s] = (tmp_path / f"d{s}" / "weights.npz").stat().st_size
    nnz = sum(int(post.mask[sl.index].sum()) for sl in slots)
    n_total = sum(int(np.prod(w.shape)) for w in model.get_weights())
    dense_other = n_total - sum(sl.size for sl in slots)  # the biases
    per_member = 4 * (nnz + dense_other)
    assert sizes[8] - sizes[4] == pytest.approx(4 * per_member, rel=0.01)  # slope: values per member
    assert sizes[2] - sizes[1] == pytest.approx(per_member, rel=0.01)
    n_arrays = 2 * len(slots) + (len(model.weights) - len(slots))
    intercept = sizes[1] - per_member
    assert 4 * nnz <= intercept <= 4 * nnz + 300 * n_arrays  # indices once + npy/zip headers
    # O(2N + NS) against the dense O(S * size) and a per-member COO O(3NS)
    assert sizes[8] < 0.15 * dense_sizes[8]
    kernel_bytes = sizes[8] - 8 * 4 * dense_other  # the biases stay dense per member
    assert kernel_bytes < 0.4 * (8 * 3 * 4 * nnz)  # (2 + S) / 3S = 0.42 in the survey's COO accounting


def _corrupt(path, edit):
    """Rewrite weights.npz through ``edit(arrays)`` and re-sign it (so the checksum is not what fails)."""
    with np.load(path / "weights.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    np.savez(path / "weights.npz", **arrays)
    meta = json.loads((path / "posterior.json").read_text())
    meta["sha256"]["weights.npz"] = sha256_file(path / "weights.npz")
    (path / "posterior.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, match", [
    (lambda a: a.update(w000_val=a["w000_val"][:, :-1]), "must match the mask's nnz"),
    (lambda a: a.update(w000_val=np.concatenate([a["w000_val"]] * 2)), "must match the mask's nnz"),
    (lambda a: a.update(w000_idx=a["w000_idx"][::-1].copy()), "sorted, unique"),
    (lambda a: a.update(w000_idx=a["w000_idx"].astype(np.int64)), "int32"),
    (lambda a: a.pop("w000_idx"), "w000_idx.*missing"),
])
def test_corrupt_shared_mask_folder_raises(mlp_sm, tmp_path, edit, match):
    mlp_sm.save(tmp_path / "p")
    _corrupt(tmp_path / "p", edit)
    with pytest.raises(PosteriorFormatError, match=match) as info:
        load(tmp_path / "p")
    assert "weights.npz" in str(info.value) and isinstance(info.value, TflbayesError)


def test_edited_nnz_or_layout_in_posterior_json_raises(mlp_sm, tmp_path):
    mlp_sm.save(tmp_path / "p")
    meta_path = tmp_path / "p" / "posterior.json"
    meta = json.loads(meta_path.read_text())
    meta["weights"][0]["nnz"] += 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PosteriorFormatError, match="nnz"):
        load(tmp_path / "p")
    meta["weights"][0]["nnz"] -= 1
    meta["format_version"] = 1  # a version-1 reader never wrote this layout
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PosteriorFormatError, match="layout"):
        load(tmp_path / "p")


def test_members_outside_the_mask_are_refused(mlp_sm):
    bad = [[w.copy() for w in ws] for ws in mlp_sm.members]
    k = kernel_slots(mlp_sm.model)[0].index
    bad[1][k][~mlp_sm.mask[k]] = 1.0
    with pytest.raises(ValueError, match="outside the shared mask"):
        EnsemblePosterior(mlp_sm.model, bad, mask=mlp_sm.mask)
    with pytest.raises(ValueError, match="boolean array"):
        EnsemblePosterior(mlp_sm.model, mlp_sm.members, mask=[m if m is None else m.astype(int) for m in mlp_sm.mask])


# --------------------------------------------------------------------------- the batched bundle


def _run(blob, x):
    return run(blob, signature="serving_default", x=x)


@pytest.mark.parametrize("arch, batch", [("mlp", 1), ("cnn", 1), ("cnn", 4)])
def test_shared_mask_bundle_equals_the_dense_layout(arch, batch, digits):
    model = make_mlp() if arch == "mlp" else cnn(digits.input_shape, 10, filters=(8, 16), dense=32)
    post = shared_mask_ensemble(model, 6, seed=1)
    blobs = {lay: to_tflite(build_batched(post, batch_size=batch, member_probs=True, sparse_layout=lay), post.model)
             for lay in ("dense", "shared_mask")}
    ops = op_names(blobs["shared_mask"])
    assert "SCATTER_ND" in ops and not any(o.startswith("CUSTOM") for o in ops)
    assert "SCATTER_ND" not in op_names(blobs["dense"])
    assert len(blobs["shared_mask"]) < 0.35 * len(blobs["dense"])
    x = digits.x_test[:batch]
    a, b = _run(blobs["dense"], x), _run(blobs["shared_mask"], x)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], atol=1e-5)
    ref = post.sample_probs(x)
    np.testing.assert_allclose(b["member_probs"], ref, atol=1e-4)


def test_shared_mask_layout_keeps_dense_kernels_dense_and_checks_its_argument(untrained_ensemble, digits):
    blob = to_tflite(build_batched(untrained_ensemble, sparse_layout="shared_mask"), untrained_ensemble.model)
    assert "SCATTER_ND" not in op_names(blob)  # nothing to save: constants as before
    np.testing.assert_allclose(_run(blob, digits.x_test[:1])["probs"],
                               untrained_ensemble.predict(digits.x_test[:1]).probs, atol=1e-5)
    with pytest.raises(InvalidInputError, match="sparse_layout"):
        build_batched(untrained_ensemble, sparse_layout="csr")


def test_per_member_pruned_ensemble_uses_the_union_of_masks(untrained_ensemble, digits):
    sparse = tb.compress.prune(untrained_ensemble, 0.9)  # independent masks: the union is stored
    blobs = [to_tflite(build_batched(sparse, sparse_layout=lay), sparse.model) for lay in ("dense", "shared_mask")]
    x = digits.x_test[:1]
    np.testing.assert_allclose(_run(blobs[1], x)["probs"], _run(blobs[0], x)["probs"], atol=1e-5)


def test_convert_plumbs_the_sparse_layouts(mlp_sm, digits, tmp_path):
    cal = (digits.x_test[:50], digits.y_test[:50])
    dense = tb.convert(mlp_sm, tmp_path / "dense", sparse_layout="dense", calibration=cal)
    sm = tb.convert(mlp_sm, tmp_path / "sm", sparse_layout="shared_mask", calibration=cal)
    assert sm.manifest["verification"]["passed"] is True
    assert sm.size_bytes < 0.5 * dense.size_bytes
    np.testing.assert_allclose(sm.predict(digits.x_test[:10]).probs, dense.predict(digits.x_test[:10]).probs,
                               atol=1e-5)
    members = tb.convert(mlp_sm, tmp_path / "m", mode="members", sparse_layout="tflite", calibration=cal)
    assert members.manifest["verification"]["passed"] is True
    with pytest.raises(InvalidInputError, match="sparse_layout"):
        tb.convert(mlp_sm, tmp_path / "bad", mode="members", sparse_layout="shared_mask")


def test_default_sparse_layout_follows_the_posterior(mlp_sm, untrained_ensemble, digits, tmp_path):
    """sparse_layout="auto" (the default) keeps a shared-mask posterior compact and a dense one dense."""
    cal = (digits.x_test[:50], digits.y_test[:50])
    auto = tb.convert(mlp_sm, tmp_path / "auto", calibration=cal)
    assert auto.manifest["provenance"]["sparse_layout"] == "shared_mask"
    assert "every invoke" in auto.manifest["provenance"]["sparse_cost"]
    explicit = tb.convert(mlp_sm, tmp_path / "explicit", sparse_layout="shared_mask", calibration=cal)
    assert auto.size_bytes == explicit.size_bytes
    members = tb.convert(mlp_sm, tmp_path / "members", mode="members", calibration=cal)  # no shared layout there
    assert members.manifest["provenance"]["sparse_layout"] == "dense"
    dense = tb.convert(untrained_ensemble, tmp_path / "dense")
    assert dense.manifest["provenance"]["sparse_layout"] == "dense"
