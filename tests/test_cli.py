"""Tests of the ``tflbayes`` command line (click): train, evaluate, demo, and its error contract.

Bad input must end with exit code 2 and one line ``error: ...`` on stderr, never a traceback.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import tflbayes as tb
from tflbayes.cli.main import cli
from conftest import assert_one_error_line

CORE = ["train", "evaluate", "demo"]
SUBCOMMANDS = sorted(set(cli.commands) | set(CORE))  # every registered sub-command


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)




@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``tflbayes train`` once: a 2-member MLP ensemble on digits, 1 epoch."""
    out = tmp_path_factory.mktemp("cli") / "ens"
    result = _run("train", "--data", "digits", "--method", "deep_ensemble", "--members", 2, "--epochs", 1,
                  "--arch", "mlp", "--quiet", "--out", out)
    return out, result


# --------------------------------------------------------------------------- help


def test_group_help_lists_every_subcommand():
    result = _run("--help")
    assert result.exit_code == 0, result.output
    for name in SUBCOMMANDS:
        assert name in result.output
    assert _run("-h").exit_code == 0


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name):
    result = _run(name, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {name}" in result.output or "Usage:" in result.output
    assert "--" in result.output  # documents its options
    assert _run(name, "-h").exit_code == 0


def test_version():
    result = _run("--version")
    assert result.exit_code == 0
    assert tb.__version__ in result.output


def test_console_script_runs():
    exe = Path(sys.executable).parent / "tflbayes"
    assert exe.exists(), f"console script {exe} is not installed (pip install -e .)"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: tflbayes")
    for name in SUBCOMMANDS:
        assert name in proc.stdout


# --------------------------------------------------------------------------- train / evaluate


def test_train_writes_a_loadable_posterior_and_says_where(trained, digits):
    out, result = trained
    assert result.exit_code == 0, (result.output, result.exception)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert str(out) in lines[-1]
    assert "wrote" in lines[-1]
    assert {p.name for p in out.iterdir()} == {"architecture.json", "weights.npz", "posterior.json"}
    post = tb.load(out)
    assert isinstance(post, tb.EnsemblePosterior)
    assert post.num_samples == 2
    assert post.method == "deep_ensemble"
    assert post.options["arch"] == "mlp"
    assert post.options["data"]["name"] == "digits"
    pred = post.predict(digits.x_test)
    assert np.mean(pred.label == digits.y_test) > 0.3  # one epoch: better than chance (0.1)


def test_train_default_output_is_derived_from_the_input():
    runner = CliRunner()
    with runner.isolated_filesystem():
        result = runner.invoke(cli, ["train", "--data", "digits", "--method", "mc_dropout", "--epochs", "1",
                                     "--arch", "mlp", "--quiet", "--rate", "0.1"])
        assert result.exit_code == 0, (result.output, result.exception)
        out = Path("runs/digits-mc_dropout")
        assert out.is_dir()
        assert "runs/digits-mc_dropout" in result.stdout.strip().splitlines()[-1]
        post = tb.load(out)
        assert post.method == "mc_dropout" and post.options["rate"] == 0.1


def test_evaluate_prints_a_table_and_writes_files(trained, tmp_path):
    out, _ = trained
    plots, report = tmp_path / "plots", tmp_path / "sub" / "metrics.json"
    result = _run("evaluate", out, "--data", "digits", "--ood", "noise", "--plots", plots, "--json", report)
    assert result.exit_code == 0, (result.output, result.exception)
    text = result.stdout
    for header in ("acc", "NLL", "ECE", "OOD-AUROC"):
        assert header in text
    assert "vs noise" in text
    last = text.strip().splitlines()[-1]
    assert str(report) in last and str(plots) in last
    data = json.loads(report.read_text())
    m = data["metrics"]["noise"]
    assert 0.0 <= m["accuracy"] <= 1.0 and m["nll"] > 0
    assert 0.0 <= m["ood_auroc_epistemic"] <= 1.0
    # the table shows the accuracy the JSON holds
    assert f"{m['accuracy']:.4f}" in text
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs and all(p.endswith(".png") for p in pngs)
    assert all((plots / p).stat().st_size > 1000 for p in pngs)


def test_evaluate_several_ood_protocols(trained):
    out, _ = trained
    result = _run("evaluate", out, "--ood", "noise", "--ood", "rotate")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "vs noise" in result.stdout and "vs rotate" in result.stdout


# --------------------------------------------------------------------------- bad input


def test_train_unknown_data_set(tmp_path):
    line = assert_one_error_line(_run("train", "--data", "cifar99", "--epochs", 1, "--out", tmp_path / "x"),
                                  "cifar99")
    assert "digits" in line


def test_train_missing_npz(tmp_path):
    assert_one_error_line(_run("train", "--data", tmp_path / "nope.npz", "--epochs", 1, "--out", tmp_path / "x"),
                           "nope.npz")


def test_train_unknown_method(tmp_path):
    line = assert_one_error_line(
        _run("train", "--method", "bayes_by_magic", "--epochs", 1, "--arch", "mlp", "--out", tmp_path / "x"), "bayes_by_magic")
    assert "deep_ensemble" in line and "mc_dropout" in line
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--method", "deep_ensemble", "--members", "0"], "members"),
        (["--method", "mc_dropout", "--rate", "1.5"], "rate"),
        (["--method", "variational", "--estimator", "x"], "estimator"),
        (["--method", "deep_ensemble", "-o", "bogus=1"], "bogus"),
        (["--method", "deep_ensemble", "--rate", "0.5"], "rate"),  # an option of another method
        (["--epochs", "0"], "epochs"),
        (["--holdout", "42"], "holdout"),
    ],
)
def test_train_bad_options(tmp_path, args, fragment):
    assert_one_error_line(_run("train", "--arch", "mlp", "--epochs", 1, *args, "--out", tmp_path / "x"), fragment)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args", [["--arch", "transformer"], ["--epochs", "many"], ["--bogus-flag"], ["-o", "noequals"]])
