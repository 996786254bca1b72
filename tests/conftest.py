"""Shared fixtures: tiny data and tiny trained posteriors, each built once per test session.

The trained posteriors use the bundled ``digits`` data (1,437 training images of 8x8) and the
small built-in MLP, so the whole suite trains in seconds on a CPU. Tests must not change what a
session fixture holds (save it elsewhere, copy it, or build their own).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import tflbayes as tb

EPOCHS = 10  # enough for ~95% test accuracy on digits with the MLP


def make_mlp(input_shape=(8, 8, 1), num_classes=10, hidden=(32, 16)):
    """A tiny deterministic Sequential MLP (logits out)."""
    from tflbayes.architectures import mlp

    return mlp(input_shape, num_classes, hidden=hidden)


def make_functional_mlp(input_shape=(8, 8, 1), num_classes=10, hidden=(32, 16), dropout=None):
    """The same MLP written with the functional API (optionally with Dropout after each hidden layer)."""
    from tflbayes._keras import keras

    inp = keras.Input(input_shape, name="image")
    h = keras.layers.Flatten(name="flat")(inp)
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="relu", name=f"hidden{i}")(h)
        if dropout is not None:
            h = keras.layers.Dropout(dropout, name=f"drop{i}")(h)
    out = keras.layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inp, out, name="functional_mlp")


def assert_one_error_line(result, *fragments) -> str:
    """A click result that failed the CLI way: exit 2, no traceback, one ``error: ...`` line on stderr
    containing every fragment; returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    err = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(err) == 1, result.stderr
    assert err[0].startswith("error: "), err
    for frag in fragments:
        assert frag in err[0], (frag, err[0])
    return err[0]


def run_result_script(tmp_path, source: str, timeout: int = 300) -> dict:
    """Run ``source`` as a fresh Python process (e.g. to split the CPU into logical devices before
    TensorFlow starts) and return the JSON it prints on its last ``RESULT `` line."""
    import json
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(source)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(line[-1][len("RESULT "):])


@pytest.fixture(scope="session")
def digits():
    """The bundled digits data set (train 1,437 / test 360, [8, 8, 1] in [0, 1], 10 classes)."""
    return tb.data.load("digits")


@pytest.fixture(scope="session")
def x_noise(digits):
    """Uniform-noise OOD inputs shaped like the digits test split."""
    return tb.data.ood(digits, "noise", seed=1)


@pytest.fixture(scope="session")
def mlp_builder(digits):
    """The CLI's ``--arch mlp`` builder for digits."""
    from tflbayes.architectures import builder

    return builder("mlp", digits.input_shape, digits.num_classes)


@pytest.fixture(scope="session")
def ensemble(digits, mlp_builder):
    """A 3-member deep ensemble of MLPs trained on digits."""
    return tb.fit(mlp_builder, digits, method="deep_ensemble", members=3, epochs=EPOCHS, verbose=0, seed=0)


@pytest.fixture(scope="session")
def mc_dropout(digits, mlp_builder):
    """An MC-dropout MLP trained on digits (dropout 0.25 inserted before the hidden and logit layers)."""
    return tb.fit(mlp_builder, digits, method="mc_dropout", epochs=EPOCHS, verbose=0, seed=0, num_samples=16)


@pytest.fixture(scope="session")
def variational(digits, mlp_builder):
    """A mean-field VI (Flipout) MLP trained on digits."""
    return tb.fit(mlp_builder, digits, method="variational", epochs=EPOCHS, verbose=0, seed=0, num_samples=16)


@pytest.fixture(scope="session")
def posteriors(ensemble, mc_dropout, variational):
    """The three trained posteriors by method name."""
    return {"deep_ensemble": ensemble, "mc_dropout": mc_dropout, "variational": variational}


@pytest.fixture(scope="session")
def untrained_ensemble():
    """A 3-member ensemble of randomly initialised tiny MLPs (no training: for storage tests)."""
    from tflbayes._keras import keras

    keras.utils.set_random_seed(0)
    model = make_mlp()
    rng = np.random.default_rng(0)
    sets = [[rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()] for _ in range(3)]
    return tb.EnsemblePosterior(model, sets, method="deep_ensemble", options={"members": 3},
                                class_names=[f"c{i}" for i in range(10)])


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, untrained_ensemble, digits):
    """A ``batched`` float32 LiteRT bundle of ``untrained_ensemble`` (S = 3, batch 1) with abstention
    thresholds calibrated on 100 digits test inputs. Read-only: copy it before changing it."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    tb.convert(untrained_ensemble, out, mode="batched", calibration=(digits.x_test[:100], digits.y_test[:100]))
    return out
