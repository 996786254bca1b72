"""Tests of tflbayes.layers: MC dropout and the mean-field Gaussian variational layers.

The statistical tests use a fixed seed and tolerances of 5 standard errors of the estimate,
so they are deterministic and would still pass for (almost) any other seed.
"""
import json
import math

import numpy as np
import pytest
import scipy.stats
import tensorflow_probability as tfp
from tflbayes._keras import keras, tf
from tflbayes.layers import (
    ESTIMATORS,
    VARIATIONAL_LAYERS,
    MCDropout,
    VariationalConv2D,
    VariationalDense,
)

from _litert import interpreter as litert_interpreter

tfd = tfp.distributions

N_DRAWS = 20_000  # Monte Carlo draws for the moment tests
Z = 5.0  # tolerance in standard errors


@pytest.fixture(autouse=True)
def _seed():
    tf.random.set_seed(1234)


def _softplus_inverse(y):
    return np.log(np.expm1(y))


def _draws(layer, x, n):
    """``[n, *output]`` outputs of ``n`` independent calls (one tf.function, a while loop)."""
    x = tf.constant(x)
    fn = tf.function(
        lambda: tf.map_fn(lambda _: layer(x), tf.range(n), fn_output_signature=tf.float32)
    )
    return fn().numpy().astype(np.float64)


def _set_posterior(layer, loc, std, bias):
    layer.kernel_loc.assign(loc)
    layer.kernel_rho.assign(_softplus_inverse(std))
    layer.bias.assign(bias)


def _assert_moments(samples, mean, var, n_ref=None):
    """Sample mean/variance over axis 0 match ``mean``/``var`` within Z standard errors.

    With ``n_ref`` the reference is itself a Monte Carlo estimate from ``n_ref`` draws
    (two-sample tolerances). Normal outputs: SE(mean) = sqrt(var/n), SE(var)/var = sqrt(2/(n-1)).
    """
    n = samples.shape[0]
    inv_n = 1.0 / n + (1.0 / n_ref if n_ref else 0.0)
    inv_n1 = 1.0 / (n - 1) + (1.0 / (n_ref - 1) if n_ref else 0.0)
    err_mean = np.abs(samples.mean(0) - mean) / np.sqrt(var * inv_n)
    err_var = np.abs(samples.var(0, ddof=1) / var - 1.0) / np.sqrt(2.0 * inv_n1)
    assert err_mean.max() < Z, f"mean off by {err_mean.max():.1f} standard errors"
    assert err_var.max() < Z, f"variance off by {err_var.max():.1f} standard errors"


# ---------------------------------------------------------------- a fixed dense posterior


@pytest.fixture
def dense_case():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    loc = (0.5 * rng.normal(size=(5, 3))).astype(np.float32)
    std = rng.uniform(0.1, 0.6, size=(5, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    mean = x.astype(np.float64) @ loc + bias
    var = np.square(x.astype(np.float64)) @ np.square(std.astype(np.float64))
    return x, loc, std, bias, mean, var


def _dense(estimator, case, **kwargs):
    x, loc, std, bias, *_ = case
    layer = VariationalDense(3, estimator=estimator, **kwargs)
    layer.build(x.shape)
    _set_posterior(layer, loc, std, bias)
    return layer


# ---------------------------------------------------------------- shapes and randomness


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_dense_output_shape_and_samples_differ(estimator):
    layer = VariationalDense(7, estimator=estimator, activation="relu")
    x = tf.random.normal((4, 5))
    y1, y2 = layer(x), layer(x)
    assert y1.shape == (4, 7) == layer.compute_output_shape(x.shape)
    assert not np.allclose(y1, y2)
    # rank > 2 like keras.layers.Dense
    assert layer(tf.random.normal((4, 2, 5))).shape == (4, 2, 7)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(kernel_size=3), (2, 6, 5, 4)),
        (dict(kernel_size=(3, 2), strides=2, padding="same"), (2, 4, 4, 4)),
        (dict(kernel_size=3, strides=(2, 1), padding="VALID"), (2, 3, 5, 4)),
    ],
)
def test_conv_output_shape_and_samples_differ(estimator, kwargs, expected):
    layer = VariationalConv2D(4, estimator=estimator, **kwargs)
    x = tf.random.normal((2, 8, 7, 3))
    y1, y2 = layer(x), layer(x)
    assert y1.shape == expected == tuple(layer.compute_output_shape(x.shape))
    assert layer.kernel_loc.shape == (*layer.kernel_size, 3, 4)
    assert not np.allclose(y1, y2)