def test_train_usage_errors_exit_2_without_traceback(tmp_path, args):
    result = _run("train", *args, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Error" in result.output or "error" in result.output


def test_evaluate_missing_folder(tmp_path):
    assert_one_error_line(_run("evaluate", tmp_path / "missing"), "missing")


def test_evaluate_corrupt_posterior(trained, tmp_path):
    out, _ = trained
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    w = bad / "weights.npz"
    w.write_bytes(w.read_bytes()[:100])
    assert_one_error_line(_run("evaluate", bad), "weights.npz")
    (bad / "posterior.json").write_text("{not json")
    assert_one_error_line(_run("evaluate", bad), "posterior.json")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--data", "cifar99"], "cifar99"),
        (["--ood", "teapots"], "teapots"),
        (["--ood", "heldout"], "heldout"),  # trained without held-out classes
        (["--num-samples", "0"], "num_samples"),
        (["--data", "mnist"], ""),  # 28x28 inputs for an 8x8 model
    ],
)
def test_evaluate_bad_options(trained, args, fragment):
    out, _ = trained
    assert_one_error_line(_run("evaluate", out, *args), fragment)


def test_train_layers_by_name(tmp_path):
    """--layers takes a policy or comma-separated layer names (dropout before each named layer)."""
    result = _run("train", "--data", "digits", "--arch", "mlp", "--method", "mc_dropout", "--layers", "logits",
                  "--epochs", 1, "--out", tmp_path / "mcd")
    assert result.exit_code == 0, result.output
    post = tb.load(tmp_path / "mcd")
    assert post.options["dropout_layers"] and all("logits" in str(n) for n in post.options["dropout_layers"])
    assert_one_error_line(_run("train", "--arch", "mlp", "--method", "mc_dropout", "--layers", "nope",
                                "--epochs", 1, "--out", tmp_path / "bad"), "nope")
