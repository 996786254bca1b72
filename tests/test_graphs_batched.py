"""Tests of the ensemble graph builders: mode ``batched`` (all members in one graph) and ``members``.

Every graph is checked against the Keras ensemble (the reference), as a ``tf.function`` and after
LiteRT conversion, on the builtin kernels and on the default interpreter (XNNPACK).
"""
import numpy as np
import pytest

import tflbayes as tb
from tflbayes._keras import keras, tf
from tflbayes.architectures import cnn, mlp
from tflbayes.converters.graphs.chain import chain_layers, plan
from tflbayes.converters.graphs.batched import Layout, build_batched
from tflbayes.converters.graphs.members import build_member
from tflbayes.errors import ConversionError, InvalidInputError
from tflbayes.layers import MCDropout
from tflbayes.posterior import EnsemblePosterior
from tflbayes.uncertainty import decompose

from _litert import interpreter, run

S = 3
TF_TOL = 1e-5  # tf.function vs Keras
LITE_TOL = 1e-4  # LiteRT vs Keras

L = keras.layers


# -- shared builders -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def arch_ensembles(digits):
    """Tiny trained S=3 ensembles of the built-in MLP and CNN."""
    x, y = digits.x_train[:200], digits.y_train[:200]
    shape, c = x.shape[1:], int(y.max()) + 1
    return {
        name: tb.fit(lambda b=build: b(shape, c), (x, y), method="deep_ensemble", members=S, epochs=2,
                     batch_size=64, verbose=0)
        for name, build in (("mlp", mlp), ("cnn", cnn))
    }


