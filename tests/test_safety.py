"""Safe to load: posterior folders and bundles refuse code, tampering, hangs and untyped failures.

The attacks are the ones the fuzzing campaign of issue 13 found; where an attacker would also
update the checksums, the tests re-sign the folder (``_tamper.resigned``) so that what refuses the
attack is the check under test, not a stale checksum.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tflbayes as tb
from tflbayes._io import atomic_dir, clean_stale_temporaries
from tflbayes.architectures import ARCHITECTURES
from tflbayes.errors import InvalidInputError, PosteriorFormatError
from tflbayes.posterior import EnsemblePosterior, StochasticPosterior, load, storage

import _tamper as T
from conftest import make_mlp


@pytest.fixture
def saved(untrained_ensemble, tmp_path):
    path = tmp_path / "ens"
    untrained_ensemble.save(path)
    return path


def _evil_lambda(marker: Path) -> dict:
    """A Lambda layer whose function resolves to ``pydoc.pipepager``: it runs ``cmd`` in a shell."""
    return {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": "evil", "trainable": True, "dtype": "float32",
                       "function": {"module": "pydoc", "class_name": "function", "config": "pipepager",
                                    "registered_name": "function"},
                       "function_type": "function", "output_shape": None, "output_shape_type": "raw",
                       "output_shape_module": None, "arguments": {"cmd": f"touch {marker}"}}}


def _insert_layer(layer):
    return lambda cfg: cfg["config"]["layers"].insert(2, layer)


# --------------------------------------------------------------------------- code execution


def test_the_lambda_attack_runs_code_in_plain_keras(saved, tmp_path):
    """Control: the attack is real (tf_keras's safe mode does not stop it)."""
    from tflbayes._keras import keras

    marker = tmp_path / "PWNED_PLAIN"
    T.edit_architecture(saved, _insert_layer(_evil_lambda(marker)))
    with pytest.raises(Exception):  # noqa: B017 (pipepager returns None: the model build fails after the shell ran)
        keras.models.model_from_json((saved / "architecture.json").read_text())
    for _ in range(50):
        if marker.exists():
            break
        time.sleep(0.1)
    assert marker.exists()


def test_the_lambda_attack_is_refused_before_deserialisation(saved, tmp_path):
    marker = tmp_path / "PWNED"
    T.edit_architecture(saved, _insert_layer(_evil_lambda(marker)))  # checksums and digests re-signed
    with pytest.raises(PosteriorFormatError, match="Lambda") as info:
        load(saved)
    assert "architecture.json" in str(info.value)
    time.sleep(1.0)
    assert not marker.exists()


def _dense(**over):
    layer = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "extra", "units": 4, "activation": "linear"}}
    layer.update(over)
    return layer


@pytest.mark.parametrize("layer, match", [
    (_dense(module="os", class_name="system"), "system"),
    (_dense(module="pydoc"), "pydoc"),
    (_dense(registered_name="pydoc>pipepager"), "registered_name"),
    (_dense(config={"name": "x", "units": 4, "activation": "pydoc.pipepager"}), "activation"),
    (_dense(config={"name": "x", "units": 4, "activation": {"module": "pydoc", "class_name": "function",
                                                            "config": "pipepager", "registered_name": None}}),
     "pipepager"),
    ({"module": "keras.layers", "class_name": "TFOpLambda", "registered_name": None,
      "config": {"name": "w", "function": "io.write_file", "trainable": True, "dtype": "float32"}}, "io.write_file"),
    ({"class_name": "__lambda__", "config": {"value": "AAAA"}}, "__lambda__"),
    (_dense(class_name="NoSuchLayer"), "NoSuchLayer"),
    (_dense(class_name=["Dense"]), "class_name"),
], ids=["os.system", "foreign-module", "registered-name", "activation-str", "activation-fn", "tfop", "lambda-bytecode",
        "unknown-class", "class-not-str"])
def test_names_outside_the_allowlist_are_refused(saved, layer, match):
    T.edit_architecture(saved, _insert_layer(layer))
    with pytest.raises(PosteriorFormatError, match=match):
        load(saved)


def test_the_top_level_must_be_a_model(saved):
    T.edit_architecture(saved, lambda cfg: cfg.update(class_name="Lambda"))
    with pytest.raises(PosteriorFormatError, match="top-level"):
        load(saved)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_saves_and_loads(name, tmp_path):
    from tflbayes.architectures import builder

    model = builder(name, (8, 8, 1), 3)()
    post = EnsemblePosterior(model, [model.get_weights()], method="deep_ensemble")
    post.save(tmp_path / name)
    loaded = load(tmp_path / name)
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x).probs, post.predict(x).probs, atol=1e-6)


