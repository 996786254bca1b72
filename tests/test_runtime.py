"""tflbayes.runtime, the device side: load a bundle, predict, decide; refuse bad bundles and inputs."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.errors import BundleError, InvalidInputError, TflbayesError
from tflbayes.runtime import ABSTAIN, Bundle, load_bundle
from tflbayes.uncertainty import decompose


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    """A copy of the tiny bundle that a test may damage."""
    return shutil.copytree(tiny_bundle, tmp_path / "copy")


def test_loads_the_manifest_facts(bundle, untrained_ensemble):
    assert isinstance(bundle, Bundle)
    assert (bundle.mode, bundle.precision, bundle.num_samples) == ("batched", "float32", 3)
    assert bundle.class_names == untrained_ensemble.class_names
    assert tuple(bundle.input_shape) == (8, 8, 1) and bundle.batch_size == 1
    assert bundle.files == ["model.tflite"] and bundle.size_bytes == (bundle.path / "model.tflite").stat().st_size


def test_predict_equals_the_keras_posterior(bundle, untrained_ensemble, digits):
    x = digits.x_test[:12]
    got, ref = bundle.predict(x), untrained_ensemble.predict(x)
    np.testing.assert_allclose(got.probs, ref.probs, atol=1e-4)
    np.testing.assert_allclose(got.probs.sum(-1), 1.0, atol=1e-9)
    for name in ("total", "aleatoric", "epistemic"):
        assert np.max(np.abs(getattr(got, name) - getattr(ref, name))) <= 1e-4, name


def test_in_graph_head_is_the_decomposition_of_the_member_probabilities(bundle, digits):
    x = digits.x_test[:9]
    samples = bundle.sample_probs(x)
    assert samples.shape == (3, 9, 10)
    pred = bundle.predict(x)
    np.testing.assert_allclose(pred.probs, samples.mean(0), atol=1e-5)
    for got, ref in zip((pred.total, pred.aleatoric, pred.epistemic), decompose(samples)):
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_inputs_are_run_one_batch_at_a_time_in_order(bundle, digits):
    x = digits.x_test[20:27]
    whole = bundle.run(x)
    rows = [bundle.run(x[i : i + 1]) for i in range(len(x))]
    for k, v in whole.items():
        axis = 1 if v.ndim == 3 else 0
        np.testing.assert_array_equal(v, np.concatenate([r[k] for r in rows], axis=axis))


def test_padding_of_the_last_chunk_does_not_leak(untrained_ensemble, digits, tmp_path):
    b4 = tb.convert(untrained_ensemble, tmp_path / "b4", mode="batched", batch_size=4,
                    calibration=(digits.x_test[:40], digits.y_test[:40]))
    assert b4.batch_size == 4
    x = digits.x_test[:6]  # one full chunk and one chunk of 2 padded to 4
    np.testing.assert_allclose(b4.predict(x).probs, untrained_ensemble.predict(x).probs, atol=1e-4)


def test_decide_abstains_above_the_calibrated_threshold(bundle, digits):
    thr = bundle.thresholds
    assert thr["score"] == "epistemic" and thr["coverage"] == pytest.approx(0.95) and thr["num_inputs"] == 100
    x = digits.x_test[:100]  # the calibration inputs: the threshold is their 95 % quantile
    decisions = bundle.decide(x)
    pred = bundle.predict(x)
    kept = np.array([d != ABSTAIN for d in decisions])
    assert 0.95 <= kept.mean() < 1.0
    np.testing.assert_array_equal(kept, pred.epistemic <= thr["epistemic"])
    names = bundle.class_names
    assert all(d == names[k] for d, k, ok in zip(decisions, pred.label, kept) if ok)


def test_decide_threshold_and_score_overrides(bundle, digits):
    x = digits.x_test[:10]
    pred = bundle.predict(x)
    assert bundle.decide(x, threshold=-1.0) == [ABSTAIN] * 10
    assert bundle.decide(x, threshold=np.inf) == [bundle.class_names[k] for k in pred.label]
    mid = float(np.median(pred.total))
    by_total = bundle.decide(x, threshold=mid, score="total")
    assert [d == ABSTAIN for d in by_total] == list(pred.total > mid)


def test_runtime_imports_no_tensorflow(tiny_bundle, digits, tmp_path):
    np.save(tmp_path / "x.npy", digits.x_test[:3])
    code = (f"import sys, numpy as np\nfrom tflbayes.runtime import load_bundle\n"
            f"b = load_bundle({str(tiny_bundle)!r})\nprint(b.decide(np.load({str(tmp_path / 'x.npy')!r})))\n"
            f"print('TF' if 'tensorflow' in sys.modules else 'NO_TF')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "NO_TF"


# -- bad bundles ------------------------------------------------------------------------------------
def test_missing_folder_and_manifest(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="manifest.json"):
        load_bundle(tmp_path / "empty")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""], ids=["truncated", "not-an-object", "empty"])
def test_unreadable_manifest(bundle_copy, text):
    (bundle_copy / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match="manifest.json"):
        load_bundle(bundle_copy)


def test_manifest_without_a_required_field(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    del m["class_names"]
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="class_names"):
        load_bundle(bundle_copy)


def test_model_file_missing_or_replaced(bundle_copy):
    model = bundle_copy / "model.tflite"
    blob = model.read_bytes()
    model.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(bundle_copy)
    model.unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(bundle_copy)


def test_no_threshold_means_decide_needs_one(untrained_ensemble, digits, tmp_path):
    b = tb.convert(untrained_ensemble, tmp_path / "nothr", mode="batched", verification_data=digits.x_test[:20])
    assert not b.thresholds
    with pytest.raises(BundleError, match="threshold"):
        b.decide(digits.x_test[:2])
    assert len(b.decide(digits.x_test[:2], threshold=np.inf)) == 2


# -- bad inputs -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((2, 8, 8)), "shape"),                              # no channel axis
        (np.zeros((8, 8, 1)), "shape"),                              # one input without the batch axis
        (np.zeros((0, 8, 8, 1)), "empty"),
        (np.full((2, 8, 8, 1), np.nan), "NaN"),
        (np.array([["a"] * 8] * 8), "numeric"),
    ],
    ids=["rank", "no-batch-axis", "empty", "nan", "strings"],
)
def test_bad_inputs_raise_invalid_input(bundle, x, match):
    with pytest.raises(InvalidInputError, match=match):
        bundle.predict(x)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda b, x: b.predict(x, num_samples=5), "num_samples"),
        (lambda b, x: b.decide(x, score="aleatoric"), "score"),
        (lambda b, x: load_bundle(b.path, max_resident=0), "max_resident"),
        (lambda b, x: load_bundle(b.path, runtime="gpu"), "runtime"),
    ],
    ids=["num_samples", "score", "max_resident", "runtime"],
)
def test_bad_arguments_raise_invalid_input(bundle, digits, call, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        call(bundle, digits.x_test[:2])
    assert isinstance(info.value, TflbayesError) and isinstance(info.value, ValueError)
