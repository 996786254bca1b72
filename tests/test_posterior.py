"""Tests of tflbayes.posterior: the Posterior types, the safe on-disk folder, and merge."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import tflbayes as tb
from tflbayes._io import sha256_file
from tflbayes.errors import InvalidInputError, PosteriorFormatError
from tflbayes.posterior import EnsemblePosterior, StochasticPosterior, load, merge
from tflbayes.posterior import storage

from conftest import make_mlp

FILES = {"architecture.json", "weights.npz", "posterior.json"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory, untrained_ensemble):
    """A saved copy of the untrained ensemble (read-only: copy it before editing)."""
    path = tmp_path_factory.mktemp("saved") / "ens"
    untrained_ensemble.save(path)
    return path


@pytest.fixture
def copy_of(saved, tmp_path):
    """A fresh editable copy of the saved folder."""
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(saved, dst)
    return dst


def _meta(path):
    return json.loads((Path(path) / "posterior.json").read_text())


def _write_meta(path, meta):
    (Path(path) / "posterior.json").write_text(json.dumps(meta))


def _rewrite_npz(path, arrays):
    """Replace weights.npz and record its new checksum, so only the content is wrong."""
    np.savez(Path(path) / "weights.npz", **arrays)
    meta = _meta(path)
    meta["sha256"]["weights.npz"] = sha256_file(Path(path) / "weights.npz")
    _write_meta(path, meta)


def _leftovers(parent):
    return [p.name for p in Path(parent).iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- round trip


def test_folder_layout(saved):
    assert {p.name for p in saved.iterdir()} == FILES
    meta = _meta(saved)
    assert meta["format"] == "tflbayes-posterior"
    assert meta["format_version"] == storage.FORMAT_VERSION
    assert meta["kind"] == "ensemble" and meta["method"] == "deep_ensemble"
    assert meta["num_weight_sets"] == 3
    assert meta["class_names"] == [f"c{i}" for i in range(10)]
    assert set(meta["sha256"]) == {"architecture.json", "weights.npz"}
    with np.load(saved / "weights.npz", allow_pickle=False) as z:
        for spec in meta["weights"]:
            assert z[spec["key"]].shape == (3, *spec["shape"])
            assert z[spec["key"]].dtype == np.float32


def test_ensemble_save_load_gives_identical_predictions(ensemble, digits, tmp_path):
    ensemble.save(tmp_path / "ens")
    loaded = tb.load(tmp_path / "ens")
    assert isinstance(loaded, EnsemblePosterior)
    assert loaded.num_samples == ensemble.num_samples
    assert loaded.method == "deep_ensemble"
    assert loaded.options == ensemble.options
    assert loaded.class_names == ensemble.class_names
    for a, b in zip(ensemble.members, loaded.members):
        for wa, wb in zip(a, b):
            np.testing.assert_array_equal(wa, wb)
    x = digits.x_test[:100]
    np.testing.assert_array_equal(loaded.sample_probs(x), ensemble.sample_probs(x))
    p1, p2 = ensemble.predict(x), loaded.predict(x)
    for f in ("probs", "total", "aleatoric", "epistemic"):
        np.testing.assert_array_equal(getattr(p1, f), getattr(p2, f))


@pytest.mark.parametrize("method", ["mc_dropout", "variational"])
def test_stochastic_save_load_gives_identical_weights(posteriors, digits, tmp_path, method):
    post = posteriors[method]
    post.save(tmp_path / method)
    loaded = load(tmp_path / method)
    assert isinstance(loaded, StochasticPosterior)
    assert loaded.method == method
    assert loaded.options == post.options
    assert loaded.num_samples == post.num_samples
    assert [type(l).__name__ for l in loaded.model.layers] == [type(l).__name__ for l in post.model.layers]
    assert [w.shape for w in loaded.model.weights] == [w.shape for w in post.model.weights]
    for wa, wb in zip(post.model.get_weights(), loaded.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    # still stochastic after loading, and statistically the same posterior
    x = digits.x_test[:200]
    a = post.predict(x, num_samples=32).probs
    b = loaded.predict(x, num_samples=32).probs
    assert np.mean(a.argmax(-1) == b.argmax(-1)) > 0.9
    s = loaded.sample_probs(x[:5], num_samples=2)
    assert not np.allclose(s[0], s[1])


def test_save_overwrites_an_existing_folder(untrained_ensemble, tmp_path):
    path = tmp_path / "p"
    untrained_ensemble.save(path)
    (path / "stale.txt").write_text("old")
    untrained_ensemble.save(path)
    assert {p.name for p in path.iterdir()} == FILES
    assert _leftovers(tmp_path) == []


def test_save_refuses_options_that_are_not_plain_data(tmp_path):
    post = EnsemblePosterior(make_mlp(), [make_mlp().get_weights()], options={"fn": lambda: 1})
    with pytest.raises(TypeError):
        post.save(tmp_path / "p")
    assert not (tmp_path / "p").exists()
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("where", ["savez", "write_json"])
def test_failed_save_keeps_the_old_folder_and_leaves_no_temp(untrained_ensemble, tmp_path, monkeypatch, where):
    path = tmp_path / "p"
    untrained_ensemble.save(path)
    before = {f: (path / f).read_bytes() for f in FILES}

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    if where == "savez":
        monkeypatch.setattr(storage.np, "savez", boom)
    else:
        monkeypatch.setattr(storage, "write_json", boom)
    other = EnsemblePosterior(make_mlp(), [make_mlp().get_weights()], method="other")
    with pytest.raises(OSError, match="simulated"):
        other.save(path)
    monkeypatch.undo()

    assert {p.name for p in path.iterdir()} == FILES
    assert {f: (path / f).read_bytes() for f in FILES} == before
    assert _leftovers(tmp_path) == []
    assert load(path).num_samples == 3


def test_failed_first_save_leaves_nothing(untrained_ensemble, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-save (simulated)")

    monkeypatch.setattr(storage, "sha256_file", boom)
    with pytest.raises(RuntimeError):
        untrained_ensemble.save(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- load errors


def test_load_missing_folder(tmp_path):
    with pytest.raises(PosteriorFormatError, match="nope"):
        load(tmp_path / "nope")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PosteriorFormatError, match="afile"):
        load(tmp_path / "afile")


@pytest.mark.parametrize("name", sorted(FILES))
def test_load_missing_file_names_it(copy_of, name):
    (copy_of / name).unlink()
    with pytest.raises(PosteriorFormatError, match=name.replace(".", r"\.")):
        load(copy_of)


@pytest.mark.parametrize("name", ["weights.npz", "architecture.json", "posterior.json"])
def test_load_truncated_file_names_it(copy_of, name):
    f = copy_of / name
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(PosteriorFormatError, match=name.replace(".", r"\.")):
        load(copy_of)


def test_load_truncated_npz_with_matching_checksum_names_it(copy_of):
    f = copy_of / "weights.npz"
    f.write_bytes(f.read_bytes()[:300])
    meta = _meta(copy_of)
    meta["sha256"]["weights.npz"] = sha256_file(f)
    _write_meta(copy_of, meta)
    with pytest.raises(PosteriorFormatError, match=r"weights\.npz"):
        load(copy_of)


def test_load_edited_architecture_is_detected(copy_of):
    f = copy_of / "architecture.json"
    f.write_text(f.read_text().replace('"units": 32', '"units": 33'))
    with pytest.raises(PosteriorFormatError, match=r"architecture\.json"):
        load(copy_of)


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda m: m.update(format="something-else"), "format"),
        (lambda m: m.pop("format_version"), "format_version"),
        (lambda m: m.update(format_version="1"), "format_version"),
        (lambda m: m.update(kind="dirichlet-ish"), "kind"),
        (lambda m: m.pop("kind"), "kind"),
        (lambda m: m.pop("sha256"), "sha256"),
        (lambda m: m.pop("weights"), "weights"),
        (lambda m: m.update(weights=m["weights"][:-1]), "posterior.json"),
        (lambda m: m.update(num_weight_sets="3"), "num_weight_sets"),
        (lambda m: m.update(num_weight_sets=4), r"weights\.npz"),
    ],
    ids=["format", "no-version", "version-str", "kind", "no-kind", "no-sha", "no-weights", "fewer-weights",
         "sets-str", "sets-4"],
)
def test_load_edited_posterior_json_names_file_and_field(copy_of, edit, field):
    meta = _meta(copy_of)
    edit(meta)
    _write_meta(copy_of, meta)
    with pytest.raises(PosteriorFormatError, match=field) as info:
        load(copy_of)
    assert str(copy_of) in str(info.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(class_names=["a", "b"]),  # 2 names, 10 outputs
        lambda m: m.update(options=[1, 2]),  # not an object
        lambda m: m.update(method=None),
        lambda m: m.update(weights=[{"key": "w000"}, *m["weights"][1:]]),  # spec without a shape
        lambda m: m.update(weights=["w000", *m["weights"][1:]]),  # spec not an object
    ],
    ids=["class_names", "options", "method", "spec-no-shape", "spec-not-object"],
)
def test_load_other_edited_fields_raise_posterior_format_error(copy_of, edit):
    """Whatever is edited in posterior.json, a load fails with PosteriorFormatError naming it."""
    meta = _meta(copy_of)
    edit(meta)
    _write_meta(copy_of, meta)
    with pytest.raises(PosteriorFormatError, match=r"posterior\.json"):
        load(copy_of)


@pytest.mark.parametrize("version", [99, 0, -1])
def test_load_unknown_format_version(copy_of, version):
    meta = _meta(copy_of)
    meta["format_version"] = version
    _write_meta(copy_of, meta)
    with pytest.raises(PosteriorFormatError, match="format_version") as info:
        load(copy_of)
    assert "posterior.json" in str(info.value)


def test_load_posterior_json_not_an_object(copy_of):
    (copy_of / "posterior.json").write_text("[1, 2, 3]")
    with pytest.raises(PosteriorFormatError, match=r"posterior\.json"):
        load(copy_of)


def test_load_wrong_weight_shape_names_npz(copy_of):
    with np.load(copy_of / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["w000"] = np.zeros((3, 64, 31), np.float32)  # the first kernel is [64, 32]
    _rewrite_npz(copy_of, arrays)
    with pytest.raises(PosteriorFormatError, match=r"weights\.npz.*w000"):
        load(copy_of)


def test_load_wrong_weight_dtype_and_missing_array(copy_of):
    with np.load(copy_of / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["w001"] = arrays["w001"].astype(np.float64)
    _rewrite_npz(copy_of, arrays)
    with pytest.raises(PosteriorFormatError, match="dtype"):
        load(copy_of)
    arrays.pop("w001")
    _rewrite_npz(copy_of, arrays)
    with pytest.raises(PosteriorFormatError, match="w001"):
        load(copy_of)


class _Trap:
    """Unpickling this creates a marker folder: proof that the loader unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_object_array_in_npz_is_refused_without_unpickling(copy_of, tmp_path):
    marker = tmp_path / "UNPICKLED"
    with np.load(copy_of / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(marker)
    arrays["w000"] = trap
    _rewrite_npz(copy_of, arrays)  # np.savez pickles object arrays
    with pytest.raises(PosteriorFormatError, match=r"weights\.npz") as info:
        load(copy_of)
    assert "pickl" in str(info.value).lower()
    assert not marker.exists()


# --------------------------------------------------------------------------- merge


def _twin(post, members=None, method="deep_ensemble", class_names=None, config_edit=None):
    """An ensemble of the same architecture (same layer names: a clone) with other weights."""
    from tflbayes._keras import keras

    if config_edit is None:
        model = keras.models.clone_model(post.model)
    else:
        cfg = post.model.get_config()
        config_edit(cfg)
        model = keras.Sequential.from_config(cfg)
    if members is None:
        rng = np.random.default_rng(len(post.members))
        members = [[rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()] for _ in range(2)]
    return EnsemblePosterior(model, members, method=method, options={"members": len(members)},
                             class_names=post.class_names if class_names is None else class_names)


def test_merge_concatenates_members_and_samples(untrained_ensemble, digits, tmp_path):
    a = untrained_ensemble
    b = _twin(a)
    x = digits.x_test[:40]
    want = np.concatenate([a.sample_probs(x), b.sample_probs(x)])
    merged = merge([a, b])
    assert isinstance(merged, EnsemblePosterior)
    assert merged.num_samples == 5
    assert merged.method == "deep_ensemble"
    assert merged.options["chains"] == [3, 2]
    np.testing.assert_array_equal(merged.sample_probs(x), want)
    np.testing.assert_array_equal(merged.predict(x).probs, tb.uncertainty.prediction_from_samples(want).probs)
    # the parts are not changed by merging / predicting with the merge
    np.testing.assert_array_equal(a.sample_probs(x), want[:3])
    np.testing.assert_array_equal(b.sample_probs(x), want[3:])
    # from folders too, and the merge saves and loads
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    merged2 = tb.merge([tmp_path / "a", str(tmp_path / "b")])
    np.testing.assert_array_equal(merged2.sample_probs(x), want)
    merged2.save(tmp_path / "m")
    np.testing.assert_array_equal(load(tmp_path / "m").sample_probs(x), want)
    assert load(tmp_path / "m").options["chains"] == [3, 2]


def test_merge_two_ensembles_trained_in_one_process(ensemble, digits, mlp_builder):
    """Two ``tb.fit`` runs of one builder have the same architecture (Keras only numbers the layer
    names differently: dense_2 vs dense_6), so they must merge."""
    data = (digits.x_train[:100], digits.y_train[:100])
    b = tb.fit(mlp_builder, data, method="deep_ensemble", members=1, epochs=1, verbose=0, seed=1,
               class_names=ensemble.class_names)
    x = digits.x_test[:20]
    want = np.concatenate([ensemble.sample_probs(x), b.sample_probs(x)])
    merged = merge([ensemble, b])
    assert merged.num_samples == 4
    np.testing.assert_array_equal(merged.sample_probs(x), want)


def test_merge_of_merges_keeps_chain_lengths(untrained_ensemble):
    a = untrained_ensemble
    m = merge([merge([a, a]), a])
    assert m.num_samples == 9
    assert m.options["chains"] == [3, 3, 3]
    assert merge([a, a], method="mine").method == "mine"


def test_merge_different_methods_is_named_merged(untrained_ensemble):
    assert merge([untrained_ensemble, _twin(untrained_ensemble, method="sgld")]).method == "merged"


def test_merge_refuses_mismatches(untrained_ensemble, mc_dropout):
    a = untrained_ensemble

    def widen(cfg):
        dense = [e for e in cfg["layers"] if e["class_name"] == "Dense"]
        dense[0]["config"]["units"] = 48

    with pytest.raises(InvalidInputError, match="architecture"):
        merge([a, _twin(a, config_edit=widen)])
    with pytest.raises(InvalidInputError, match="class names"):
        merge([a, _twin(a, class_names=[str(i) for i in range(10)])])
    with pytest.raises(InvalidInputError):
        merge([a, mc_dropout])
    with pytest.raises(InvalidInputError):
        merge([])


# --------------------------------------------------------------------------- prediction API


def test_sample_probs_shape_and_probabilities(posteriors, digits):
    x = digits.x_test[:7]
    for name, post in posteriors.items():
        s = post.sample_probs(x)
        assert s.shape == (post.num_samples, 7, 10), name
        np.testing.assert_allclose(s.sum(-1), 1.0, atol=1e-6)
        assert np.all(s >= 0)
    assert posteriors["mc_dropout"].sample_probs(x, num_samples=5).shape == (5, 7, 10)
    assert posteriors["deep_ensemble"].sample_probs(x, num_samples=2).shape == (2, 7, 10)


def test_ensemble_subset_of_members_is_the_prefix(ensemble, digits):
    x = digits.x_test[:10]
    np.testing.assert_array_equal(ensemble.sample_probs(x, num_samples=2), ensemble.sample_probs(x)[:2])


def test_predict_returns_the_decomposition(posteriors, digits):
    x = digits.x_test[:20]
    for name, post in posteriors.items():
        pred = post.predict(x)
        assert pred.probs.shape == (20, 10)
        for v in (pred.total, pred.aleatoric, pred.epistemic):
            assert v.shape == (20,) and np.all(v >= 0)
        np.testing.assert_allclose(pred.total, pred.aleatoric + pred.epistemic, atol=1e-9)


@pytest.mark.parametrize("bad", [0, -1, 4, 2.0, True, "2", [1]])
def test_ensemble_num_samples_validation(ensemble, digits, bad):
    with pytest.raises(InvalidInputError, match="num_samples"):
        ensemble.sample_probs(digits.x_test[:3], num_samples=bad)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "8"])
