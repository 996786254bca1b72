"""General batched / stochastic graphs: any functional or Sequential model, one graph, verified.

Every conversion here goes through ``tb.convert``'s own verification (float32 within 1e-4 of the
Keras ensemble, int8 argmax agreement >= 97 %, stochastic z-test), so a passing call is the
assertion; the tests check the layout, the single graph file and the ops on top of it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import tflbayes as tb
from tflbayes._keras import keras
from tflbayes.architectures import builder
from tflbayes.errors import ConversionError

L = keras.layers
C = 4


def _data(shape, n=200, seed=0):
    """Inputs with a class signal (class k brightens a band of the input) and labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    x = rng.normal(0.0, 0.3, (n, *shape)).astype(np.float32)
    flat = x.reshape(n, -1)
    band = flat.shape[1] // C
    for k in range(C):
        flat[y == k, k * band:(k + 1) * band] += 1.0
    return flat.reshape(x.shape), y


def _ensemble(build, shape, members=3, epochs=0, seed=0):
    """An ensemble of ``members`` copies of ``build()`` (random init; ``epochs`` of Adam on the data)."""
    x, y = _data(shape, seed=seed)
    weights = []
    for i in range(members):
        keras.utils.set_random_seed(seed + i)
        m = build()
        if epochs:
            m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            m.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        weights.append(m.get_weights())
    return tb.EnsemblePosterior(m, weights), x, y


def _manifest(bundle):
    return json.loads((bundle.path / "manifest.json").read_text())


def _concat_multiply(shape):
    inp = keras.Input(shape, name="x")
    h = L.Flatten(name="flat")(inp)
    a = L.Dense(16, activation="relu", name="branch_a")(h)
    b = L.Dense(16, activation="sigmoid", name="branch_b")(h)
    g = L.Multiply(name="gate")([a, b])
    h = L.Concatenate(name="cat")([g, a])
    h = L.Reshape((8, 4), name="as_seq")(h)
    h = L.Permute((2, 1), name="swap")(h)
    h = L.Flatten(name="flat2")(h)
    return keras.Model(inp, L.Dense(C, name="logits")(h), name="concat_multiply")


ARCHS = {
    "resnet": ((16, 16, 3), builder("resnet", (16, 16, 3), C)),
    "ds_cnn": ((16, 16, 1), builder("ds_cnn", (16, 16, 1), C)),
    "conv1d": ((16, 6), builder("conv1d", (16, 6), C)),
    "gru": ((8, 6), builder("gru", (8, 6), C)),
    "ln_mlp": ((12,), builder("ln_mlp", (12,), C)),
    "concat_multiply": ((4, 3), lambda: _concat_multiply((4, 3))),
}


SLOW = pytest.mark.slow


@pytest.mark.parametrize("arch", [a if a != "gru" else pytest.param(a, marks=SLOW) for a in sorted(ARCHS)])
def test_batched_float32_is_one_graph_equal_to_keras(tmp_path, arch):
    shape, build = ARCHS[arch]
    post, x, _ = _ensemble(build, shape)
    bundle = tb.convert(post, tmp_path / "b", mode="batched", verification_data=x[:40])
    m = _manifest(bundle)
    assert m["layout"] == "general" and m["verification"]["passed"]
    assert sorted(p.name for p in bundle.path.glob("*.tflite")) == ["model.tflite"]
    ref = post.predict(x[:40]).probs
    assert np.max(np.abs(bundle.predict(x[:40]).probs - ref)) <= 1e-4


@pytest.mark.slow
def test_batched_mobilenet_v2_float32(tmp_path):
    shape = (32, 32, 3)
    # trained one epoch: an untrained MobileNet's near-uniform outputs tie the argmax
    post, x, _ = _ensemble(builder("mobilenet_v2", shape, C), shape, members=2, epochs=1)
    bundle = tb.convert(post, tmp_path / "b", mode="batched", verification_data=x[:20])
    assert _manifest(bundle)["layout"] == "general"
    assert "DEPTHWISE_CONV_2D" in _manifest(bundle)["ops"]["model.tflite"]


@pytest.mark.parametrize("arch", ["resnet", *(pytest.param(a, marks=SLOW) for a in ("ds_cnn", "conv1d", "ln_mlp"))])
def test_batched_int8_agrees_with_keras(tmp_path, arch):
    shape, build = ARCHS[arch]
    post, x, y = _ensemble(build, shape, epochs=3)
    bundle = tb.convert(post, tmp_path / "b", mode="batched", precision="int8", representative_data=x,
                        calibration=(x[:100], y[:100]))
    m = _manifest(bundle)
    assert m["layout"] == "general" and m["verification"]["argmax_agreement"] >= 0.97
    assert "BATCH_MATMUL" not in m["ops"]["body.tflite"]