@pytest.mark.parametrize("transform", ["mc_dropout", "variational"])
def test_stochastic_twins_of_the_cnn_save_and_load(transform, tmp_path):
    from tflbayes.architectures import builder
    from tflbayes.methods.transform import to_mc_dropout, to_variational

    model = builder("cnn", (8, 8, 1), 3)()
    model = to_mc_dropout(model) if transform == "mc_dropout" else to_variational(model)
    post = StochasticPosterior(model, transform, {"num_samples": 4})
    post.save(tmp_path / "p")
    loaded = load(tmp_path / "p")
    assert [type(l).__name__ for l in loaded.model.layers] == [type(l).__name__ for l in model.layers]


def test_a_tf_op_on_the_allowlist_loads(tmp_path):
    from tflbayes._keras import keras

    inp = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inp)
    h = keras.layers.Dense(8)(h) * 2.0  # a TFOpLambda "math.multiply"
    model = keras.Model(inp, keras.layers.Dense(3)(h))
    assert "TFOpLambda" in model.to_json()
    EnsemblePosterior(model, [model.get_weights()]).save(tmp_path / "p")
    assert load(tmp_path / "p").num_classes == 3


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(class_names=m["class_names"][::-1]), "class_names"),
    (lambda m: m["options"].update(members=5), "options"),
    (lambda m: m.update(method="sgld"), "method"),
    (lambda m: m.update(tflbayes_version="0.0"), "tflbayes_version"),
    (lambda m: m.update(extra=1), "extra"),
    (lambda m: m.pop("tflbayes_version"), "tflbayes_version"),
], ids=["class-names-permuted", "options", "method", "version", "added", "removed"])
def test_edits_of_posterior_json_are_named(saved, edit, field):
    m = T.meta(saved)
    edit(m)
    T.write_meta(saved, m)
    with pytest.raises(PosteriorFormatError, match=field) as info:
        load(saved)
    assert "posterior.json" in str(info.value)


def test_a_relabelled_kind_is_detected(tmp_path):
    """A stochastic net relabelled 'dirichlet' would load and predict something else."""
    model = make_mlp(hidden=(8,))
    StochasticPosterior(model, "mc_dropout").save(tmp_path / "p")
    m = T.meta(tmp_path / "p")
    m["kind"] = "dirichlet"
    T.write_meta(tmp_path / "p", m)
    with pytest.raises(PosteriorFormatError, match="kind"):
        load(tmp_path / "p")


@pytest.mark.parametrize("edit, field", [
    (lambda m: m["options"].update(num_samples=1e12), "num_samples"),
    (lambda m: m["options"].update(num_samples=10 ** 12), "num_samples"),
    (lambda m: m["options"].update(num_samples=[]), "num_samples"),
    (lambda m: m["options"].update(num_samples={}), "num_samples"),
    (lambda m: m["options"].update(num_samples="ensemble"), "num_samples"),
    (lambda m: m["options"].update(num_samples=True), "num_samples"),
    (lambda m: m.update(class_names=["abstain", *m["class_names"][1:]]), "abstain"),
    (lambda m: m.update(class_names=[m["class_names"][0]] * 10), "unique"),
    (lambda m: m.update(class_names=list(range(10))), "class_names"),
    (lambda m: m.update(class_names=[["a"]] + m["class_names"][1:]), "class_names"),
    (lambda m: m.update(class_names=[""] + m["class_names"][1:]), "class_names"),
    (lambda m: m.update(num_weight_sets=10 ** 6), "num_weight_sets"),
    (lambda m: m.update(num_weight_sets=True), "num_weight_sets"),
    (lambda m: m.update(input_shape=[8, 8, 2]), "input_shape"),
    (lambda m: m.update(num_classes=11), "num_classes"),
    (lambda m: m["weights"][0].update(shape=[10 ** 9, 10 ** 9]), "shape"),
    (lambda m: m.update(sizes=[]), "sizes"),
], ids=["S-float", "S-huge", "S-list", "S-dict", "S-str", "S-bool", "abstain", "dup", "ints", "nested", "empty",
        "sets-huge", "sets-bool", "input-shape", "num-classes", "spec-huge", "sizes-type"])
def test_out_of_range_fields_are_refused_even_when_resigned(tmp_path, untrained_ensemble, edit, field):
    untrained_ensemble.save(tmp_path / "p")
    m = T.meta(tmp_path / "p")
    edit(m)
    T.write_meta(tmp_path / "p", m, resign=field != "sizes")
    t0 = time.perf_counter()
    with pytest.raises(PosteriorFormatError, match=field) as info:
        load(tmp_path / "p")
    assert time.perf_counter() - t0 < 20
    assert "posterior.json" in str(info.value)


