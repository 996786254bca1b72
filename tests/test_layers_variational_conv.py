"""Tests of the variational Conv1D / DepthwiseConv2D twins (tflbayes.layers.variational_conv).

Moment tests: every estimator gives each output the marginal N(x * mu + b, x^2 * sigma^2); the
sample mean and variance over 10,000 draws (fixed seed) must agree within 5 standard errors.
"""
import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tflbayes._keras import keras, tf
from tflbayes.layers import ESTIMATORS, MEAN_FIELD_LAYERS, VariationalConv1D, VariationalDepthwiseConv2D

N_DRAWS = 10_000
Z = 5.0


@pytest.fixture(autouse=True)
def _seed():
    tf.random.set_seed(1234)


def _draws(layer, x, n):
    x = tf.constant(x)
    fn = tf.function(lambda: tf.map_fn(lambda _: layer(x), tf.range(n), fn_output_signature=tf.float32))
    return fn().numpy().astype(np.float64)


def _set(layer, rng):
    loc = rng.normal(0, 0.5, layer.kernel_loc.shape).astype(np.float32)
    std = rng.uniform(0.05, 0.4, layer.kernel_loc.shape).astype(np.float32)
    layer.kernel_loc.assign(loc)
    layer.kernel_rho.assign(np.log(np.expm1(std)))
    layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    return loc, std


def _conv1d(x, w, stride, padding):
    return tf.nn.conv1d(x.astype(np.float64), w.astype(np.float64), stride, padding.upper()).numpy()


def _depthwise(x, w, stride, padding):
    return tf.nn.depthwise_conv2d(x.astype(np.float64), w.astype(np.float64), (1, stride, stride, 1),
                                  padding.upper()).numpy()


CASES = {
    "conv1d-same": (lambda e: VariationalConv1D(4, 3, padding="same", estimator=e), (3, 7, 2),
                    lambda x, w: _conv1d(x, w, 1, "same")),
    "conv1d-stride2": (lambda e: VariationalConv1D(3, 2, strides=2, estimator=e), (3, 7, 2),
                       lambda x, w: _conv1d(x, w, 2, "valid")),
    "depthwise-m2": (lambda e: VariationalDepthwiseConv2D(3, padding="same", depth_multiplier=2, estimator=e),
                     (2, 5, 5, 3), lambda x, w: _depthwise(x, w, 1, "same")),
    "depthwise-stride2": (lambda e: VariationalDepthwiseConv2D(2, strides=2, estimator=e), (2, 6, 6, 2),
                          lambda x, w: _depthwise(x, w, 2, "valid")),
}


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_moments_match_the_analytic_marginal(case, estimator):
    make, shape, linear = CASES[case]
    rng = np.random.default_rng(0)
    layer = make(estimator)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    layer(x)
    loc, std = _set(layer, rng)
    samples = _draws(layer, x, N_DRAWS)
    assert samples.shape[1:] == tuple(layer.compute_output_shape(shape))
    mean = linear(x, loc) + layer.bias.numpy()
    var = linear(np.square(x), np.square(std))
    err_mean = np.abs(samples.mean(0) - mean) / np.sqrt(var / N_DRAWS)
    assert err_mean.max() < Z, f"mean off by {err_mean.max():.1f} SE"
    err_var = np.abs(samples.var(0, ddof=1) / var - 1) / np.sqrt(2 / (N_DRAWS - 1))
    assert err_var.max() < Z, f"variance off by {err_var.max():.1f} SE"


@pytest.mark.parametrize("case", sorted(CASES))
def test_samples_differ_and_the_kl_is_in_losses(case):
    make, shape, _ = CASES[case]
    layer = make("flipout")
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    a, b = layer(x).numpy(), layer(x).numpy()
    assert not np.allclose(a, b)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), float(layer.kl_divergence()) * layer.kl_weight, rtol=1e-6)
    assert isinstance(layer, MEAN_FIELD_LAYERS)


@pytest.mark.parametrize("make", [
    lambda: VariationalConv1D(5, 3, strides=2, padding="same", activation="relu", estimator="reparameterization",
                              prior_std=0.5, kl_weight=0.01, init_std=0.02, name="c1"),
    lambda: VariationalDepthwiseConv2D((3, 2), strides=2, padding="valid", depth_multiplier=3, use_bias=False,
                                       estimator="local_reparameterization", name="dw"),
])
def test_get_config_round_trip_and_model_json(make):
    layer = make()
    again = type(layer).from_config(json.loads(json.dumps(layer.get_config())))
    assert again.get_config() == layer.get_config()
    inp = keras.Input((8, 3) if isinstance(layer, VariationalConv1D) else (8, 8, 3))
    model = keras.Model(inp, make()(inp))
    clone = keras.models.model_from_json(model.to_json())
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert clone.layers[-1].get_config() == model.layers[-1].get_config()


@pytest.mark.parametrize("make,match", [
    (lambda: VariationalConv1D(0, 3), "filters"),
    (lambda: VariationalConv1D(2, 3, padding="causal"), "padding"),
    (lambda: VariationalDepthwiseConv2D(3, strides=(1, 2)), "strides"),
    (lambda: VariationalDepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier"),
    (lambda: VariationalDepthwiseConv2D(3, estimator="bad"), "estimator"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_model_with_both_converts_to_litert_builtins_only():
    inp = keras.Input((6, 6, 2), batch_size=2)
    h = VariationalDepthwiseConv2D(3, padding="same", estimator="flipout")(inp)
    h = keras.layers.Reshape((36, 2))(h)
    out = VariationalConv1D(3, 3, estimator="local_reparameterization")(h)
    model = keras.Model(inp, out)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    it = Interpreter(model_content=converter.convert(),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    ops = {op["op_name"] for op in it._get_ops_details()}
    assert {"RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL", "DEPTHWISE_CONV_2D", "CONV_2D"} <= ops
    assert not any(op.startswith("Flex") for op in ops), ops
    x = np.random.default_rng(2).uniform(size=(2, 6, 6, 2)).astype(np.float32)
    runs = []
    for _ in range(2):
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        runs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    assert runs[0].shape == (2, 34, 3) and not np.allclose(runs[0], runs[1])