def test_layout_auto_packs_chains_and_general_agrees(tmp_path):
    shape = (8, 8, 1)
    post, x, _ = _ensemble(builder("cnn", shape, C), shape)
    packed = tb.convert(post, tmp_path / "p", mode="batched", verification_data=x[:30])
    general = tb.convert(post, tmp_path / "g", mode="batched", layout="general", verification_data=x[:30])
    assert _manifest(packed)["layout"] == "packed" and _manifest(general)["layout"] == "general"
    assert np.max(np.abs(packed.predict(x[:30]).probs - general.predict(x[:30]).probs)) <= 1e-5


def test_layout_packed_on_a_residual_model_names_the_layer(tmp_path):
    shape, build = ARCHS["resnet"]
    post, _, _ = _ensemble(build, shape, members=2)
    with pytest.raises(ConversionError, match=r"block2_add.*layout='general'"):
        tb.convert(post, tmp_path / "b", mode="batched", layout="packed", verify=False)
    with pytest.raises(tb.InvalidInputError, match="layout"):
        tb.convert(post, tmp_path / "b", mode="batched", layout="grouped", verify=False)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("precision", ["int8", pytest.param("dynamic", marks=SLOW), pytest.param("float16", marks=SLOW)])
def test_gru_is_unrolled_and_quantizes(tmp_path, precision):
    """The GRU's loop is written out (no WHILE), so int8 converts (the loop would crash the converter)
    and dynamic / float16 really quantize its weights."""
    shape = (8, 6)
    post, x, y = _ensemble(builder("gru", shape, C), shape, members=2, epochs=3)
    bundle = tb.convert(post, tmp_path / "b", mode="batched", precision=precision, representative_data=x,
                        calibration=(x[:100], y[:100]))
    m = _manifest(bundle)
    body = "body.tflite" if precision == "int8" else "model.tflite"
    assert m["verification"]["passed"] and "WHILE" not in m["ops"][body]


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_int8_recurrent_loop_is_a_conversion_error_not_a_crash(tmp_path, kind):
    from tflbayes.converters.graphs.recurrent import MAX_UNROLL

    steps = MAX_UNROLL + 1
    inp = keras.Input((steps, 2))
    out = L.Dense(C)(getattr(L, kind)(4, name="my_rnn")(inp))
    model = keras.Model(inp, out)
    post = tb.EnsemblePosterior(model, [model.get_weights()] * 2)
    x = np.random.default_rng(0).normal(size=(20, steps, 2)).astype(np.float32)
    for mode in ("batched", "members"):
        with pytest.raises(ConversionError, match=rf"'my_rnn' \({kind}\).*{steps} steps.*precision='float32'"):
            tb.convert(post, tmp_path / mode, mode=mode, precision="int8", representative_data=x)
        assert not (tmp_path / mode).exists()


def test_mode_errors_say_which_mode_fits(tmp_path):
    shape, build = ARCHS["ln_mlp"]
    post, _, _ = _ensemble(build, shape, members=2)
    with pytest.raises(ConversionError, match=r"use mode in \['members', 'batched'\]"):
        tb.convert(post, tmp_path / "b", mode="stochastic")


# -- stochastic ----------------------------------------------------------------------------------
def _last_layer_dropout(arch, rate=0.25):
    """The architecture with MC dropout on the features that feed its classifier."""
    from tflbayes.layers import MCDropout

    shape, build = ARCHS[arch]
    base = build()
    feats = base.get_layer("logits").input
    out = L.Dense(C, name="mc_logits")(MCDropout(rate, name="mc_drop")(feats))
    return shape, tb.StochasticPosterior(keras.Model(base.input, out), "mc_dropout", {"num_samples": 16})


def _vi_conv1d(estimator="flipout"):
    from tflbayes.layers import VariationalConv1D, VariationalDense

    inp = keras.Input((16, 3), name="x")
    h = VariationalConv1D(8, 3, padding="same", activation="relu", estimator=estimator, init_std=0.1, name="vconv")(inp)
    h = L.Concatenate(name="pools")([L.GlobalAveragePooling1D()(h), L.GlobalMaxPooling1D()(h)])
    out = VariationalDense(C, estimator="reparameterization", init_std=0.1, name="vdense")(h)
    return tb.StochasticPosterior(keras.Model(inp, out), "variational", {"num_samples": 16})