@pytest.mark.parametrize("text", [
    '{"format": "tflbayes-posterior", "format_version": ' + "9" * 5000 + "}",
    "[" * 100_000 + "]" * 100_000,
    '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
], ids=["5000-digits", "deep-list", "deep-field"])
def test_pathological_json_is_a_posterior_format_error(saved, text):
    (saved / "posterior.json").write_text(text)
    with pytest.raises(PosteriorFormatError, match=r"posterior\.json"):
        load(saved)


def test_a_folder_without_field_digests_still_loads_with_a_warning(saved, untrained_ensemble):
    """Folders written before the digests (format versions 1/2 had none) stay loadable."""
    m = T.meta(saved)
    m.pop("fields_sha256")
    m.pop("sizes")
    T.write_meta(saved, m)
    with pytest.warns(UserWarning, match="no field digests"):
        post = load(saved)
    assert post.num_samples == untrained_ensemble.num_samples


# --------------------------------------------------------------------------- files


def test_symlinks_that_leave_the_folder_are_refused(saved, tmp_path):
    outside = tmp_path / "elsewhere.npz"
    shutil.copy(saved / "weights.npz", outside)
    (saved / "weights.npz").unlink()
    (saved / "weights.npz").symlink_to(outside)
    with pytest.raises(PosteriorFormatError, match="outside the folder"):
        load(saved)


def test_symlinks_inside_the_folder_are_fine(saved):
    (saved / "real").mkdir()
    shutil.move(saved / "weights.npz", saved / "real" / "weights.npz")
    (saved / "weights.npz").symlink_to("real/weights.npz")
    assert load(saved).num_samples == 3


