"""Tests of converters.graphs.stochastic: MC dropout / VI as one LiteRT graph, S samples per invoke.

The statistical tests are deterministic (the graph's random ops get fixed seeds through
``build_stochastic(seed=...)``, the Keras reference through ``sample_probs(seed=...)``) and use
tolerances of ``Z`` standard errors of the Monte Carlo estimates, so they would still pass for
(almost) any other seed.
"""
import functools

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tflbayes as tb
from tflbayes._keras import keras, tf
from tflbayes.architectures import cnn, mlp
from tflbayes.converters.graphs import stochastic as stochastic_module
from tflbayes.converters.graphs.stochastic import build_stochastic
from tflbayes.errors import ConversionError, InvalidInputError
from tflbayes.layers import MCDropout, VariationalConv2D, VariationalDense
from tflbayes.posterior import EnsemblePosterior, StochasticPosterior
from tflbayes.uncertainty import decompose

from _litert import interpreter, ops

Z = 4.0  # tolerance in standard errors
SLACK = 1e-4  # float32 LiteRT vs Keras arithmetic
SEED = 1234
S, B = 16, 4  # samples per invoke, inputs per invoke
INVOKES = 96  # LiteRT: 1536 samples per input
CALLS, COPIES = 64, 24  # Keras: 64 calls x 24 copies of each input = 1536 samples per input
RANDOM_OPS = {"RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL"}

# name -> (architecture, tb.fit options). Between them: MC dropout on the whole network (rate 0.25:
# the packed-mask path) and on the last layer only (rate 0.3: one uniform per mask); VI trained with
# Flipout and with LRT, with variational Conv2D and Dense layers, on the whole network and the last
# layer (the first variational layer on shared rows).
CASES = {
    "mc_dropout-all-cnn": (cnn, dict(method="mc_dropout")),
    "mc_dropout-last-mlp": (mlp, dict(method="mc_dropout", layers="last", rate=0.3)),
    "vi-flipout-all-cnn": (cnn, dict(method="variational", estimator="flipout", init_std=0.05)),
    "vi-lrt-all-cnn": (cnn, dict(method="variational", estimator="local_reparameterization", init_std=0.05)),
    "vi-flipout-last-mlp": (mlp, dict(method="variational", layers="last", init_std=0.1)),
}


@functools.lru_cache(maxsize=None)
def _data():
    ds = tb.data.load("digits")
    return ds.x_train[:512], ds.y_train[:512], ds.x_test[:B].astype(np.float32)


@functools.lru_cache(maxsize=None)
def _posterior(name):
    arch, options = CASES[name]
    x, y, _ = _data()
    return tb.fit(lambda: arch(x.shape[1:], 10), (x, y), epochs=1, learning_rate=1e-2, verbose=0, **options)


def _convert(fn, model) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex allowed
    return converter.convert()


def _interpreter(content: bytes) -> Interpreter:
    return interpreter(content, builtin=True)


@functools.lru_cache(maxsize=None)
def _graph(name, seeded=True) -> bytes:
    post = _posterior(name)
    fn = build_stochastic(post, S, batch_size=B, member_probs=True, seed=SEED if seeded else None)
    return _convert(fn, post.model)


def _invoke(it: Interpreter, x, n: int = 1) -> dict:
    """``n`` invokes on ``x``: {output name: [n, ...]}."""
    runner = it.get_signature_runner()
    outs = [{k: v.copy() for k, v in runner(x=x).items()} for _ in range(n)]
    return {k: np.stack([o[k] for o in outs]) for k in outs[0]}


@functools.lru_cache(maxsize=None)
def _litert_samples(name):
    _, _, x = _data()
    return _invoke(_interpreter(_graph(name)), x, INVOKES)


def _ops(content: bytes) -> list:
    return ops(content)


# ------------------------------------------------------------------ (a) LiteRT builtins only


@pytest.mark.parametrize("name", CASES)
def test_converts_to_builtin_random_ops_without_flex(name):
    ops = _ops(_graph(name))
    assert RANDOM_OPS & set(ops), ops
    assert not any(op.startswith("Flex") for op in ops), ops
    if CASES[name][1]["method"] == "variational":
        # LRT (Dense, LRT-trained convs) or whole-kernel draws (Flipout-trained convs): normals
        # only, never Flipout's sign flips.
        assert set(ops) & RANDOM_OPS == {"RANDOM_STANDARD_NORMAL"}, ops