def _random_ensemble(model, s=2, seed=0):
    """An ensemble of ``model`` with s perturbed weight sets (BatchNorm variances kept positive)."""
    rng = np.random.default_rng(seed)
    base = model.get_weights()
    sets = [[(w + 0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in base] for _ in range(s)]
    for v, k in ((v, k) for k, v in enumerate(model.weights) if "moving_variance" in v.name):
        for ws in sets:
            ws[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
    return EnsemblePosterior(model, sets)


def _keras_logits(post, x):
    return np.stack([post.member_model(i)(x, training=False).numpy() for i in range(post.num_samples)])


def _to_tflite(fn, post):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], post.model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv.convert()


def _interpreter(content, builtin=True):
    return interpreter(content, builtin=builtin, allocate=False)


def _run(content, x, builtin=True):
    return run(content, builtin=builtin, signature="serving_default", x=x)


def _grouped_convs(it):
    """The CONV_2D ops whose filter sees fewer input channels than the input has (groups > 1)."""
    shapes = {t["index"]: t["shape"] for t in it.get_tensor_details()}
    return [op for op in it._get_ops_details() if op["op_name"] == "CONV_2D"
            and shapes[op["inputs"][1]][-1] < shapes[op["inputs"][0]][-1]]


def _assert_head(out, probs, tol):
    total, aleatoric, epistemic = decompose(probs)
    np.testing.assert_allclose(out["probs"], probs.mean(0), atol=tol)
    np.testing.assert_allclose(out["total"], total, atol=tol)
    np.testing.assert_allclose(out["aleatoric"], aleatoric, atol=tol)
    np.testing.assert_allclose(out["epistemic"], epistemic, atol=tol)


# -- batched: tf.function ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_tf_function_matches_keras_ensemble(arch_ensembles, digits, arch):
    post, x = arch_ensembles[arch], digits.x_test[:8]
    fn = build_batched(post, batch_size=8, member_probs=True)
    out = {k: v.numpy() for k, v in fn(tf.constant(x)).items()}
    probs = post.sample_probs(x)
    assert set(out) == {"probs", "total", "aleatoric", "epistemic", "member_probs"}
    np.testing.assert_allclose(out["member_probs"], probs, atol=TF_TOL)
    _assert_head(out, probs, TF_TOL)
    logits = build_batched(post, batch_size=8, head=False)(tf.constant(x))
    assert list(logits) == ["logits"] and logits["logits"].shape == (S, 8, 10)
    np.testing.assert_allclose(logits["logits"].numpy(), _keras_logits(post, x), atol=TF_TOL, rtol=TF_TOL)


@pytest.mark.parametrize("layout", [Layout(first_dense="broadcast"), Layout(flatten_dense="transpose"),
                                    Layout(dense="conv")], ids=["broadcast", "transpose", "dense-conv"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_alternative_layouts_agree(arch_ensembles, digits, arch, layout):
    """The layouts the benchmark compares compute the same logits."""
    post, x = arch_ensembles[arch], digits.x_test[:3]
    out = build_batched(post, batch_size=3, head=False, layout=layout)(tf.constant(x))["logits"].numpy()
    np.testing.assert_allclose(out, _keras_logits(post, x), atol=TF_TOL, rtol=TF_TOL)


def test_input_signature(arch_ensembles):
    fn = build_batched(arch_ensembles["cnn"], batch_size=2)
    (spec,) = fn.input_signature
    assert spec.shape.as_list() == [2, 8, 8, 1] and spec.dtype == tf.float32 and spec.name == "x"
    with pytest.raises(InvalidInputError, match="batch_size"):
        build_batched(arch_ensembles["cnn"], batch_size=0)


# -- batched: LiteRT ---------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,batch", [("mlp", 3), ("cnn", 1)])  # B > 1 for the CNN: the zoo test
def test_litert_builtins_only_and_matches_keras(arch_ensembles, digits, arch, batch):
    post, x = arch_ensembles[arch], digits.x_test[:batch]
    content = _to_tflite(build_batched(post, batch_size=batch, member_probs=True), post)
    it = _interpreter(content)
    ops = {op["op_name"] for op in it._get_ops_details()}
    assert not {o for o in ops if o.startswith("Flex") or o == "CUSTOM"}, ops
    assert "BATCH_MATMUL" in ops  # the Dense layers after the first one
    if arch == "cnn":
        assert len(_grouped_convs(it)) >= 1  # the second Conv2D (and Flatten -> Dense) as grouped CONV_2D
    else:
        assert "FULLY_CONNECTED" in ops and "CONV_2D" not in ops  # first Dense: kernels concatenated
    assert it.get_signature_list() == {"serving_default": {
        "inputs": ["x"], "outputs": sorted(["probs", "total", "aleatoric", "epistemic", "member_probs"])}}
    probs = post.sample_probs(x)
    for builtin in (True, False):  # builtin kernels, then the default interpreter (XNNPACK)
        out = _run(content, x, builtin)
        np.testing.assert_allclose(out["member_probs"], probs, atol=LITE_TOL)
        _assert_head(out, probs, LITE_TOL)


# -- every supported layer, BatchNorm folding ----------------------------------------------------------
def _zoo():
    """A functional chain through every supported layer kind, odd sizes, strides and both paddings."""
    inp = keras.Input((9, 9, 2))
    t = L.BatchNormalization()(inp)  # on the shared input: per-member affine
    t = L.Conv2D(4, 3, padding="same", groups=2, activation="tanh")(t)
    t = L.Conv2D(6, 3, strides=2, padding="valid")(t)
    t = L.BatchNormalization()(t)  # folded into the conv
    t = L.ReLU(max_value=6.0)(t)
    t = L.Conv2D(5, 2, padding="same", dilation_rate=2, use_bias=False, activation="elu")(t)
    t = L.AveragePooling2D(2, strides=1, padding="same")(t)
    t = L.BatchNormalization()(t)  # after an activation: kept as an affine step
    t = L.MaxPooling2D(2, padding="same")(t)
    t = L.Dropout(0.5)(t)
    t = L.Flatten()(t)
    t = L.Dense(7, activation="swish")(t)
    t = L.BatchNormalization()(t)
    t = L.LeakyReLU(0.1)(t)
    t = L.Dense(6, activation="sigmoid")(t)
    t = L.Activation("relu6")(t)
    t = L.Dense(4)(t)
    return keras.Model(inp, t)


def _gap_model():
    return keras.Sequential([keras.Input((6, 6, 3)), L.Conv2D(4, 3, activation="relu"), L.Conv2D(5, 1),
                             L.BatchNormalization(), L.GlobalAveragePooling2D(), L.Dense(3)])


@pytest.mark.parametrize("build", [_zoo, _gap_model], ids=["zoo", "gap"])
def test_every_supported_layer(build):
    post = _random_ensemble(build(), s=3)
    x = np.random.default_rng(1).random((2, *post.input_shape), dtype=np.float32)
    ref = _keras_logits(post, x)
    fn = build_batched(post, batch_size=2, head=False)
    np.testing.assert_allclose(fn(tf.constant(x))["logits"].numpy(), ref, atol=TF_TOL, rtol=TF_TOL)
    content = _to_tflite(fn, post)
    for builtin in (True, False):
        np.testing.assert_allclose(_run(content, x, builtin)["logits"], ref, atol=LITE_TOL, rtol=LITE_TOL)


def test_batch_norm_is_folded_exactly():
    model = keras.Sequential([keras.Input((5, 5, 1)), L.Conv2D(3, 3), L.BatchNormalization(), L.ReLU(),
                              L.Flatten(), L.Dense(4, use_bias=False), L.BatchNormalization(scale=False),
                              L.Dense(2)])
    post = _random_ensemble(model, s=2)
    kinds = [st.kind for st in plan(post.model, post.members)]
    assert kinds == ["conv2d", "flatten", "dense", "dense"]  # both BatchNorms folded, ReLU fused
    x = np.random.default_rng(2).random((4, 5, 5, 1), dtype=np.float32)
    out = build_batched(post, batch_size=4, head=False)(tf.constant(x))["logits"].numpy()
    np.testing.assert_allclose(out, _keras_logits(post, x), atol=TF_TOL, rtol=TF_TOL)


# -- refusals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer,cls", [
    (lambda: L.LSTM(4), "LSTM"),
    (lambda: L.Conv1D(4, 3), "Conv1D"),
    (lambda: MCDropout(0.2), "MCDropout"),
])
def test_unsupported_layer_is_named(layer, cls):
    lay = layer()
    model = keras.Sequential([keras.Input((6, 3)), lay, L.Flatten(), L.Dense(2)])
    post = _random_ensemble(model)
    with pytest.raises(ConversionError, match=rf"'{lay.name}' \({cls}\).*Supported layers: .*Conv2D"):
        build_batched(post)


def test_softmax_output_and_branches_are_refused():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="softmax")])
    with pytest.raises(ConversionError, match="logits"):
        build_batched(_random_ensemble(model))
    inp = keras.Input((4,))
    h = L.Dense(4)(inp)
    model = keras.Model(inp, L.Dense(2)(L.Add()([h, inp])))
    with pytest.raises(ConversionError, match="chain"):
        build_batched(_random_ensemble(model))


