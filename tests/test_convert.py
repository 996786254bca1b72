"""tb.convert / tb.load_bundle: modes, precisions, verification, thresholds, bad input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.runtime.manifest import seal
from tflbayes.converters.tflite import op_names
from tflbayes.errors import BundleError, ConversionError, InvalidInputError, VerificationError

BUILTIN_RANDOM = {"RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL"}


@pytest.fixture(scope="module")
def cnn_ensemble(digits):
    from tflbayes.architectures import cnn

    return tb.fit(lambda: cnn(digits.input_shape, digits.num_classes, filters=(4, 8), dense=16), digits,
                  method="deep_ensemble", members=3, epochs=3, verbose=0, seed=1)


def _ops(bundle):
    return {op for f in bundle.files for op in op_names((bundle.path / f).read_bytes())}


@pytest.mark.parametrize("which", ["ensemble", "cnn_ensemble"])
def test_batched_float32_equals_keras_ensemble(which, request, digits, tmp_path):
    post = request.getfixturevalue(which)
    b = tb.convert(post, tmp_path / "b", mode="batched", calibration=(digits.x_test, digits.y_test))
    x = digits.x_test[:64]
    ref = post.sample_probs(x)
    pred = b.predict(x)
    assert np.max(np.abs(pred.probs - ref.mean(0))) <= 1e-4
    for got, want in zip((pred.total, pred.aleatoric, pred.epistemic), tb.uncertainty.decompose(ref)):
        assert np.max(np.abs(got - want)) <= 1e-4
    np.testing.assert_allclose(b.sample_probs(x), ref, atol=1e-4)
    ops = _ops(b)
    assert not any(o.startswith("CUSTOM") for o in ops)
    assert "BATCH_MATMUL" in ops
    assert len(b.files) == 1 and b.manifest["postprocessing"] == "in_graph"
    assert b.manifest["verification"]["passed"] is True


def test_members_streams_with_one_resident(ensemble, digits, tmp_path):
    b = tb.convert(ensemble, tmp_path / "m", mode="members")
    assert len(b.files) == ensemble.num_samples and b.manifest["postprocessing"] == "host"
    streamed = tb.load_bundle(tmp_path / "m", max_resident=1)
    x = digits.x_test[:20]
    np.testing.assert_allclose(streamed.predict(x).probs, ensemble.predict(x).probs, atol=1e-4)
    assert len(streamed._graphs) == 1  # only one member interpreter stayed in memory


def test_int8_agreement_and_float_head(cnn_ensemble, digits, tmp_path):
    b = tb.convert(cnn_ensemble, tmp_path / "q", mode="batched", precision="int8",
                   representative_data=digits.x_train[:200], calibration=(digits.x_test, digits.y_test))
    m = b.manifest
    assert m["input"]["dtype"] == "int8" and "scale" in m["input"]["quantization"]
    assert m["postprocessing"] == "cpu_graph" and [s["file"] for s in m["stages"]] == ["body.tflite", "head.tflite"]
    agree = np.mean(b.predict(digits.x_test).label == cnn_ensemble.predict(digits.x_test).label)
    assert agree >= 0.97
    # the uncertainty comes from dequantized logits through a float head: consistent with decompose
    samples = b.sample_probs(digits.x_test[:30])
    pred = b.predict(digits.x_test[:30])
    np.testing.assert_allclose(pred.epistemic, tb.uncertainty.decompose(samples)[2], atol=1e-4)
    assert len(np.unique(np.round(pred.total, 6))) > 20  # not the 1/256 grid of int8 softmax outputs
    body_ops = op_names((b.path / "body.tflite").read_bytes())
    assert not any(o.startswith("CUSTOM") for o in body_ops)


def test_edgetpu_members_and_batched_are_ready(cnn_ensemble, digits, tmp_path):
    rep = digits.x_train[:100]
    m = tb.convert(cnn_ensemble, tmp_path / "tpu", mode="members", precision="edgetpu", representative_data=rep)
    e = m.manifest["edgetpu"]
    assert all(r["ready"] for r in e["readiness"].values()), e["readiness"]
    assert e["command"].startswith("edgetpu_compiler -s -o")
    b = tb.convert(cnn_ensemble, tmp_path / "tpu-b", mode="batched", precision="edgetpu", representative_data=rep)
    r = b.manifest["edgetpu"]["readiness"]["body.tflite"]
    # the Edge TPU layout (S parallel member networks + concatenation) has no BATCH_MATMUL, no grouped CONV_2D
    assert r["ready"] and r["compiler16_accepts"], (r["rejected"], r["problems"])
    assert "BATCH_MATMUL" not in r["ops"] and r["grouped_conv2d"] == 0
    assert np.mean(b.predict(digits.x_test).label == cnn_ensemble.predict(digits.x_test).label) >= 0.97


@pytest.mark.parametrize("which", ["mc_dropout", "variational"])
def test_stochastic_bundle_samples_on_device(which, request, digits, tmp_path):
    post = request.getfixturevalue(which)
    b = tb.convert(post, tmp_path / "s", mode="stochastic", num_samples=8, calibration=(digits.x_test, digits.y_test))
    ops = _ops(b)
    assert ops & BUILTIN_RANDOM and not any(o.startswith("CUSTOM") for o in ops)
    x = digits.x_test[:5]
    a, c = b.sample_probs(x), b.sample_probs(x)
    assert a.shape == (8, 5, 10) and not np.allclose(a, c)
    v = b.manifest["verification"]
    assert v["passed"] and v["draws_bundle"] >= 512


def test_thresholds_keep_the_requested_coverage(ensemble, digits, x_noise, tmp_path):
    b = tb.convert(ensemble, tmp_path / "t", calibration=(digits.x_test, digits.y_test), coverage=0.9)
    t = b.thresholds
    assert t["score"] == "epistemic" and abs(t["accepted_fraction"] - 0.9) < 0.02
    d_in, d_ood = b.decide(digits.x_test), b.decide(x_noise)
    assert abs(np.mean([d == "abstain" for d in d_in]) - 0.1) < 0.02
    assert np.mean([d == "abstain" for d in d_ood]) > 0.5
    assert all(d in b.class_names for d in d_in if d != "abstain")
    assert b.decide(digits.x_test[:3], threshold=1e9) == [b.class_names[k] for k in b.predict(digits.x_test[:3]).label]


def test_flex_ops_are_refused_unless_allowed():
    from tflbayes._keras import tf
    from tflbayes.converters.tflite import to_tflite

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def fn(x):
        return {"y": x * tf.random.stateless_uniform([1, 4], seed=[1, 2])}

    with pytest.raises(ConversionError, match="StatelessRandomUniform"):
        to_tflite(fn, tf.Module())
    blob = to_tflite(fn, tf.Module(), allow_flex=True)
    assert any(o.startswith("CUSTOM:Flex") for o in op_names(blob))


def test_bad_arguments(ensemble, mc_dropout, digits, tmp_path):
    with pytest.raises(InvalidInputError, match="mode"):
        tb.convert(ensemble, tmp_path / "x", mode="fancy")
    with pytest.raises(InvalidInputError, match="precision"):
        tb.convert(ensemble, tmp_path / "x", precision="int4")
    with pytest.raises(InvalidInputError, match="representative_data"):
        tb.convert(ensemble, tmp_path / "x", precision="int8")
    with pytest.raises(ConversionError, match="does not fit"):
        tb.convert(ensemble, tmp_path / "x", mode="stochastic")
    with pytest.raises(ConversionError, match="does not fit"):
        tb.convert(mc_dropout, tmp_path / "x", mode="batched")
    with pytest.raises(ConversionError, match="DirichletPosterior"):
        tb.convert(ensemble, tmp_path / "x", mode="dirichlet")
    with pytest.raises(InvalidInputError, match="num_samples"):
        tb.convert(ensemble, tmp_path / "x", num_samples=99)
    assert not (tmp_path / "x").exists()


def test_failed_verification_leaves_nothing_and_keeps_old_bundle(ensemble, digits, tmp_path, monkeypatch):
    from tflbayes.converters import verify

    out = tmp_path / "b"
    tb.convert(ensemble, out)
    before = (out / "manifest.json").read_text()
    monkeypatch.setitem(verify.TOLERANCES, "float32", {**verify.TOLERANCES["float32"], "prob": -1.0})
    with pytest.raises(VerificationError, match="Nothing was written"):
        tb.convert(ensemble, out, calibration=(digits.x_test, digits.y_test))
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


@pytest.fixture(scope="module")
def saved_bundle(ensemble, tmp_path_factory):
    path = tmp_path_factory.mktemp("bundles") / "ens"
    tb.convert(ensemble, path)
    return path


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(path, fn):
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(seal(m)))  # re-sealed: the checks behind the seal


def test_corrupt_and_mismatched_bundles(saved_bundle, tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        tb.load_bundle(tmp_path / "nope")
    p = _copy(saved_bundle, tmp_path)
    blob = (p / "model.tflite").read_bytes()
    (p / "model.tflite").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BundleError, match="checksum"):
        tb.load_bundle(p)
    # a truncated model whose checksum was updated still fails, in the interpreter, as a BundleError
    from tflbayes._io import sha256_file

    _edit_manifest(p, lambda m: m["stages"][0].update(sha256=sha256_file(p / "model.tflite")))
    with pytest.raises(BundleError, match="LiteRT"):
        tb.load_bundle(p)
    shutil.rmtree(p)
    for field, edit, match in [
        ("shape", lambda m: m["input"].update(shape=[1, 9, 9, 1]), "input shape"),
        ("S", lambda m: m.update(num_samples=7), "num_samples"),
        ("classes", lambda m: m.update(class_names=["a", "b"]), "classes"),
        ("dtype", lambda m: m["input"].update(dtype="int8"), "dtype"),
        ("version", lambda m: m.update(format_version=99), "format_version"),
        ("mode", lambda m: m.update(mode="weird"), "mode"),
    ]:
        p = _copy(saved_bundle, tmp_path)
        _edit_manifest(p, edit)
        with pytest.raises(BundleError, match=match):
            tb.load_bundle(p)
        shutil.rmtree(p)
    p = _copy(saved_bundle, tmp_path)
    (p / "manifest.json").write_text("{ not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        tb.load_bundle(p)


def test_bad_inputs_to_a_bundle(saved_bundle):
    b = tb.load_bundle(saved_bundle)
    with pytest.raises(InvalidInputError, match="shape"):
        b.predict(np.zeros((2, 9, 9, 1), np.float32))
    x = np.zeros((2, 8, 8, 1), np.float32)
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        b.predict(x)
    with pytest.raises(InvalidInputError, match="num_samples"):
        b.predict(x[:1], num_samples=5)
    with pytest.raises(BundleError, match="threshold"):
        b.decide(x[:1])


def test_runtime_does_not_import_tensorflow(saved_bundle):
    import subprocess
    import sys

    code = (f"import sys, numpy as np; from tflbayes.runtime import load_bundle; "
            f"b = load_bundle({str(saved_bundle)!r}); p = b.predict(np.zeros((2, 8, 8, 1), np.float32)); "
            f"assert p.probs.shape == (2, 10); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_int8_stochastic_quantizes_the_prefix_and_samples_in_float(mc_dropout, digits, tmp_path):
    b = tb.convert(mc_dropout, tmp_path / "q", mode="stochastic", precision="int8", num_samples=8,
                   representative_data=digits.x_train[:200], calibration=(digits.x_test, digits.y_test))
    stages = b.manifest["stages"]
    assert [s["file"] for s in stages] == ["body.tflite", "head.tflite"] and stages[1]["inputs"] == ["features"]
    body_ops = op_names((b.path / "body.tflite").read_bytes())
    head_ops = op_names((b.path / "head.tflite").read_bytes())
    assert not (set(body_ops) & BUILTIN_RANDOM) and set(head_ops) & BUILTIN_RANDOM
    assert b.manifest["verification"]["passed"]
    agree = np.mean(b.predict(digits.x_test).label == mc_dropout.predict(digits.x_test, num_samples=64).label)
    assert agree >= 0.9  # S=8 Monte Carlo noise on top of int8
