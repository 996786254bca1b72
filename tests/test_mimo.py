"""MIMO (Havasi et al. 2021): widening, training batches, heads' disagreement, bundles."""
from __future__ import annotations

import numpy as np
import pytest

import tflbayes as tb
from tflbayes._keras import keras
from tflbayes.methods.mimo import MimoBatches, to_mimo


@pytest.fixture(scope="module")
def mimo(digits, mlp_builder):
    return tb.fit(mlp_builder, digits, method="mimo", num_samples=3, epochs=4, verbose=0)


def test_heads_disagree_more_off_distribution(mimo, digits, x_noise):
    p_in, p_ood = mimo.predict(digits.x_test), mimo.predict(x_noise)
    assert mimo.sample_probs(digits.x_test).shape == (3, len(digits.x_test), 10)
    assert p_ood.epistemic.mean() > 2 * p_in.epistemic.mean()
    res = tb.metrics.evaluate(mimo, digits.x_test, digits.y_test, x_ood=x_noise)
    assert res["ood_auroc_epistemic"] > 0.8 and res["accuracy"] > 0.7


def test_widening_keeps_weights_shared_and_one_input(mlp_builder):
    core, pred = to_mimo(mlp_builder(), 3)
    assert core.input_shape == (None, 8, 8, 3) and core.output_shape == (None, 3, 10)
    assert pred.input_shape == (None, 8, 8, 1) and pred.output_shape == (None, 3, 10)
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(pred(x).numpy(), core(np.concatenate([x] * 3, -1)).numpy(), atol=1e-6)


def test_batches_shuffle_slots_independently_and_repeat():
    x = np.arange(40, dtype=np.float32).reshape(40, 1)
    y = np.arange(40)
    xb, yb = MimoBatches(x, y, 3, 10, batch_repetitions=2, seed=0)[0]
    assert xb.shape == (20, 3) and yb.shape == (20, 3)
    np.testing.assert_array_equal(xb, yb.astype(np.float32))  # every slot's label is its own input's
    assert not np.all(xb[:, 0] == xb[:, 1])
    assert sorted(np.unique(xb[:, 0], return_counts=True)[1]) == [2] * 10  # each example twice
    xs, _ = MimoBatches(x, y, 3, 40, input_repetition=0.99, seed=0)[0]
    assert np.mean(xs[:, 0] == xs[:, 2]) > 0.9


def test_refuses_models_it_cannot_widen():
    def depthwise_first():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.DepthwiseConv2D(3), keras.layers.Flatten(),
                                 keras.layers.Dense(10)])

    def softmax_last():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])

    with pytest.raises(tb.InvalidInputError, match="first weight layer"):
        to_mimo(depthwise_first(), 3)
    with pytest.raises(tb.InvalidInputError, match="Dense layer that outputs logits"):
        to_mimo(softmax_last(), 3)
    with pytest.raises(tb.InvalidInputError, match="input_repetition"):
        tb.fit(depthwise_first, (np.zeros((8, 8, 8, 1)), np.zeros(8, int)), method="mimo", input_repetition=1.5)


def test_save_load_and_bundles(mimo, digits, tmp_path):
    mimo.save(tmp_path / "m")
    back = tb.load(tmp_path / "m")
    assert back.kind == "single_pass" and back.num_samples == 3
    np.testing.assert_allclose(back.sample_probs(digits.x_test[:20]), mimo.sample_probs(digits.x_test[:20]), atol=1e-6)
    b = tb.convert(back, tmp_path / "b", calibration=(digits.x_test[:60], digits.y_test[:60]))
    assert b.manifest["mode"] == "single_pass" and b.num_samples == 3
    x = digits.x_test[60:90]
    np.testing.assert_allclose(b.predict(x).probs, mimo.predict(x).probs, atol=1e-4)
    np.testing.assert_allclose(b.predict(x).epistemic, mimo.predict(x).epistemic, atol=1e-4)
    q = tb.convert(back, tmp_path / "q", precision="int8", representative_data=digits.x_train[:200])
    assert (q.predict(x).probs.argmax(1) == mimo.predict(x).probs.argmax(1)).mean() >= 0.9


def test_cli_train_mimo(tmp_path):
    from click.testing import CliRunner

    from tflbayes.cli.main import cli

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--method", "mimo", "--arch", "mlp", "--epochs", "1", "--quiet",
                                   "-o", "num_samples=2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert tb.load(out).num_samples == 2


def test_functional_models_widen_too():
    from conftest import make_functional_mlp

    core, pred = to_mimo(make_functional_mlp(), 2)
    assert core.input_shape == (None, 8, 8, 2) and pred.output_shape == (None, 2, 10)
    assert core.get_layer("hidden0").kernel.shape == (128, 32)  # 64 pixels x 2 slots