def test_mc_dropout_is_always_on():
    layer = MCDropout(0.3)
    x = tf.ones((100, 100))
    y_default, y_eval, y_train = layer(x), layer(x, training=False), layer(x, training=True)
    for y in (y_default, y_eval, y_train):
        dropped = np.mean(y.numpy() == 0.0)
        assert abs(dropped - 0.3) < Z * math.sqrt(0.3 * 0.7 / x.shape.num_elements())
        np.testing.assert_allclose(y.numpy()[y.numpy() != 0], 1 / 0.7, rtol=1e-6)
    assert not np.array_equal(y_default, y_eval)
    # Keras's predict path (training=False everywhere) samples too.
    model = keras.Sequential([keras.Input((100,)), layer])
    assert np.mean(model.predict(x.numpy(), verbose=0) == 0) > 0.2


def test_mc_dropout_noise_shape_and_rate_zero():
    y = MCDropout(0.5, noise_shape=(None, 1))(tf.ones((50, 8))).numpy()
    assert np.all(y == y[:, :1])  # one mask value per row
    np.testing.assert_array_equal(MCDropout(0.0)(tf.ones((3, 4))), np.ones((3, 4)))


def _random_op_types(layer, input_shape):
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec(input_shape)).graph
    types = {op.type for op in graph.get_operations()}
    return {t for t in types if "Random" in t or "Stateless" in t}


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_randomness_only_from_litert_builtin_ops(estimator):
    # The only random ops are the stateful legacy ones that LiteRT has as builtins.
    allowed = {"RandomUniform", "RandomStandardNormal"}
    dense = _random_op_types(VariationalDense(3, estimator=estimator), (None, 5))
    conv = _random_op_types(VariationalConv2D(3, 3, estimator=estimator), (None, 6, 6, 2))
    assert "RandomStandardNormal" in dense and dense <= allowed
    assert "RandomStandardNormal" in conv and conv <= allowed
    if estimator == "flipout":
        assert "RandomUniform" in dense and "RandomUniform" in conv


def test_mc_dropout_ignores_keras_random_generator_setting():
    keras.backend.experimental.enable_tf_random_generator()
    try:
        ops = _random_op_types(MCDropout(0.5, seed=3), (None, 5))
    finally:
        keras.backend.experimental.disable_tf_random_generator()
    assert ops == {"RandomUniform"}


# ---------------------------------------------------------------- moments (statistics)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_dense_moments_match_analytic(estimator, dense_case):
    x, *_, mean, var = dense_case
    samples = _draws(_dense(estimator, dense_case), x, N_DRAWS)
    _assert_moments(samples, mean, var)
    # Every estimator's marginal is exactly Gaussian: standardized draws pass a KS test
    # (Bonferroni over the 12 output cells).
    z = (samples - mean) / np.sqrt(var)
    p_values = [scipy.stats.kstest(z[:, i, j], "norm").pvalue for i in range(4) for j in range(3)]
    assert min(p_values) > 1e-3 / len(p_values)


def test_estimators_differ_in_correlation_across_the_batch(dense_case):
    # Same input twice in a batch: the weight-sample estimator shares one W, the others
    # draw pseudo-independent perturbations (uncorrelated outputs).
    x = np.repeat(dense_case[0][:1], 2, axis=0)
    for estimator in ESTIMATORS:
        s = _draws(_dense(estimator, dense_case), x, 4000)
        corr = np.corrcoef(s[:, 0, 0], s[:, 1, 0])[0, 1]
        if estimator == "reparameterization":
            np.testing.assert_allclose(s[:, 0], s[:, 1], rtol=1e-6)
        else:
            assert abs(corr) < Z / math.sqrt(4000), (estimator, corr)


