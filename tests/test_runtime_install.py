"""The edge-board install: a fresh venv with the README's runtime line has no TensorFlow and runs a bundle.

README: ``pip install tflbayes`` (from a checkout: ``pip install .``) installs the runtime only
(ai-edge-litert, numpy, click); the training stack is the ``train`` extra. This test builds a
new virtual environment (no system site-packages), runs that line in it and then the CLI's
``predict`` and ``inspect`` on a bundle converted here. About 30 s with pip's cache warm; pip
downloads what its cache lacks from the package index. Skipped (visibly) only when pip cannot
reach an index at all; any other install failure fails the test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
NO_NETWORK = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
              "No matching distribution found for ai-edge-litert", "Could not fetch URL")


def _readme_runtime_line() -> list:
    """The README's edge-board install command (the ``pip install`` line that says "edge board")."""
    lines = [ln for ln in (ROOT / "README.md").read_text().splitlines()
             if ln.startswith("pip install") and "edge board" in ln]
    assert len(lines) == 1, f"README.md should have one edge-board install line, found {lines}"
    return lines[0].split("#", 1)[0].split()


def test_readme_runtime_line_installs_the_base_package_only():
    assert _readme_runtime_line() == ["pip", "install", "."]  # no extra: the base dependencies are the runtime


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    """``python -m venv`` (no system site-packages) + the README's runtime install line, in the checkout."""
    env_dir = tmp_path_factory.mktemp("edge") / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    pip, install, *args = _readme_runtime_line()
    proc = subprocess.run([str(py), "-m", pip, install, "--quiet", "--disable-pip-version-check", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        if any(s in proc.stderr for s in NO_NETWORK):
            pytest.skip(f"pip cannot reach a package index here: {proc.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"`pip install .` failed in a fresh venv:\n{proc.stderr[-4000:]}")
    return env_dir, env


def _run(runtime_venv, *args):
    env_dir, env = runtime_venv
    # cwd outside the checkout: the venv must use the installed package, not ./tflbayes
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=env_dir.parent)


def test_runtime_install_has_no_tensorflow(runtime_venv):
    env_dir, _ = runtime_venv
    py = env_dir / "bin" / "python"
    for module in ("tensorflow", "tf_keras", "tensorflow_probability", "scipy", "sklearn"):
        proc = _run(runtime_venv, py, "-c", f"import {module}")
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, module
    proc = _run(runtime_venv, py, "-c", "import tflbayes, ai_edge_litert, numpy; print(tflbayes.__file__)")
    assert proc.returncode == 0, proc.stderr
    assert str(ROOT) not in proc.stdout and str(env_dir) in proc.stdout  # the installed copy, not the checkout


def test_predict_and_inspect_run_in_the_runtime_install(runtime_venv, tiny_bundle, digits, tmp_path):
    env_dir, _ = runtime_venv
    x = digits.x_test[:4]
    np.save(tmp_path / "x.npy", x)
    cli = env_dir / "bin" / "tflbayes"
    proc = _run(runtime_venv, cli, "predict", tiny_bundle, "--input", tmp_path / "x.npy", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    from tflbayes.runtime import load_bundle

    b = load_bundle(tiny_bundle)  # the same bundle in the full install
    ref, decisions = b.predict(x), b.decide(x)
    assert [r["decision"] for r in rows] == decisions
    np.testing.assert_allclose([r["epistemic"] for r in rows], ref.epistemic, atol=1e-6)
    np.testing.assert_allclose([r["p"] for r in rows], ref.probs.max(-1), atol=1e-6)
    proc = _run(runtime_venv, cli, "inspect", tiny_bundle)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mode=batched" in proc.stdout and "model.tflite" in proc.stdout


def test_training_commands_say_what_to_install(runtime_venv):
    env_dir, _ = runtime_venv
    proc = _run(runtime_venv, env_dir / "bin" / "python", "-c", "import tflbayes as tb; tb.fit")
    assert proc.returncode != 0
    assert "tflbayes[train]" in proc.stderr