@pytest.mark.parametrize("arch", ["resnet", *(pytest.param(a, marks=SLOW) for a in ("concat_multiply", "ds_cnn", "conv1d", "gru"))])
def test_stochastic_last_layer_dropout(tmp_path, arch):
    shape, post = _last_layer_dropout(arch)
    x, _ = _data(shape)
    bundle = tb.convert(post, tmp_path / "b", mode="stochastic", verification_data=x[:20])
    m = _manifest(bundle)
    # a chain the packed builder takes (the DS-CNN) keeps the packed layout; the others are general
    assert m["layout"] == ("packed" if arch == "ds_cnn" else "general") and m["verification"]["passed"]
    assert "RANDOM_UNIFORM" in m["ops"]["model.tflite"]
    assert bundle.predict(x[:20]).epistemic.max() > 0


@pytest.mark.slow
def test_stochastic_int8_runs_the_prefix_in_int8_and_samples_in_float(tmp_path):
    shape, post = _last_layer_dropout("resnet")
    x, _ = _data(shape)
    bundle = tb.convert(post, tmp_path / "b", mode="stochastic", precision="int8", representative_data=x)
    m = _manifest(bundle)
    assert m["layout"] == "general" and m["verification"]["passed"]
    assert not any(o.startswith("RANDOM") for o in m["ops"]["body.tflite"]) and "CONV_2D" in m["ops"]["body.tflite"]
    assert "RANDOM_UNIFORM" in m["ops"]["head.tflite"]


@pytest.mark.parametrize("estimator", ["flipout", *(pytest.param(e, marks=SLOW) for e in ("local_reparameterization", "reparameterization"))])
def test_stochastic_vi_functional_passes_the_z_test(tmp_path, estimator):
    post = _vi_conv1d(estimator)
    x, _ = _data((16, 3))
    bundle = tb.convert(post, tmp_path / "b", mode="stochastic", verification_data=x[:20])
    ops = _manifest(bundle)["ops"]["model.tflite"]
    assert "RANDOM_STANDARD_NORMAL" in ops and not any(o.startswith("CUSTOM") for o in ops)


def test_stochastic_int8_without_a_deterministic_prefix_is_refused(tmp_path):
    from tflbayes.layers import VariationalDense

    x, _ = _data((16, 3))
    mlp = keras.Sequential([keras.Input((16, 3)), L.Flatten(), VariationalDense(8, activation="relu"),
                            VariationalDense(C)])
    for post in (_vi_conv1d(), tb.StochasticPosterior(mlp, "variational")):
        with pytest.raises(ConversionError, match=r"no deterministic prefix to run in int8; use precision='dynamic'"):
            tb.convert(post, tmp_path / "b", mode="stochastic", precision="int8", representative_data=x)
        assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("which", ["dropout", "vi"])
def test_noise_inputs_graph_has_no_random_op_and_the_same_distribution(which):
    """noise='inputs': every random tensor is a named graph input; filled with U[0, 1) / N(0, 1)
    the graph's samples pass the verification's z-test against Keras Monte Carlo."""
    from tflbayes.converters.graphs.stochastic_general import build_stochastic_general, noise_arrays
    from tflbayes.converters.tflite import op_names, to_tflite
    from tflbayes.converters.verify import z_test
    from ai_edge_litert.interpreter import Interpreter

    post = _last_layer_dropout("ds_cnn")[1] if which == "dropout" else _vi_conv1d()
    x, _ = _data(post.input_shape, n=1)
    fn, specs = build_stochastic_general(post, 16, 1, noise="inputs")
    assert specs and all(sp["name"] == f"noise_{i}" for i, sp in enumerate(specs))
    assert {sp["distribution"] for sp in specs} == ({"uniform"} if which == "dropout" else {"uniform", "normal"})
    blob = to_tflite(fn, post.model, "float32")
    assert not any(o.startswith("RANDOM") for o in op_names(blob))
    runner = Interpreter(model_content=blob).get_signature_runner()
    rng = np.random.default_rng(3)
    samples = np.concatenate([runner(x=x, **noise_arrays(specs, rng))["member_probs"] for _ in range(16)])
    assert z_test(samples, post.sample_probs(x, num_samples=192))["passed"]
    zeros = {sp["name"]: np.zeros(sp["shape"], np.float32) for sp in specs}  # the inputs drive the noise
    assert not np.allclose(runner(x=x, **zeros)["probs"], samples.mean(0), atol=1e-4)