def test_stochastic_num_samples_validation(mc_dropout, digits, bad):
    with pytest.raises(InvalidInputError, match="num_samples"):
        mc_dropout.sample_probs(digits.x_test[:3], num_samples=bad)
    with pytest.raises(InvalidInputError, match="num_samples"):
        mc_dropout.predict(digits.x_test[:3], num_samples=bad)


def test_member_model_holds_that_members_weights(ensemble, digits):
    x = digits.x_test[:10]
    m1 = ensemble.member_model(1)
    from tflbayes.posterior.base import softmax

    np.testing.assert_allclose(softmax(m1(x).numpy().astype(np.float64)), ensemble.sample_probs(x)[1], atol=1e-6)


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((4, 8, 8), np.float32),  # missing channel axis
        np.zeros((4, 64), np.float32),  # flat
        np.zeros((8, 8, 1), np.float32),  # no batch axis
        np.zeros((4, 9, 8, 1), np.float32),  # wrong size
        np.zeros((0, 8, 8, 1), np.float32),  # empty
        np.array([["a"] * 8] * 8),  # strings
    ],
    ids=["no-channel", "flat", "no-batch", "size", "empty", "strings"],
)
def test_wrong_input_shape_raises_invalid_input(posteriors, x):
    for post in posteriors.values():
        with pytest.raises(InvalidInputError):
            post.predict(x)
        with pytest.raises(InvalidInputError):
            post.sample_probs(x)