def test_a_huge_sparse_file_is_not_read(saved, tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(20 << 30)  # 20 GiB, sparse
    arch = (saved / "architecture.json").read_bytes()
    (saved / "architecture.json").unlink()
    (saved / "architecture.json").symlink_to(big)
    t0 = time.perf_counter()
    with pytest.raises(PosteriorFormatError, match="outside the folder"):
        load(saved)
    (saved / "architecture.json").unlink()
    (saved / "architecture.json").write_bytes(arch)
    os.replace(big, saved / "weights.npz")  # inside the folder: bounded by the weight specs
    with pytest.raises(PosteriorFormatError, match=r"weights\.npz is \d+ bytes, more than"):
        load(saved)
    assert time.perf_counter() - t0 < 10


def test_a_pickle_inside_the_npz_is_refused_even_when_resigned(saved, tmp_path):
    marker = tmp_path / "UNPICKLED"
    with np.load(saved / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(marker)
    arrays["w000"] = trap
    np.savez(saved / "weights.npz", **arrays)
    T.write_meta(saved, T.meta(saved), resign=True)
    with pytest.raises(PosteriorFormatError, match="pickl"):
        load(saved)
    assert not marker.exists()


class _Trap:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_posterior_kinds_register_themselves():
    assert {"ensemble", "stochastic", "dirichlet", "distilled"} <= set(storage.KINDS)

    class Custom(StochasticPosterior):
        kind = "custom_test_kind"

    try:
        assert storage.KINDS["custom_test_kind"] is Custom
    finally:
        storage.KINDS.pop("custom_test_kind")


# --------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_files_respect_the_umask(untrained_ensemble, tmp_path, umask):
    old = os.umask(umask)
    try:
        untrained_ensemble.save(tmp_path / "p")
    finally:
        os.umask(old)
    assert (tmp_path / "p").stat().st_mode & 0o777 == 0o777 & ~umask
    for f in ("posterior.json", "architecture.json", "weights.npz"):
        assert (tmp_path / "p" / f).stat().st_mode & 0o777 == 0o666 & ~umask, f


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_replacing_a_folder_keeps_it_readable(untrained_ensemble, tmp_path, monkeypatch, exchange):
    import tflbayes._io as io

    if not exchange:
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    path = tmp_path / "p"
    untrained_ensemble.save(path)
    missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not (path / "posterior.json").is_file():
                missing.append(time.perf_counter())

    t = threading.Thread(target=watch)
    t.start()
    try:
        for _ in range(10):
            untrained_ensemble.save(path)
    finally:
        stop.set()
        t.join()
    if exchange:
        assert missing == [], "the folder was absent during an atomic exchange"
    assert load(path).num_samples == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_writers_are_cleaned(untrained_ensemble, tmp_path):
    dead = _dead_pid()
    stale = [tmp_path / f".p.tmp-{dead}-abc", tmp_path / f".p.old-{dead}-def"]
    live = tmp_path / f".p.tmp-{os.getppid()}-ghi"  # a live process's: kept
    other = tmp_path / f".q.tmp-{dead}-jkl"  # another target's: kept
    for d in (*stale, live, other):
        d.mkdir()
        (d / "weights.npz").write_bytes(b"x")
    untrained_ensemble.save(tmp_path / "p")
    assert not any(d.exists() for d in stale)
    assert live.exists() and other.exists()
    assert clean_stale_temporaries(tmp_path / "q") == [other]


def test_atomic_dir_refuses_paths_it_cannot_write(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a folder"):
        with atomic_dir(tmp_path / "file"):
            pass
    with pytest.raises(InvalidInputError, match="not a folder"):
        with atomic_dir(tmp_path / "file" / "sub"):
            pass


_KILL_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from conftest import make_mlp
import tflbayes as tb
m = make_mlp()
rng = np.random.default_rng(0)
post = tb.EnsemblePosterior(m, [[rng.normal(0, .3, w.shape).astype(np.float32) for w in m.get_weights()]
                                for _ in range(8)])
print("READY", flush=True)
while True:
    post.save({path!r})
"""


@pytest.mark.slow
def test_kill_9_during_save_leaves_an_intact_folder_and_cleanable_temporaries(untrained_ensemble, tmp_path):
    import signal

    path = tmp_path / "p"
    untrained_ensemble.save(path)
    script = tmp_path / "loop.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(Path(__file__).parent), path=str(path)))
    rng = np.random.default_rng(0)
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(float(rng.uniform(0.05, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert load(path).num_samples in (3, 8)  # the old or the new folder, never a broken one
    untrained_ensemble.save(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".p.")] == []


# --------------------------------------------------------------------------- regression posteriors


@pytest.fixture(scope="module")
def regression_posterior():
    from tflbayes._keras import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    return EnsemblePosterior(model, [model.get_weights()] * 2, method="sgld", options={"likelihood": "regression"})


def test_regression_posteriors_are_refused_up_front(regression_posterior, digits, tmp_path):
    x = digits.x_test[:8]
    calls = {
        "predict": lambda: regression_posterior.predict(x),
        "metrics.evaluate": lambda: tb.metrics.evaluate(regression_posterior, x, digits.y_test[:8]),
        "convert": lambda: tb.convert(regression_posterior, tmp_path / "b"),
        "distill": lambda: tb.distill(regression_posterior, x, method="end2"),
    }
    for where, call in calls.items():
        with pytest.raises(InvalidInputError, match="regression_predictive") as info:
            call()
        assert where.split(".")[-1] in str(info.value), where
    assert not (tmp_path / "b").exists()
    from tflbayes.methods.sampling import regression_predictive

    mean, std = regression_predictive(regression_posterior, x)
    assert mean.shape == (8, 1) and np.all(std >= 1.0)


_KILL_CONVERT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from conftest import make_mlp
import tflbayes as tb
m = make_mlp(hidden=(8,))
post = tb.EnsemblePosterior(m, [m.get_weights()] * 2)
print("READY", flush=True)
while True:
    tb.convert(post, {path!r}, mode="members")
"""


@pytest.mark.slow
def test_kill_9_during_convert_leaves_a_loadable_bundle_and_cleanable_temporaries(tmp_path):
    import signal

    from tflbayes.runtime import load_bundle

    path = tmp_path / "b"
    m = make_mlp(hidden=(8,))
    tb.convert(EnsemblePosterior(m, [m.get_weights()] * 3), path, mode="members")
    script = tmp_path / "loop.py"
    script.write_text(_KILL_CONVERT.format(tests=str(Path(__file__).parent), path=str(path)))
    rng = np.random.default_rng(1)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(float(rng.uniform(0.5, 4.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert load_bundle(path).num_samples in (2, 3)
    tb.convert(EnsemblePosterior(m, [m.get_weights()] * 3), path, mode="members")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.")] == []


def test_folder_digest_names_the_content(untrained_ensemble, tmp_path):
    """One digest a publisher can give out: equal for equal content, different after any re-signed edit."""
    untrained_ensemble.save(tmp_path / "a")
    untrained_ensemble.save(tmp_path / "b")
    da = storage.folder_digest(tmp_path / "a")
    assert len(da) == 64
    m = T.meta(tmp_path / "b")
    m["class_names"] = m["class_names"][::-1]
    T.write_meta(tmp_path / "b", m, resign=True)  # loads (it is re-signed) but is not what was published
    assert load(tmp_path / "b").class_names[0] == "c9"
    assert storage.folder_digest(tmp_path / "b") != da
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    assert storage.folder_digest(tmp_path / "c") == da
