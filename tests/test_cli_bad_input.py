"""Bad input to every CLI sub-command: one ``error: ...`` line on stderr and exit code 2, before any work.

The cases are the ones of issue 13's campaign that ended in a traceback or a silent success:
output paths that are files, folders, under a file or unwritable; ``inspect`` on manifests of the
wrong shape; ``bench --rounds 0``; ``report`` on results of the wrong structure; ``predict`` with
``--threshold nan``, complex inputs and int class names.
"""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from click.testing import CliRunner

from tflbayes.cli.main import cli

import _tamper as T
from conftest import assert_one_error_line


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)




@pytest.fixture(scope="module")
def posterior_dir(tmp_path_factory, untrained_ensemble):
    path = tmp_path_factory.mktemp("cli_bad") / "post"
    untrained_ensemble.save(path)
    return path


@pytest.fixture
def places(tmp_path):
    """An existing file, a path under it, and a non-empty folder that is no tflbayes artifact."""
    f = tmp_path / "afile"
    f.write_text("x")
    d = tmp_path / "adir"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    return {"file": f, "under-file": f / "sub", "foreign-dir": d}


# --------------------------------------------------------------------------- output paths

_FOLDER_MESSAGES = {"file": "is an existing file", "under-file": "is a file, not a folder",
                    "foreign-dir": "non-empty folder"}


@pytest.mark.parametrize("where", ["file", "under-file", "foreign-dir"])
def test_train_checks_out_before_training(places, where):
    t0 = time.perf_counter()
    result = _run("train", "--data", "digits", "--method", "deep_ensemble", "--members", 2, "--epochs", 50,
                  "--arch", "mlp", "--quiet", "--out", places[where])
    assert_one_error_line(result, "--out", _FOLDER_MESSAGES[where])
    assert time.perf_counter() - t0 < 20  # 50 epochs of 2 members were not trained first
    assert (places["foreign-dir"] / "notes.txt").read_text() == "mine"


def test_train_refuses_an_unwritable_location(tmp_path, monkeypatch):
    import tflbayes.cli._common as common

    ro = tmp_path / "ro"
    ro.mkdir()
    real = common.os.access
    monkeypatch.setattr(common.os, "access", lambda p, mode: False if str(p) == str(ro) else real(p, mode))
    result = _run("train", "--epochs", 1, "--quiet", "--out", ro / "post")
    assert_one_error_line(result, "not writable")


@pytest.mark.parametrize("cmd", [
    ("convert", "{post}"), ("compress", "{post}", "--sparsity", 0.5), ("distill", "{post}", "--epochs", 1),
    ("calibrate", "{post}"), ("demo", "--epochs", 1),
], ids=lambda c: c[0])
@pytest.mark.parametrize("where", ["file", "under-file"])
def test_folder_outputs_are_checked_first(posterior_dir, places, cmd, where):
    args = [a.format(post=posterior_dir) if isinstance(a, str) else a for a in cmd]
    result = _run(*args, "--out", places[where])
    assert_one_error_line(result, "--out", _FOLDER_MESSAGES[where])


def test_convert_will_not_replace_a_foreign_folder(posterior_dir, places):
    assert_one_error_line(_run("convert", posterior_dir, "--out", places["foreign-dir"]), "non-empty folder")
    assert (places["foreign-dir"] / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("option, where, message", [
    ("--json", "foreign-dir", "is a folder"), ("--json", "under-file", "is a file, not a folder"),
    ("--plots", "file", "is an existing file"), ("--plots", "under-file", "is a file, not a folder"),
])
def test_evaluate_checks_its_outputs_first(posterior_dir, places, option, where, message):
    assert_one_error_line(_run("evaluate", posterior_dir, option, places[where]), option, message)


@pytest.mark.parametrize("rounds", [0, -5])
def test_bench_rounds_must_be_positive(tiny_bundle, rounds):
    assert_one_error_line(_run("bench", tiny_bundle, "--rounds", rounds, "--no-memory"), "--rounds")


@pytest.mark.parametrize("where, message", [("foreign-dir", "is a folder"), ("under-file", "is a file, not a folder")])
def test_bench_checks_out_first(tiny_bundle, places, where, message):
    assert_one_error_line(_run("bench", tiny_bundle, "--rounds", 3, "--no-memory", "--out", places[where]), message)


def test_a_missing_posterior_is_one_line(tmp_path):
    assert_one_error_line(_run("evaluate", tmp_path / "nope"), "does not exist")


# --------------------------------------------------------------------------- inspect


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    return dst


@pytest.mark.parametrize("edit", [
    lambda m: m.pop("ops"),
    lambda m: m.update(ops={}),
    lambda m: m.update(verification={"passed": True, "max_abs_prob_diff": "tiny"}),
    lambda m: m.pop("verification"),
    lambda m: m["thresholds"].pop("coverage"),
], ids=["no-ops", "empty-ops", "verification-str-value", "no-verification", "no-coverage"])
def test_inspect_shows_what_is_there(bundle_copy, edit):
    m = T.manifest(bundle_copy)
    edit(m)
    T.write_manifest(bundle_copy, m)
    result = _run("inspect", bundle_copy)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m.update(verification=[1, 2]), "verification"),
    (lambda m: m.update(thresholds="0.5"), "thresholds"),
    (lambda m: m.update(thresholds={"score": "epistemic"}), "thresholds"),
    (lambda m: m.update(thresholds={"score": "epistemic", "epistemic": [0.1]}), "thresholds"),
    (lambda m: m.update(ops=["model.tflite"]), "ops"),
    (lambda m: m.update(edgetpu=[]), "edgetpu"),
    (lambda m: m.update(edgetpu={"readiness": {"body.tflite": "ready"}}), "edgetpu"),
    (lambda m: m.pop("stages"), "stages"),
    (lambda m: m.update(class_names=list(range(10))), "class_names"),
], ids=["verification-list", "thr-str", "thr-no-value", "thr-list-value", "ops-list", "edgetpu-list",
        "edgetpu-readiness", "no-stages", "int-names"])