def test_dense_flipout_matches_tfp_dense_flipout(dense_case):
    x, loc, std, bias, mean, var = dense_case
    ours = _dense("flipout", dense_case, prior_std=1.0)
    theirs = tfp.layers.DenseFlipout(3)
    theirs.build(x.shape)
    # TFP's scale is eps + softplus(untransformed_scale).
    eps = np.finfo(np.float32).eps
    theirs.kernel_posterior.distribution.loc.assign(loc)
    theirs.kernel_posterior.distribution.scale.pretransformed_input.assign(
        _softplus_inverse(std - eps)
    )
    theirs.bias_posterior.distribution.loc.assign(bias)

    tfp_samples = _draws(theirs, x, N_DRAWS)
    _assert_moments(tfp_samples, mean, var)  # TFP agrees with the analytic moments ...
    ours_samples = _draws(ours, x, N_DRAWS)  # ... and with ours (two-sample test)
    _assert_moments(ours_samples, tfp_samples.mean(0), tfp_samples.var(0, ddof=1), n_ref=N_DRAWS)
    # Same KL to the N(0, 1) prior.
    theirs(x)
    np.testing.assert_allclose(ours.kl_divergence(), theirs.losses[0], rtol=1e-5)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "strides, padding",
    [pytest.param((1, 1), "same", id="same"), pytest.param((2, 1), "valid", id="valid-strided")],
)
def test_conv_moments_match_explicit_weight_sampling(estimator, strides, padding):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.5, 1.5, size=(2, 5, 5, 2)).astype(np.float32)
    loc = (0.5 * rng.normal(size=(3, 3, 2, 3))).astype(np.float32)
    std = rng.uniform(0.1, 0.5, size=(3, 3, 2, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    layer = VariationalConv2D(3, 3, strides=strides, padding=padding, estimator=estimator)
    layer.build(x.shape)
    _set_posterior(layer, loc, std, bias)

    # Reference: draw whole kernels W ~ N(loc, std^2) in numpy and convolve with each
    # (stacked along the output channels: one conv for all draws).
    n_ref = 8000
    kernels = loc[..., None] + std[..., None] * rng.standard_normal((*loc.shape, n_ref))
    kernels = kernels.reshape(3, 3, 2, 3 * n_ref).astype(np.float32)
    ref = tf.nn.conv2d(x, kernels, strides=strides, padding=padding.upper()).numpy()
    ref = ref.reshape(*ref.shape[:3], 3, n_ref).transpose(4, 0, 1, 2, 3) + bias

    samples = _draws(layer, x, 8000)
    _assert_moments(samples, ref.mean(0), ref.var(0, ddof=1), n_ref=n_ref)
    # and both agree with the closed form mean = x * loc + b, var = x^2 * std^2.
    conv = lambda a, w: tf.nn.conv2d(a, w, strides, padding.upper()).numpy()  # noqa: E731
    mean, var = conv(x, loc) + bias, conv(np.square(x), np.square(std))
    _assert_moments(samples, mean, var)
    _assert_moments(ref, mean, var)


# ---------------------------------------------------------------- KL and gradients


def test_kl_in_model_losses_equals_closed_form():
    layers = [
        VariationalConv2D(4, 3, prior_std=0.7, kl_weight=1 / 100, init_std=0.05),
        keras.layers.Flatten(),
        VariationalDense(3, prior_std=2.0, kl_weight=1 / 100, estimator="local_reparameterization"),
    ]
    model = keras.Sequential([keras.Input((6, 6, 2)), *layers])
    for layer in (layers[0], layers[2]):  # move away from the initial values
        layer.kernel_rho.assign_add(tf.random.normal(layer.kernel_rho.shape, stddev=0.5))
    model(tf.random.normal((2, 6, 6, 2)))
    assert len(model.losses) == 2

    def reference(layer):
        q = tfd.Normal(layer.kernel_loc, tf.nn.softplus(layer.kernel_rho))
        p = tfd.Normal(0.0, layer.prior_std)
        return layer.kl_weight * tf.reduce_sum(tfd.kl_divergence(q, p)).numpy()

    expected = [reference(layers[0]), reference(layers[2])]
    np.testing.assert_allclose(model.losses, expected, rtol=1e-5)

    # kl_weight is what tb.fit sets (1 / N_train); 0 still adds one (zero) term per layer.
    layers[2].kl_weight = 0.5
    model(tf.random.normal((2, 6, 6, 2)))
    np.testing.assert_allclose(model.losses[1], reference(layers[2]), rtol=1e-5)
    layers[0].kl_weight = layers[2].kl_weight = 0
    model(tf.random.normal((2, 6, 6, 2)))
    np.testing.assert_array_equal(model.losses, [0.0, 0.0])
    with pytest.raises(ValueError, match="kl_weight"):
        layers[0].kl_weight = -1.0


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_keras_fit_trains_with_the_kl_in_its_loss(estimator):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = x @ rng.normal(size=(5, 1)).astype(np.float32)
    layer = VariationalDense(1, estimator=estimator, kl_weight=1 / 64, init_std=0.01)
    model = keras.Sequential([keras.Input((5,)), layer])
    model.compile(keras.optimizers.Adam(0.05), loss="mse", metrics=["mse"])
    history = model.fit(x, y, batch_size=64, epochs=40, verbose=0).history
    assert history["mse"][-1] < 0.1 * history["mse"][0]
    # Keras's loss is the data term plus kl_weight * KL (one batch: same prediction for both).
    loss, mse = model.evaluate(x, y, batch_size=64, verbose=0)
    np.testing.assert_allclose(loss - mse, layer.kl_divergence().numpy() / 64, rtol=1e-4)


def test_kernel_std_and_init_std():
    layer = VariationalDense(3, init_std=0.02)
    layer.build((None, 5))
    np.testing.assert_allclose(layer.kernel_std(), np.full((5, 3), 0.02), rtol=1e-5)
    names = [w.name.split("/")[-1] for w in layer.weights]
    assert names == ["kernel_loc:0", "kernel_rho:0", "bias:0"]
    assert VariationalDense(3, use_bias=False)(tf.ones((1, 5))).shape == (1, 3)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("make", [
    lambda e: (VariationalDense(3, estimator=e, init_std=0.1), (4, 5)),
    lambda e: (VariationalConv2D(3, 3, estimator=e, init_std=0.1), (2, 5, 5, 2)),
])
def test_gradients_reach_loc_and_rho(estimator, make):
    layer, shape = make(estimator)
    x = tf.random.normal(shape)
    with tf.GradientTape(persistent=True) as tape:
        data_loss = tf.reduce_sum(tf.square(layer(x) - 1.0))
        loss = data_loss + tf.add_n(layer.losses)
    for target in (data_loss, loss):  # the sampling path alone already carries gradients to rho
        grads = tape.gradient(target, [layer.kernel_loc, layer.kernel_rho, layer.bias])
        for g in grads:
            assert g is not None and np.all(np.isfinite(g)) and np.any(g.numpy() != 0)


# ---------------------------------------------------------------- serialization


CONFIG_CASES = [
    lambda: MCDropout(0.25, noise_shape=(None, 1), seed=7, name="drop"),
    lambda: VariationalDense(
        8, activation="relu", use_bias=False, estimator="local_reparameterization",
        prior_std=0.5, kl_weight=1e-3, init_std=0.01,
        kernel_initializer=keras.initializers.HeNormal(seed=1), bias_initializer="ones",
    ),
    lambda: VariationalConv2D(
        4, (3, 2), strides=2, padding="Same", activation="tanh", estimator="reparameterization",
        prior_std=2, kl_weight=0, init_std=0.1,
    ),
]


@pytest.mark.parametrize("make", CONFIG_CASES)
def test_get_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    json.dumps(config)  # plain JSON data (raises TypeError otherwise)
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.layers.deserialize(json.loads(json.dumps(keras.layers.serialize(layer))))
    assert type(restored) is type(layer)
    assert json.dumps(restored.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)


def _small_model(batch_size=None):
    inputs = keras.Input((6, 6, 2), batch_size=batch_size)
    h = VariationalConv2D(3, 3, padding="same", activation="relu", init_std=0.05)(inputs)
    h = keras.layers.Flatten()(h)
    h = MCDropout(0.2)(h)
    outputs = VariationalDense(4, estimator="local_reparameterization", kl_weight=0.01)(h)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("weights_file", ["w.h5", "ckpt"])
def test_model_json_and_weights_round_trip(tmp_path, weights_file):
    model = _small_model()
    x = tf.random.normal((3, 6, 6, 2))
    text = model.to_json()
    assert '"tflbayes>VariationalConv2D"' in text and '"tflbayes>MCDropout"' in text
    clone = keras.models.model_from_json(text)  # no custom_objects: registration does it
    assert json.loads(clone.to_json())["config"] == json.loads(text)["config"]

    model.save_weights(str(tmp_path / weights_file))
    clone.load_weights(str(tmp_path / weights_file))
    for a, b in zip(model.weights, clone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Same weights and same random stream: the same posterior sample.
    tf.random.set_seed(5)
    y_model = model(x).numpy()
    tf.random.set_seed(5)
    np.testing.assert_allclose(clone(x).numpy(), y_model, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- argument validation


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MCDropout(1.5), r"argument `rate`.*Received: rate=1.5"),
        (lambda: MCDropout(1.0), r"argument `rate`"),
        (lambda: MCDropout(-0.1), r"argument `rate`"),
        (lambda: MCDropout(0.5, rng_type="stateless"), r"argument `rng_type`"),
        (lambda: VariationalDense(0), r"argument `units`.*Received: units=0"),
        (lambda: VariationalDense(2.5), r"argument `units`"),
        (lambda: VariationalDense(3, estimator="foo"), r"`estimator`.*Received: estimator='foo'"),
        (lambda: VariationalDense(3, prior_std=0), r"argument `prior_std`.*Received: prior_std=0"),
        (lambda: VariationalDense(3, prior_std=float("nan")), r"argument `prior_std`"),
        (lambda: VariationalDense(3, init_std=0.0), r"argument `init_std`"),
        (lambda: VariationalDense(3, init_std=-1e-3), r"argument `init_std`"),
        (lambda: VariationalDense(3, kl_weight=-1), r"argument `kl_weight`"),
        (lambda: VariationalConv2D(0, 3), r"argument `filters`"),
        (lambda: VariationalConv2D(2, (3, 0)), r"argument `kernel_size`"),
        (lambda: VariationalConv2D(2, 3, strides=(1, 1, 1)), r"argument `strides`"),
        (lambda: VariationalConv2D(2, 3, padding="causal"), r"argument `padding`"),
        (lambda: VariationalConv2D(2, 3, estimator="flip"), r"argument `estimator`"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_variational_layers_tuple():
    assert VARIATIONAL_LAYERS == (VariationalDense, VariationalConv2D)
    assert ESTIMATORS[0] == "flipout"
    assert VariationalDense(2).estimator == VariationalConv2D(2, 3).estimator == "flipout"


# ---------------------------------------------------------------- LiteRT conversion


def _convert(model):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex allowed
    return litert_interpreter(converter.convert(), builtin=True)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_converts_to_litert_builtins_and_keeps_the_posterior(estimator, dense_case):
    x, loc, std, bias, mean, var = dense_case
    rate = 0.25
    dense = VariationalDense(3, estimator=estimator)
    model = keras.Sequential([keras.Input((5,), batch_size=4), MCDropout(rate), dense])
    _set_posterior(dense, loc, std, bias)

    interpreter = _convert(model)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL"} <= ops
    assert not any(op.startswith("Flex") for op in ops), ops

    # The device samples the same posterior: with dropout mask m (keep prob 1 - p),
    # E[y] = x loc + b and Var[y] = (x^2 std^2) / (1 - p) + p / (1 - p) (x^2 loc^2).
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    n = 5000
    samples = np.empty((n, 4, 3))
    for i in range(n):
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        samples[i] = interpreter.get_tensor(out["index"])
    x2 = np.square(x.astype(np.float64))
    var_dropout = (x2 @ np.square(std)) / (1 - rate) + rate / (1 - rate) * (x2 @ np.square(loc))
    _assert_mixture_moments(samples, mean, var_dropout)


def _assert_mixture_moments(samples, mean, var):
    # The outputs are a dropout mixture of Gaussians (heavier tails than a Gaussian), so the
    # standard error of the variance comes from the sample's 4th central moment.
    n = samples.shape[0]
    err_mean = np.abs(samples.mean(0) - mean) / np.sqrt(var / n)
    assert err_mean.max() < Z, f"mean off by {err_mean.max():.1f} standard errors"
    centred = samples - samples.mean(0)
    se_var = np.sqrt((np.mean(centred**4, 0) - var**2) / n)
    err_var = np.abs(samples.var(0, ddof=1) - var) / se_var
    assert err_var.max() < Z, f"variance off by {err_var.max():.1f} standard errors"


def test_converted_conv_model_with_dynamic_batch():
    interpreter = _convert(_small_model(batch_size=None))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL", "CONV_2D"} <= ops
    assert not any(op.startswith("Flex") for op in ops), ops
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], (3, 6, 6, 2))
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2)).astype(np.float32)
    results = []
    for _ in range(2):
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"]))
    assert results[0].shape == (3, 4)
    assert not np.allclose(results[0], results[1])