def test_chain_layers_inlines_nested_models():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="relu")])
    model = keras.Sequential([keras.Input((4,)), inner, L.Dense(2)])
    assert [type(x).__name__ for x in chain_layers(model)] == ["Dense", "Dense"]
    post = _random_ensemble(model)
    x = np.random.default_rng(3).random((2, 4), dtype=np.float32)
    out = build_batched(post, batch_size=2, head=False)(tf.constant(x))["logits"].numpy()
    np.testing.assert_allclose(out, _keras_logits(post, x), atol=TF_TOL, rtol=TF_TOL)


# -- members -------------------------------------------------------------------------------------------
def test_member_graph_matches_keras_and_converts(arch_ensembles, digits):
    post, x = arch_ensembles["cnn"], digits.x_test[:2]
    fn = build_member(post, 1, batch_size=2)
    ref = _keras_logits(post, x)[1]
    np.testing.assert_allclose(fn(tf.constant(x))["logits"].numpy(), ref, atol=TF_TOL, rtol=TF_TOL)
    content = _to_tflite(fn, post)  # the trackable is posterior.model, not the member's model
    it = _interpreter(content)
    assert it.get_signature_list() == {"serving_default": {"inputs": ["x"], "outputs": ["logits"]}}
    np.testing.assert_allclose(_run(content, x)["logits"], ref, atol=LITE_TOL, rtol=LITE_TOL)
    with pytest.raises(InvalidInputError, match="member index"):
        build_member(post, S)