def test_inspect_on_malformed_manifests_is_one_line(bundle_copy, edit, fragment):
    m = T.manifest(bundle_copy)
    edit(m)
    T.write_manifest(bundle_copy, m)
    assert_one_error_line(_run("inspect", bundle_copy), fragment)


@pytest.mark.parametrize("text", ["{", "[1]", "[" * 100_000, '{"format_version": ' + "1" * 5000 + "}"])
def test_inspect_on_a_broken_manifest_file_is_one_line(bundle_copy, text):
    (bundle_copy / "manifest.json").write_text(text)
    assert_one_error_line(_run("inspect", bundle_copy), "manifest")


# --------------------------------------------------------------------------- report


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"title": "x"}), "configs"),
    (json.dumps({"configs": []}), "configs"),
    (json.dumps({"configs": {}}), "configs"),
    (json.dumps({"configs": {"a": 1}}), "configs['a']"),
    (json.dumps({"configs": {"a": {"latency_ms": "fast"}}}), "latency_ms"),
    (json.dumps({"configs": {"a": {"nll": [1]}}}), "nll"),
    (json.dumps({"configs": {"a": {"nll": 1.0}}, "environment": []}), "environment"),
    (json.dumps({"configs": {"a": {"nll": 1.0}}, "title": 3}), "title"),
], ids=["bad-json", "list", "no-configs", "configs-list", "configs-empty", "row-int", "cost-str", "facet-list",
        "env-list", "title-int"])
def test_report_on_results_of_the_wrong_structure(tmp_path, content, fragment):
    p = tmp_path / "results.json"
    p.write_text(content)
    assert_one_error_line(_run("report", p, "--out", tmp_path / "rep"), fragment)


def test_report_on_a_missing_file(tmp_path):
    assert_one_error_line(_run("report", tmp_path / "none.json"), "missing")


# --------------------------------------------------------------------------- predict


@pytest.fixture
def inputs(tmp_path, digits):
    p = tmp_path / "x.npy"
    np.save(p, digits.x_test[:3])
    return p


@pytest.mark.parametrize("threshold", ["nan", "NaN"])
def test_predict_threshold_must_not_be_nan(tiny_bundle, inputs, threshold):
    assert_one_error_line(_run("predict", tiny_bundle, "--input", inputs, "--threshold", threshold), "--threshold")


def test_predict_threshold_inf_never_abstains(tiny_bundle, inputs):
    result = _run("predict", tiny_bundle, "--input", inputs, "--threshold", "inf", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    assert all(json.loads(line)["decision"] != "abstain" for line in result.stdout.splitlines())


def test_predict_refuses_complex_inputs(tiny_bundle, tmp_path, digits):
    p = tmp_path / "c.npy"
    np.save(p, digits.x_test[:2].astype(np.complex64) * (1 + 1j))
    assert_one_error_line(_run("predict", tiny_bundle, "--input", p), "complex")


def test_predict_refuses_int_class_names(bundle_copy, inputs):
    m = T.manifest(bundle_copy)
    m["class_names"] = list(range(10))
    T.write_manifest(bundle_copy, m)
    assert_one_error_line(_run("predict", bundle_copy, "--input", inputs), "class_names")


@pytest.mark.parametrize("make, fragment", [
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "unpickling"),
    (lambda p: p.write_bytes(b"not an npy"), "cannot be read"),
    (lambda p: np.save(p, np.zeros((2, 5))), "shape"),
    (lambda p: np.save(p, np.array(["a", "b"])), "numeric"),
    (lambda p: None, "does not exist"),
], ids=["pickle", "garbage", "shape", "strings", "missing"])
def test_predict_bad_input_files(tiny_bundle, tmp_path, make, fragment):
    p = tmp_path / "in.npy"
    make(p)
    assert_one_error_line(_run("predict", tiny_bundle, "--input", p), fragment)


def test_predict_threads_must_be_positive(tiny_bundle, inputs):
    assert_one_error_line(_run("predict", tiny_bundle, "--input", inputs, "--threads", 0), "--threads")


def test_predict_near_the_float32_limit_never_passes_nan_as_a_class(tiny_bundle, tmp_path):
    p = tmp_path / "big.npy"
    np.save(p, np.full((2, 8, 8, 1), 3e38, np.float32))
    result = _run("predict", tiny_bundle, "--input", p, "--json")
    if result.exit_code == 2:
        assert_one_error_line(result)
        return
    assert result.exit_code == 0, (result.output, result.exception)
    for line in result.stdout.splitlines():
        row = json.loads(line.replace("NaN", "null"))
        if row["p"] is None or row["epistemic"] is None:
            assert row["decision"] == "abstain", row
