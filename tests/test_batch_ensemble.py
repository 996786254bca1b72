"""BatchEnsemble (Wen et al. 2020): layer maths, members differ, round trips, bundles."""
from __future__ import annotations

import numpy as np
import pytest

import tflbayes as tb
from tflbayes._keras import tf
from tflbayes.layers import Conv2DBatchEnsemble, DenseBatchEnsemble, TileMembers, UntileMembers


def test_dense_is_the_rank_one_member_weights():
    s, b, k, d = 3, 4, 5, 6
    layer = DenseBatchEnsemble(d, num_members=s, activation="relu")
    x = np.random.default_rng(0).normal(size=(s * b, k)).astype(np.float32)
    y = layer(x).numpy()
    w, r, g, bias = (v.numpy() for v in (layer.kernel, layer.alpha, layer.gamma, layer.member_bias))
    bias[:] = 0.0
    for m in range(s):
        want = np.maximum(x[m * b:(m + 1) * b] @ (w * np.outer(r[m], g[m])), 0.0)
        np.testing.assert_allclose(y[m * b:(m + 1) * b], want, atol=1e-5)


def test_conv_is_the_rank_one_member_kernels():
    s, b = 2, 3
    layer = Conv2DBatchEnsemble(4, 3, num_members=s, padding="same")
    x = np.random.default_rng(1).normal(size=(s * b, 6, 6, 2)).astype(np.float32)
    y = layer(x).numpy()
    w, r, g = (v.numpy() for v in (layer.kernel, layer.alpha, layer.gamma))
    for m in range(s):
        kern = w * r[m][None, None, :, None] * g[m][None, None, None, :]
        want = tf.nn.conv2d(x[m * b:(m + 1) * b], kern, 1, "SAME").numpy()
        np.testing.assert_allclose(y[m * b:(m + 1) * b], want, atol=1e-5)
    assert layer.compute_output_shape((None, 6, 6, 2)).as_list() == [None, 6, 6, 4]


@pytest.mark.parametrize("layer", [DenseBatchEnsemble(3, num_members=2, activation="relu"),
                                   Conv2DBatchEnsemble(4, (3, 3), num_members=2, strides=2, padding="same"),
                                   TileMembers(3), UntileMembers(3)])
def test_config_round_trip(layer):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_bad_arguments():
    with pytest.raises(tb.InvalidInputError, match="num_members"):
        DenseBatchEnsemble(3, num_members=0)
    with pytest.raises(tb.InvalidInputError, match="padding"):
        Conv2DBatchEnsemble(3, 3, num_members=2, padding="causal")


@pytest.fixture(scope="module")
def batch_ensemble(digits):
    from tflbayes.architectures import builder

    return tb.fit(builder("cnn", digits.input_shape, digits.num_classes), digits, method="batch_ensemble",
                  num_samples=3, epochs=5, verbose=0)


def test_members_differ(batch_ensemble, digits, x_noise):
    p = batch_ensemble.sample_probs(digits.x_test)
    assert p.shape == (3, len(digits.x_test), 10)
    assert np.abs(p[0] - p[1]).max() > 0.05 and np.abs(p[1] - p[2]).max() > 0.05
    assert batch_ensemble.predict(x_noise).epistemic.mean() > batch_ensemble.predict(digits.x_test).epistemic.mean()
    assert (batch_ensemble.predict(digits.x_test).label == digits.y_test).mean() > 0.8


def test_save_load_and_bundles(batch_ensemble, digits, tmp_path):
    batch_ensemble.save(tmp_path / "be")
    back = tb.load(tmp_path / "be")
    x = digits.x_test[:30]
    np.testing.assert_allclose(back.sample_probs(x), batch_ensemble.sample_probs(x), atol=1e-6)
    b = tb.convert(back, tmp_path / "b")
    np.testing.assert_allclose(b.predict(x).probs, batch_ensemble.predict(x).probs, atol=1e-4)
    q = tb.convert(back, tmp_path / "q", precision="int8", representative_data=digits.x_train[:200])
    assert (q.predict(x).probs.argmax(1) == batch_ensemble.predict(x).probs.argmax(1)).mean() >= 0.9


def test_functional_model_and_shared_layers():
    from conftest import make_functional_mlp
    from tflbayes.methods.batch_ensemble import to_batch_ensemble

    model = to_batch_ensemble(make_functional_mlp(), 4)
    assert model.output_shape == (None, 4, 10)
    kinds = {type(l).__name__ for l in model.layers[2].layers}
    assert "DenseBatchEnsemble" in kinds and "Dense" not in kinds
    x = np.random.default_rng(0).random((5, 8, 8, 1)).astype(np.float32)
    y = model(x).numpy()
    assert y.shape == (5, 4, 10) and np.abs(y[:, 0] - y[:, 1]).max() > 1e-4  # members differ from the start
