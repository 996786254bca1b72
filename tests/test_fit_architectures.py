"""Where ``tb.fit`` puts the randomness on the edge architectures (issue 10), and the config rewrites
behind it (tflbayes.methods.transform) on functional graphs with residual Add, Concatenate, BN,
DepthwiseConv2D, Conv1D, GRU/LSTM, LayerNormalization and shared layers.

Training uses 256 digits images, 2 epochs: enough for the posteriors to be stochastic, not accurate.
"""
import functools

import numpy as np
import pytest

import tflbayes as tb
from tflbayes._keras import keras
from tflbayes.architectures import builder
from tflbayes.errors import InvalidInputError
from tflbayes.layers import MEAN_FIELD_LAYERS, MCDropout
from tflbayes.methods.transform import dropout_summary, to_mc_dropout, to_variational, variational_summary

# Trained round trips: one convolutional, one recurrent, one LayerNorm model in the default run; the
# heavier ones (10-40 s each on 2 busy cores) are slow. The rewrites below cover all of them, untrained.
ARCHS = ["conv1d", "gru", "ln_mlp"] + [pytest.param(a, marks=pytest.mark.slow)
                                      for a in ("resnet", "ds_cnn", "lstm", "mobilenet_v2")]
METHODS = {"mc_dropout": {"num_samples": 8}, "variational": {"init_std": 0.05, "num_samples": 8}}
SHAPE = (8, 8, 1)


@functools.lru_cache(maxsize=None)
def _data():
    ds = tb.data.load("digits")
    return ds.x_train[:256], ds.y_train[:256], ds.x_test[:40]


@functools.lru_cache(maxsize=None)
def _posterior(arch, method):
    x, y, _ = _data()
    return tb.fit(builder(arch, SHAPE, 10), (x, y), method=method, epochs=2, learning_rate=1e-2, verbose=0, seed=0,
                  **METHODS[method])


def _mc_layers(model):
    return [l.name for l in model.layers if isinstance(l, MCDropout)]


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("arch", ARCHS)
def test_posterior_is_stochastic_names_its_layers_and_round_trips(arch, method, tmp_path):
    post = _posterior(arch, method)
    x_test = _data()[2]
    epistemic = post.predict(x_test).epistemic
    assert epistemic.min() > 0 and epistemic.mean() > 1e-6, epistemic.mean()
    if method == "mc_dropout":
        named = post.options["dropout_layers"]
        assert named and named == _mc_layers(post.model)
        assert set(post.options["dropout_feeds"]) == set(named)
    else:
        named = post.options["variational_layers"]
        assert named == [l.name for l in post.model.layers if isinstance(l, MEAN_FIELD_LAYERS)]
        assert "logits" in named
        recurrent = [l.name for l in post.model.layers if isinstance(l, keras.layers.RNN)]
        assert post.options["deterministic_layers"] == recurrent  # every Dense/Conv became variational
    post.save(tmp_path / "post")
    again = tb.load(tmp_path / "post")
    assert again.options == post.options
    np.testing.assert_array_equal(again.sample_probs(x_test[:8], 6, seed=7), post.sample_probs(x_test[:8], 6, seed=7))


@pytest.mark.parametrize("arch", ["resnet", "ds_cnn", "conv1d", "gru", "lstm", "mobilenet_v2"])
def test_default_puts_one_dropout_on_the_features_of_the_head(arch):
    out = to_mc_dropout(builder(arch, SHAPE, 10)(), layers="auto")
    assert dropout_summary(out) == {"mc_dropout_logits": ["logits"]}
    feeding = out.get_layer("mc_dropout_logits")
    assert isinstance(feeding, MCDropout) and feeding.rate == 0.25


def test_default_on_plain_chains_is_every_weight_layer_but_the_first():
    out = to_mc_dropout(builder("cnn", SHAPE, 10)(), layers="auto")
    assert len(_mc_layers(out)) == 3  # before conv2, dense and logits, as layers="all"
    out = to_mc_dropout(builder("ln_mlp", SHAPE, 10)(), layers="auto")
    assert dropout_summary(out) == {"mc_dropout_dense1": ["dense1"], "mc_dropout_logits": ["logits"]}


