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


@pytest.mark.parametrize("arch", sorted(ARCHS))
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
    post, x, _ = _ensemble(builder("mobilenet_v2", shape, C), shape, members=2)
    bundle = tb.convert(post, tmp_path / "b", mode="batched", verification_data=x[:20])
    assert _manifest(bundle)["layout"] == "general"
    assert "DEPTHWISE_CONV_2D" in _manifest(bundle)["ops"]["model.tflite"]


@pytest.mark.parametrize("arch", ["resnet", "ds_cnn", "conv1d", "ln_mlp"])
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


@pytest.mark.parametrize("precision", ["int8", "dynamic", "float16"])
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