def test_nan_input_raises_invalid_input(posteriors, digits):
    x = digits.x_test[:4].copy()
    x[2, 3, 3, 0] = np.nan
    x_inf = digits.x_test[:4].copy()
    x_inf[1, 0, 0, 0] = np.inf
    for post in posteriors.values():
        with pytest.raises(InvalidInputError, match="NaN"):
            post.predict(x)
        with pytest.raises(InvalidInputError):
            post.sample_probs(x_inf)


def test_integer_and_float64_inputs_are_accepted(ensemble, digits):
    x = digits.x_test[:5]
    np.testing.assert_allclose(ensemble.predict(x.astype(np.float64)).probs, ensemble.predict(x).probs, atol=1e-6)
    assert ensemble.predict((x * 16).round().astype(np.int32)).probs.shape == (5, 10)


def test_posterior_constructor_validation():
    model = make_mlp()
    with pytest.raises(TypeError):
        EnsemblePosterior("not a model", [model.get_weights()])
    with pytest.raises(ValueError, match="class_names"):
        EnsemblePosterior(model, [model.get_weights()], class_names=["a", "b"])
    with pytest.raises(ValueError, match="weights"):
        EnsemblePosterior(model, [])
    with pytest.raises(ValueError, match="member 1"):
        EnsemblePosterior(model, [model.get_weights(), model.get_weights()[:-1]])
    post = StochasticPosterior(model, "mc_dropout")
    assert post.num_samples == 32
    assert "StochasticPosterior" in repr(post) and "mc_dropout" in repr(post)
