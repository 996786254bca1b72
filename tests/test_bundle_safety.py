"""Safe to run: bundles refuse files outside the folder, relabelled manifests, bad thresholds, complex
inputs, and never pass a non-finite output as a class (issue 13)."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from tflbayes.errors import BundleError, InvalidInputError

import _tamper as T


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    return dst


def _body(path) -> str:
    return T.manifest(path)["stages"][0]["file"]


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["stages"][0].update(edgetpu_file="../../../other/model.tflite"), "edgetpu_file"),
    (lambda m: m["stages"][0].update(edgetpu_file="/etc/passwd"), "edgetpu_file"),
    (lambda m: m["stages"][0].update(file="../model.tflite"), "plain name"),
    (lambda m: m.update(precision="edgetpu"), "precision"),
    (lambda m: m.update(precision="int8"), "precision"),
    (lambda m: m.update(precision="float16"), "precision"),
    (lambda m: m.update(precision="dynamic"), "precision"),
    (lambda m: m.update(mode="stochastic"), "mode"),
    (lambda m: m.update(mode="members"), "mode"),
    (lambda m: m.update(mode="dirichlet"), "mode"),
    (lambda m: m.update(num_samples=10 ** 12), "num_samples"),
    (lambda m: m.update(num_samples=2), "num_samples"),
    (lambda m: m.update(num_samples=True), "num_samples"),
    (lambda m: m.update(thresholds="0.5"), "thresholds"),
    (lambda m: m.update(thresholds=[]), "thresholds"),
    (lambda m: m["thresholds"].update(epistemic="0.1"), "thresholds"),
    (lambda m: m["thresholds"].update(score="aleatoric"), "thresholds"),
    (lambda m: m["thresholds"].update(coverage=5), "coverage"),
    (lambda m: m.update(class_names=list(range(10))), "class_names"),
    (lambda m: m.update(class_names=["abstain", *m["class_names"][1:]]), "abstain"),
    (lambda m: m.update(class_names=["a"] * 10), "unique"),
    (lambda m: m.update(ops=[]), "ops"),
    (lambda m: m.update(verification=[1]), "verification"),
    (lambda m: m.update(postprocessing="host"), "postprocessing"),
], ids=["edgetpu-up", "edgetpu-abs", "file-up", "edgetpu", "int8", "float16", "dynamic", "stochastic", "members",
        "dirichlet", "S-huge", "S-wrong", "S-bool", "thr-str", "thr-list", "thr-value", "thr-score", "coverage",
        "int-names", "abstain", "dup-names", "ops", "verification", "postprocessing"])
def test_edited_manifests_are_refused(bundle_copy, edit, match):
    from tflbayes.runtime import load_bundle

    m = T.manifest(bundle_copy)
    edit(m)
    T.write_manifest(bundle_copy, m)
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle_copy)


def test_graph_files_that_leave_the_folder_are_refused(bundle_copy, tmp_path):
    from tflbayes.runtime import load_bundle

    body = _body(bundle_copy)
    shutil.move(bundle_copy / body, tmp_path / "outside.tflite")
    (bundle_copy / body).symlink_to(tmp_path / "outside.tflite")
    with pytest.raises(BundleError, match="outside the folder"):
        load_bundle(bundle_copy)


def test_only_checksummed_edge_tpu_files_run(bundle_copy, tmp_path):
    from tflbayes.runtime import load_bundle

    b = load_bundle(bundle_copy)
    body = _body(bundle_copy)
    shutil.copy(bundle_copy / body, bundle_copy / "body_edgetpu.tflite")
    b.use_edgetpu = True
    stage = {"kind": "graph", "file": body, "edgetpu_file": "body_edgetpu.tflite"}
    with pytest.raises(BundleError, match="no checksum"):
        b._edgetpu_file(stage)
    with pytest.raises(BundleError, match="checksum"):
        b._edgetpu_file({**stage, "edgetpu_sha256": "0" * 64})
    from tflbayes._io import sha256_file

    assert b._edgetpu_file({**stage, "edgetpu_sha256": sha256_file(bundle_copy / "body_edgetpu.tflite")}) \
        == "body_edgetpu.tflite"
    b.use_edgetpu = False
    assert b._edgetpu_file(stage) is None


def test_non_finite_outputs_abstain(tiny_bundle, digits, monkeypatch):
    from tflbayes.runtime import load_bundle

    b = load_bundle(tiny_bundle)
    x = np.full((3, 8, 8, 1), 3e38, np.float32)
    try:
        decisions = b.decide(x)
    except InvalidInputError:
        decisions = ["abstain"] * 3
    pred = b.predict(x)
    for d, p in zip(decisions, pred.probs):
        if not np.all(np.isfinite(p)):
            assert d == "abstain"
    real = b.predict

    def nan_predict(xx, num_samples=None):
        p = real(xx)
        p.probs[0] = np.nan
        p.epistemic[1] = np.nan
        return p

    monkeypatch.setattr(b, "predict", nan_predict)
    out = b.decide(digits.x_test[:3], threshold=1e9)
    assert out[:2] == ["abstain", "abstain"] and out[2] != "abstain"


@pytest.mark.parametrize("threshold", [float("nan"), "0.1", True, [0.1], None])
def test_decide_checks_the_threshold(tiny_bundle, digits, threshold):
    from tflbayes.runtime import load_bundle

    b = load_bundle(tiny_bundle)
    if threshold is None:
        assert len(b.decide(digits.x_test[:2])) == 2  # the calibrated one
        return
    with pytest.raises(InvalidInputError, match="threshold"):
        b.decide(digits.x_test[:2], threshold=threshold)


def test_complex_inputs_are_refused(tiny_bundle, untrained_ensemble, digits):
    from tflbayes.runtime import load_bundle

    x = digits.x_test[:2].astype(np.complex64) + 1j
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: refused before any cast
        with pytest.raises(InvalidInputError, match="complex"):
            load_bundle(tiny_bundle).predict(x)
        with pytest.raises(InvalidInputError, match="complex"):
            untrained_ensemble.predict(x)


def test_a_manifest_that_is_not_json_is_a_bundle_error(bundle_copy):
    from tflbayes.runtime import load_bundle

    for text in ("[" * 100_000, '{"format_version": ' + "1" * 5000 + "}", "[1, 2]", "\xff"):
        (bundle_copy / "manifest.json").write_text(text, errors="surrogateescape") if text != "\xff" else \
            (bundle_copy / "manifest.json").write_bytes(b"\xff\xfe")
        with pytest.raises(BundleError, match="manifest"):
            load_bundle(bundle_copy)