def test_head_policy_keeps_the_models_own_dropout_always_on():
    inp = keras.Input(SHAPE)
    h = keras.layers.Conv2D(4, 3, name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    h = keras.layers.Dense(8, activation="relu", name="hidden")(h)
    h = keras.layers.Dropout(0.4, name="drop")(h)
    out = to_mc_dropout(keras.Model(inp, keras.layers.Dense(10, name="logits")(h)), layers="head")
    assert dropout_summary(out) == {"mc_dropout_hidden": ["hidden"], "drop": ["logits"]}
    assert out.get_layer("drop").rate == pytest.approx(0.4)


def test_gru_fit_default_drops_the_gru_output_before_the_dense(capsys):
    post = _posterior("gru", "mc_dropout")
    assert post.options["dropout_policy"] == "head"
    assert post.options["dropout_feeds"] == {"mc_dropout_logits": ["logits"]}
    x, y, _ = _data()
    tb.fit(builder("gru", SHAPE, 10), (x[:64], y[:64]), method="mc_dropout", epochs=1, verbose=1)
    assert "mc_dropout (layers='auto', policy head): 1 MCDropout layer(s): mc_dropout_logits -> logits" \
        in capsys.readouterr().out


def test_layers_all_is_the_old_insert_before_every_weight_layer():
    out = to_mc_dropout(builder("mobilenet_v2", SHAPE, 10)(), layers="all")
    feeds = dropout_summary(out)
    assert len(feeds) > 35  # every conv (expand, depthwise, project), not to_rgb which sees the input
    assert "to_rgb" not in {n for f in feeds.values() for n in f}
    gru = to_mc_dropout(builder("gru", SHAPE, 10)(), layers="all")
    assert dropout_summary(gru) == {"mc_dropout_logits": ["logits"]}  # the GRU reads the input


def test_layer_names_give_full_control_and_bad_names_list_the_valid_ones():
    model = builder("resnet", SHAPE, 10)()
    out = to_mc_dropout(model, layers=["block2a_conv", "block1_add"], rate=0.1)
    feeds = dropout_summary(out)
    # a two-input Add gets one dropout per input; the residual shortcut of block2 is left alone
    assert feeds == {"mc_dropout_block2a_conv": ["block2a_conv"], "mc_dropout_block1_add_in0": ["block1_add"],
                     "mc_dropout_block1_add_in1": ["block1_add"]}
    assert all(out.get_layer(n).rate == pytest.approx(0.1) for n in feeds)
    with pytest.raises(InvalidInputError, match="Unknown: \\['blok1_add'\\].*Valid names:.*block1_add"):
        to_mc_dropout(model, layers=["blok1_add"])
    with pytest.raises(InvalidInputError, match="layers"):
        tb.fit(builder("resnet", SHAPE, 10), _data()[:2], method="mc_dropout", layers=["nope"], epochs=1, verbose=0)
    with pytest.raises(InvalidInputError, match="layers"):
        tb.fit(builder("resnet", SHAPE, 10), _data()[:2], method="mc_dropout", layers=[3], epochs=1, verbose=0)


def test_a_policy_that_inserts_nothing_is_an_error_saying_what_to_do():
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(10, name="logits")])
    for layers in ("auto", "head", "all"):
        with pytest.raises(InvalidInputError, match="no epistemic uncertainty.*layers=\\['logits'\\]"):
            to_mc_dropout(model, layers=layers)
    assert dropout_summary(to_mc_dropout(model, layers=["logits"])) == {"mc_dropout_logits": ["logits"]}
    inp = keras.Input(SHAPE)  # a fully convolutional classifier: no Dense head
    h = keras.layers.Conv2D(4, 3, name="features")(inp)
    out = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(10, 1, name="conv_logits")(h))
    with pytest.raises(InvalidInputError, match="no Dense layer on the path.*layers=\['conv_logits'\]"):
        to_mc_dropout(keras.Model(inp, out), layers="head")
    assert dropout_summary(to_mc_dropout(keras.Model(inp, out), layers="auto")) == {
        "mc_dropout_conv_logits": ["conv_logits"]}  # a plain Conv2D chain: auto is "all"


def _copy(src, dst):
    for layer in src.layers:
        if layer.weights:
            dst.get_layer(layer.name).set_weights(layer.get_weights())


def _shared_concat_model():
    """Two inputs through one shared Dense, concatenated, a residual-style Add and LayerNorm."""
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    shared = keras.layers.Dense(5, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)
    h = keras.layers.Concatenate(name="cat")([ha, hb])
    h = keras.layers.LayerNormalization(name="ln")(keras.layers.Dense(10, name="mix")(h))
    h = keras.layers.Add(name="res")([h, keras.layers.Dense(10, name="skip")(h)])
    return keras.Model([a, b], keras.layers.Dense(3, name="logits")(h))


@pytest.mark.parametrize("arch", ["resnet", "ds_cnn", "conv1d", "gru", "ln_mlp", "shared",
                                  pytest.param("mobilenet_v2", marks=pytest.mark.slow)])