@pytest.mark.parametrize("name", ["mc_dropout-all-cnn", "vi-flipout-last-mlp"])
def test_deterministic_prefix_runs_once_on_the_batch(name):
    it = _interpreter(_graph(name))
    tensors = it.get_tensor_details()
    ops = it._get_ops_details()
    weight_ops = [op for op in ops if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
    batches = [int(tensors[op["inputs"][0]]["shape"][0]) for op in weight_ops]
    # The first layer (before any stochastic layer) sees the B inputs, not S * B rows.
    assert batches[0] == B
    if name == "vi-flipout-last-mlp":
        # A last-layer VI posterior never needs S * B rows: LRT computes the head's mean and
        # variance once and only the noise is [S, B, C].
        assert batches == [B] * len(batches)
    else:
        assert S * B in batches


# ------------------------------------------------------------------ (b) every invoke samples


@pytest.mark.parametrize("name", CASES)
def test_two_invokes_differ(name):
    _, _, x = _data()
    out = _invoke(_interpreter(_graph(name)), x, 2)
    assert not np.allclose(out["member_probs"][0], out["member_probs"][1])
    assert not np.allclose(out["probs"][0], out["probs"][1])
    # ... and the S samples of one invoke differ from each other.
    assert np.ptp(out["member_probs"][0], axis=0).max() > 1e-4


# ------------------------------------------------------------------ (c) the same posterior


@functools.lru_cache(maxsize=None)
def _keras_reference(name):
    """The Keras posterior's Monte Carlo predictive on the test inputs: (mean, standard error)."""
    _, _, x = _data()
    # Each call runs COPIES copies of every input. Rows of one Flipout call share weight noise,
    # so the standard error comes from the per-call means (i.i.d. over calls).
    probs = _posterior(name).sample_probs(np.repeat(x, COPIES, axis=0), CALLS, seed=SEED)
    means = probs.reshape(CALLS, B, COPIES, -1).mean(axis=2)  # [CALLS, B, C]
    return means.mean(0), means.std(0, ddof=1) / np.sqrt(CALLS)


def _z_scores(mean, se, name):
    ref_mean, ref_se = _keras_reference(name)
    return np.abs(mean - ref_mean) / (np.sqrt(se**2 + ref_se**2) + SLACK / Z)


@pytest.mark.parametrize("name", CASES)
def test_predictive_matches_keras_monte_carlo(name):
    lite = _litert_samples(name)["member_probs"]  # [INVOKES, S, B, C]
    lite_means = lite.mean(axis=1)  # [INVOKES, B, C]: i.i.d. over invokes
    lite_mean = lite_means.mean(0)
    lite_se = lite_means.std(0, ddof=1) / np.sqrt(INVOKES)
    ref_mean, ref_se = _keras_reference(name)

    err = np.abs(lite_mean - ref_mean)
    tol = Z * np.sqrt(lite_se**2 + ref_se**2) + SLACK
    worst = np.unravel_index(np.argmax(err / tol), err.shape)
    assert np.all(err <= tol), (
        f"input {worst[0]}, class {worst[1]}: LiteRT {lite_mean[worst]:.4f} vs Keras {ref_mean[worst]:.4f} "
        f"(tolerance {tol[worst]:.4f})"
    )
    # The test has power: the posterior is really stochastic for these inputs.
    assert np.sqrt(lite.var(axis=(0, 1))).max() > 0.02


def test_lrt_would_change_the_predictive_of_a_flipout_trained_cnn():
    # LRT gives every output unit its exact marginal, but a convolution's pixels share one kernel:
    # sampling them independently is another model. Hence conv_sampling="auto" draws whole kernels
    # for Flipout/reparameterization-trained convolutions. (The graph runs in TF here: no conversion.)
    name = "vi-flipout-all-cnn"
    post, x, n = _posterior(name), _data()[2], INVOKES * S
    z = {}
    for mode in ("auto", "local_reparameterization"):
        logits = build_stochastic(post, n, batch_size=B, head=False, seed=SEED, conv_sampling=mode)(x)["logits"]
        probs = tf.nn.softmax(logits).numpy()  # [n, B, C], independent rows
        z[mode] = _z_scores(probs.mean(0), probs.std(0, ddof=1) / np.sqrt(n), name).max()
    assert z["auto"] < Z
    assert z["local_reparameterization"] > 2 * Z


@pytest.mark.parametrize("name", CASES)
def test_samples_of_one_invoke_are_independent(name):
    # Shared noise across the S rows (tiling after sampling, a weight draw per invoke) would make
    # the spread within an invoke smaller than the spread over invokes. For independent rows the
    # expected within-invoke variance equals the total variance.
    lite = _litert_samples(name)["member_probs"]  # [INVOKES, S, B, C]
    within = lite.var(axis=1, ddof=1).mean(axis=0).sum()
    total = lite.reshape(-1, *lite.shape[2:]).var(axis=0, ddof=1).sum()
    assert within / total == pytest.approx(1.0, abs=0.1)


# ------------------------------------------------------------------ (d) the in-graph head


@pytest.mark.parametrize("name", CASES)
def test_head_equals_reference_decomposition_of_member_probs(name):
    out = {k: v[0] for k, v in _invoke(_interpreter(_graph(name)), _data()[2]).items()}
    members = out["member_probs"].astype(np.float64)
    assert members.shape == (S, B, 10)
    total, aleatoric, epistemic = decompose(members)
    np.testing.assert_allclose(out["probs"], members.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(out["total"], total, atol=1e-5)
    np.testing.assert_allclose(out["aleatoric"], aleatoric, atol=1e-5)
    np.testing.assert_allclose(out["epistemic"], epistemic, atol=1e-5)


# ------------------------------------------------------------------ seeding (LiteRT behaviour)


def test_seeding_fixed_seeds_repeat_across_interpreters_unseeded_do_not():
    _, _, x = _data()
    name = "mc_dropout-last-mlp"
    seeded = _graph(name)
    a, b = (_invoke(_interpreter(seeded), x, 2)["member_probs"] for _ in range(2))
    np.testing.assert_array_equal(a, b)  # every interpreter replays one stream ...
    assert not np.array_equal(a[0], a[1])  # ... that advances with every invoke
    unseeded = _graph(name, seeded=False)
    c, d = (_invoke(_interpreter(unseeded), x)["member_probs"] for _ in range(2))
    assert not np.allclose(c, d)  # seeded from the OS when the interpreter prepares the op


def test_random_ops_ignore_the_global_seed():
    # tb.fit calls keras.utils.set_random_seed; tf.random.uniform would then bake a fixed seed pair
    # into the graph. The builder's ops stay unseeded (seed = seed2 = 0) unless asked.
    post = _posterior("mc_dropout-last-mlp")
    tf.random.set_seed(7)
    for seed, expect in ((None, {(0, 0)}), (5, None)):
        graph = build_stochastic(post, 4, seed=seed).get_concrete_function().graph
        random = [op for op in graph.get_operations() if "Random" in op.type]
        assert {op.type for op in random} == {"RandomUniform"}  # stateful: never Stateless*
        pairs = {(op.get_attr("seed"), op.get_attr("seed2")) for op in random}
        if expect is not None:
            assert pairs == expect
        else:
            assert (0, 0) not in pairs and len(pairs) == len(random)  # seeded, one pair per op


# ------------------------------------------------------------------ the graph's contract


def test_signature_shapes_and_logits_without_head():
    post = _posterior("vi-flipout-last-mlp")
    fn = build_stochastic(post, 5, batch_size=3, head=False, seed=1)
    (spec,) = fn.input_signature
    assert spec.shape.as_list() == [3, 8, 8, 1] and spec.name == "x" and spec.dtype == tf.float32
    out = fn(tf.zeros([3, 8, 8, 1]))
    assert set(out) == {"logits"} and out["logits"].shape == (5, 3, 10)
    head = build_stochastic(post, 5, batch_size=3)(tf.zeros([3, 8, 8, 1]))
    assert {k: tuple(v.shape) for k, v in head.items()} == {
        "probs": (3, 10), "total": (3,), "aleatoric": (3,), "epistemic": (3,)}


def test_functional_chain_with_deterministic_layers_matches_keras():
    # With MCDropout(0) every sample is the Keras forward pass: checks the layer walk of a
    # functional chain, BatchNormalization in inference mode, Dropout as the identity, ...
    rng = np.random.default_rng(1)
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, padding="same")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Activation("relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Dropout(0.5)(h)
    h = MCDropout(0.0)(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(3)(h)
    model = keras.Model(inp, out)
    bn = model.layers[2]
    bn.set_weights([rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, 4)])
    x = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
    logits = build_stochastic(StochasticPosterior(model, "mc_dropout"), 3, batch_size=2, head=False)(x)["logits"]
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(logits.numpy(), np.broadcast_to(expected, (3, 2, 3)), atol=1e-5)


def _tiny_posterior(*layers, input_shape):
    model = keras.Sequential([keras.Input(input_shape), *layers])
    return StochasticPosterior(model, "variational")


@pytest.mark.parametrize("kind, conv_sampling", [
    ("dense", "auto"),  # Dense: always LRT (exact: output units share no weights)
    ("conv", "auto"),  # a reparameterization-trained conv: one kernel per sample ("weights")
    ("conv", "local_reparameterization"),  # forced LRT: independent pixels
])
def test_variational_layers_sample_the_exact_gaussian(kind, conv_sampling):
    rng = np.random.default_rng(0)
    n = 20_000
    if kind == "conv":
        layer = VariationalConv2D(2, 2, strides=2, padding="same", estimator="reparameterization", kl_weight=0.0)
        post = _tiny_posterior(layer, keras.layers.Flatten(), input_shape=(3, 3, 2))
        x = rng.normal(size=(2, 3, 3, 2)).astype(np.float32)
    else:
        layer = VariationalDense(3, use_bias=False, estimator="flipout", kl_weight=0.0)
        post = _tiny_posterior(layer, input_shape=(4,))
        x = rng.normal(size=(2, 4)).astype(np.float32)
    layer.kernel_rho.assign(rng.normal(-1.0, 0.3, size=layer.kernel_rho.shape))
    loc = layer.kernel_loc.numpy().astype(np.float64)
    var_w = np.square(layer.kernel_std().numpy().astype(np.float64))
    if kind == "conv":  # patches [B, P, K] in the kernel's (i, j, c) order: an independent reference
        patches = tf.image.extract_patches(x, [1, 2, 2, 1], [1, 2, 2, 1], [1, 1, 1, 1], "SAME").numpy()
        patches = patches.reshape(2, 4, 8).astype(np.float64)
        loc, var_w = loc.reshape(8, 2), var_w.reshape(8, 2)
    else:
        patches = x[:, None, :].astype(np.float64)  # one "pixel"
    mean = (patches @ loc).reshape(2, -1)  # [B, P * C_out] in Flatten's (p, c) order
    var = (np.square(patches) @ var_w).reshape(2, -1)

    fn = build_stochastic(post, n, batch_size=2, head=False, seed=3, conv_sampling=conv_sampling)
    logits = fn(x)["logits"].numpy().astype(np.float64)  # [n, B, P * C_out]
    assert logits.shape == (n, *mean.shape)
    err_mean = np.abs(logits.mean(0) - mean) / np.sqrt(var / n)
    err_var = np.abs(logits.var(0, ddof=1) - var) / (var * np.sqrt(2.0 / (n - 1)))
    assert err_mean.max() < 5 and err_var.max() < 5, (err_mean.max(), err_var.max())
    z = (logits - mean) / np.sqrt(var)
    # The S rows are independent: no correlation between consecutive samples.
    assert np.abs(np.mean(z[1:] * z[:-1], axis=0)).max() < 5 / np.sqrt(n)
    if kind == "conv":
        # Two pixels of one channel share the kernel: corr = sum_k P_pk P_qk s_k^2 / sqrt(var_p var_q)
        # for a weight sample; 0 under LRT.
        p, q = 0, 3  # pixels (0, 0) and (1, 1), channel 0
        cov = np.einsum("bk,bk,k->b", patches[:, p], patches[:, q], var_w[:, 0])
        expected = cov / np.sqrt(var[:, 2 * p] * var[:, 2 * q])
        if conv_sampling == "local_reparameterization":
            expected = np.zeros(2)
        measured = np.mean(z[:, :, 2 * p] * z[:, :, 2 * q], axis=0)
        assert np.abs(measured - expected).max() < 5 / np.sqrt(n), (measured, expected)
        assert conv_sampling != "auto" or np.abs(expected).max() > 0.1  # the check has power


def test_normal_draws_have_an_even_count():
    # LiteRT's RANDOM_STANDARD_NORMAL writes one float past an odd-sized output (Box-Muller pairs).
    post = _tiny_posterior(VariationalDense(3, kl_weight=0.0), input_shape=(2,))
    graph = build_stochastic(post, 1, head=False).get_concrete_function().graph
    normals = [op for op in graph.get_operations() if op.type == "RandomStandardNormal"]
    assert normals and all(op.outputs[0].shape.num_elements() % 2 == 0 for op in normals)
    assert build_stochastic(post, 1, head=False)(tf.ones([1, 2]))["logits"].shape == (1, 1, 3)


@pytest.mark.parametrize("rate", [0.5, 0.25, 0.125, 0.375, 0.3])
def test_dropout_masks_are_exact_independent_bernoullis(rate):
    keep = 1.0 - rate
    bits = stochastic_module._dyadic_bits(rate)
    per = 23 // bits if bits else 1
    count = 20_000
    builder = stochastic_module._Builder(1, 1, seed=11)
    mask = builder.keep_mask([per * count], rate).numpy()
    assert set(np.unique(mask)) <= {0.0, 1.0}
    se = np.sqrt(rate * keep / mask.size)
    assert abs(mask.mean() - keep) < 5 * se
    # The `per` masks cut from one uniform (row j of [per, count]) are independent:
    # uncorrelated, and all kept together with probability keep**per.
    groups = mask.reshape(per, count)
    if per > 1:
        corr = np.corrcoef(groups)[np.triu_indices(per, 1)]
        assert np.abs(corr).max() < 5 / np.sqrt(count)
        p_all = keep**per
        assert abs(groups.all(axis=0).mean() - p_all) < 5 * np.sqrt(p_all * (1 - p_all) / count)


def test_mc_dropout_noise_shape_shares_the_mask_along_its_unit_axes():
    model = keras.Sequential([keras.Input((3, 4)), MCDropout(0.5, noise_shape=(None, 1, 4)),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    post = StochasticPosterior(model, "mc_dropout")
    assert build_stochastic(post, 8, batch_size=2, head=False, seed=2)(tf.ones([2, 3, 4]))["logits"].shape == (8, 2, 2)
    x = np.ones((2, 3, 4), np.float32)
    g = stochastic_module._Builder(8, 2, seed=2)
    y = g.mc_dropout(model.layers[0], tf.constant(x), shared=True).numpy()  # [S*B, 3, 4]
    assert y.shape == (16, 3, 4) and set(np.unique(y)) <= {0.0, 2.0}
    assert np.all(y == y[:, :1, :])  # one mask per row and unit, shared along axis 1
    assert len({tuple(r) for r in y[:, 0, :]}) > 1  # rows differ


# ------------------------------------------------------------------ (e) what it refuses


class Mystery(keras.layers.Layer):
    def call(self, inputs):
        return inputs * 2.0


def test_unsupported_layer_is_named():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), Mystery(name="odd_one"),
                              MCDropout(0.25), keras.layers.Dense(3)])
    with pytest.raises(ConversionError, match=r"odd_one.*Mystery"):
        build_stochastic(StochasticPosterior(model, "mc_dropout"), 4)


def test_branching_functional_model_is_refused():
    inp = keras.Input((4,))
    h = keras.layers.Dense(4)(inp)
    out = keras.layers.Dense(3)(MCDropout(0.25)(keras.layers.Add(name="skip")([inp, h])))
    with pytest.raises(ConversionError, match="skip"):
        build_stochastic(StochasticPosterior(keras.Model(inp, out), "mc_dropout"), 4)


def test_model_without_stochastic_layer_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5), keras.layers.Dense(3)])
    with pytest.raises(ConversionError, match="no stochastic layer"):
        build_stochastic(StochasticPosterior(model, "mc_dropout"), 4)


def test_ensemble_posterior_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    post = EnsemblePosterior(model, [model.get_weights()])
    with pytest.raises(ConversionError, match="StochasticPosterior"):
        build_stochastic(post, 4)


@pytest.mark.parametrize("arg, value", [("num_samples", 0), ("num_samples", 2.5), ("num_samples", True),
                                        ("batch_size", 0), ("seed", "1"), ("conv_sampling", "flipout")])
def test_bad_arguments_raise(arg, value):
    model = keras.Sequential([keras.Input((4,)), MCDropout(0.25), keras.layers.Dense(3)])
    kwargs = {"num_samples": 4, arg: value}
    with pytest.raises(InvalidInputError, match=arg):
        build_stochastic(StochasticPosterior(model, "mc_dropout"), **kwargs)