@pytest.mark.parametrize("layers", ["all", "head", "names"])
def test_rewrites_keep_the_wiring(arch, layers):
    """At rate 0 the rewritten graph computes exactly what the original does."""
    rng = np.random.default_rng(0)
    if arch == "shared":
        model = _shared_concat_model()
        x = [rng.normal(size=(4, 6)).astype(np.float32) for _ in range(2)]
        names = ["shared", "cat", "res", "logits"]
    else:
        model = builder(arch, SHAPE, 10)()
        x = rng.uniform(size=(4, *SHAPE)).astype(np.float32)
        names = [l.name for l in model.layers[1:] if not isinstance(l, keras.layers.InputLayer)][::5]
    out = to_mc_dropout(model, rate=0.0, layers=names if layers == "names" else layers)
    assert _mc_layers(out)
    _copy(model, out)
    np.testing.assert_allclose(out(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
    if arch == "shared" and layers == "names":
        assert dropout_summary(out)["mc_dropout_shared"] == ["shared"]  # one dropout, shared like the Dense
        assert len(out.get_layer("mc_dropout_shared")._inbound_nodes) == 2


@pytest.mark.parametrize("arch", ["resnet", "ds_cnn", "conv1d", "gru", "ln_mlp", "shared"])
def test_variational_rewrite_computes_the_same_at_zero_std(arch):
    rng = np.random.default_rng(1)
    if arch == "shared":
        model = _shared_concat_model()
        x = [rng.normal(size=(4, 6)).astype(np.float32) for _ in range(2)]
    else:
        model = builder(arch, SHAPE, 10)()
        x = rng.uniform(size=(4, *SHAPE)).astype(np.float32)
    out = to_variational(model, estimator="reparameterization", kl_weight=0.0)
    for layer in model.layers:
        if not layer.weights:
            continue
        twin = out.get_layer(layer.name)
        if isinstance(twin, MEAN_FIELD_LAYERS):
            kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
            twin.kernel_loc.assign(kernel)
            twin.kernel_rho.assign(np.full(kernel.shape, -80.0, np.float32))
            if layer.use_bias:
                twin.bias.assign(layer.bias)
        else:
            twin.set_weights(layer.get_weights())
    np.testing.assert_allclose(out(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
    which = variational_summary(out)
    assert which["deterministic"] == (["gru"] if arch == "gru" else [])


def test_variational_last_and_names_on_every_kind():
    for arch in ("resnet", "ds_cnn", "conv1d", "gru", "lstm", "ln_mlp"):
        out = to_variational(builder(arch, SHAPE, 10)(), layers="last")
        assert variational_summary(out)["variational"] == ["logits"], arch
    out = to_variational(builder("ds_cnn", SHAPE, 10)(), layers=["ds1_dw", "ds1_pw_conv"])
    assert variational_summary(out)["variational"] == ["ds1_dw", "ds1_pw_conv"]
    assert type(out.get_layer("ds1_dw")).__name__ == "VariationalDepthwiseConv2D"
    with pytest.raises(InvalidInputError, match="'gru' \\(GRU\\) cannot be made variational.*Layers that can: logits"):
        to_variational(builder("gru", SHAPE, 10)(), layers=["gru"])
    with pytest.raises(InvalidInputError, match="Valid names"):
        to_variational(builder("gru", SHAPE, 10)(), layers=["logit"])
    causal = keras.Sequential([keras.Input((8, 2)), keras.layers.Conv1D(3, 3, padding="causal", name="causal"),
                               keras.layers.Flatten(), keras.layers.Dense(2, name="logits")])
    assert variational_summary(to_variational(causal)) == {"variational": ["logits"], "deterministic": ["causal"]}
    with pytest.raises(InvalidInputError, match="'causal' \\(Conv1D\\).*padding='causal'"):
        to_variational(causal, layers=["causal"])


def test_deterministic_layer_undoes_every_stochastic_twin():
    from tflbayes.methods.transform import ConfigGraph, deterministic_layer

    model = builder("ds_cnn", SHAPE, 10)()
    for arch_model in (model, builder("conv1d", SHAPE, 10)()):
        vi = to_mc_dropout(to_variational(arch_model), layers=["logits"])
        g = ConfigGraph(vi)
        for i, e in enumerate(g.entries):
            twin = deterministic_layer(e)
            if twin is not None:
                g.replace(i, twin)
        back = g.build()
        assert [type(l) for l in back.layers if type(l) is not keras.layers.Dropout] == \
            [type(l) for l in arch_model.layers]
        assert back.count_params() == arch_model.count_params()
