"""Tests of tflbayes.methods: ``tb.fit``, the method registry and the config rewriting.

Trained posteriors come from the session fixtures in ``conftest.py`` (digits + a small MLP).
The statistical claims (ensemble NLL, OOD AUROC) were checked over several seeds: their margins
are several times the seed-to-seed spread.
"""
import json
import textwrap

import numpy as np
import pytest

import tflbayes as tb
from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError
from tflbayes.layers import MCDropout, VariationalConv2D, VariationalDense
from tflbayes.methods.transform import to_mc_dropout, to_variational, weight_layer_names

from conftest import make_functional_mlp, make_mlp, run_result_script


def _subset(ds, n=200):
    return ds.x_train[:n], ds.y_train[:n]


def _layer_kinds(model):
    return [type(l).__name__ for l in model.layers]


# --------------------------------------------------------------------------- registry / fit API


def test_registry_lists_the_core_methods():
    assert {"mc_dropout", "variational", "deep_ensemble"} <= set(tb.METHODS)
    for name, spec in tb.METHODS.items():
        assert spec.name == name
        assert callable(spec.train)
        json.dumps(spec.defaults)  # plain data


def test_unknown_method_lists_valid_ones(digits, mlp_builder):
    with pytest.raises(ValueError) as info:
        tb.fit(mlp_builder, digits, method="bayes_by_magic", epochs=1, verbose=0)
    assert isinstance(info.value, InvalidInputError)
    msg = str(info.value)
    assert "bayes_by_magic" in msg
    for name in tb.METHODS:
        assert name in msg


@pytest.mark.parametrize(
    "method,option",
    [("mc_dropout", {"members": 3}), ("deep_ensemble", {"rate": 0.1}), ("variational", {"estimatr": "flipout"})],
)
def test_unknown_option_lists_valid_ones(digits, mlp_builder, method, option):
    with pytest.raises(ValueError) as info:
        tb.fit(mlp_builder, digits, method=method, epochs=1, verbose=0, **option)
    msg = str(info.value)
    assert next(iter(option)) in msg
    for valid in tb.METHODS[method].defaults:
        assert valid in msg


@pytest.mark.parametrize(
    "method,options,argument",
    [
        ("mc_dropout", {"rate": 1.5}, "rate"),
        ("mc_dropout", {"rate": 0.0}, "rate"),
        ("mc_dropout", {"rate": -0.1}, "rate"),
        ("mc_dropout", {"rate": True}, "rate"),
        ("mc_dropout", {"rate": "0.5"}, "rate"),
        ("mc_dropout", {"layers": "middle"}, "layers"),
        ("mc_dropout", {"num_samples": 0}, "num_samples"),
        ("deep_ensemble", {"members": 0}, "members"),
        ("deep_ensemble", {"members": -2}, "members"),
        ("deep_ensemble", {"members": 2.5}, "members"),
        ("variational", {"estimator": "x"}, "estimator"),
        ("variational", {"layers": "first"}, "layers"),
        ("variational", {"prior_std": 0.0}, "prior_std"),
        ("variational", {"init_std": -1.0}, "init_std"),
        ("variational", {"kl_weight": -1.0}, "kl_weight"),
        ("variational", {"kl_weight": float("nan")}, "kl_weight"),
        ("variational", {"num_samples": 0}, "num_samples"),
    ],
)
def test_bad_hyper_parameters_raise_value_error_naming_them(digits, mlp_builder, method, options, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        tb.fit(mlp_builder, _subset(digits), method=method, epochs=1, verbose=0, **options)


@pytest.mark.parametrize(
    "kwargs,argument",
    [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"learning_rate": -1e-3}, "learning_rate"),
     ({"learning_rate": float("inf")}, "learning_rate")],
)
def test_bad_training_options_raise(digits, mlp_builder, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        tb.fit(mlp_builder, _subset(digits), method="deep_ensemble", members=1, verbose=0, **kwargs)


def test_bad_data_raises_invalid_input(digits, mlp_builder):
    x, y = _subset(digits)
    x_nan = x.copy()
    x_nan[3, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        tb.fit(mlp_builder, (x_nan, y), method="deep_ensemble", members=1, epochs=1, verbose=0)
    with pytest.raises(InvalidInputError):
        tb.fit(mlp_builder, (x, y[:-1]), method="deep_ensemble", members=1, epochs=1, verbose=0)
    with pytest.raises(InvalidInputError):
        tb.fit(mlp_builder, (x, y + 0.5), method="deep_ensemble", members=1, epochs=1, verbose=0)
    with pytest.raises(InvalidInputError):
        tb.fit(mlp_builder, x, method="deep_ensemble", members=1, epochs=1, verbose=0)
    with pytest.raises(InvalidInputError):
        tb.fit("not callable", (x, y), method="deep_ensemble", members=1, epochs=1, verbose=0)
    # the builder's input shape does not fit the data
    with pytest.raises(InvalidInputError, match="shape"):
        tb.fit(lambda: make_mlp(input_shape=(28, 28, 1)), (x, y), method="deep_ensemble", members=1, epochs=1,
               verbose=0)
    with pytest.raises(InvalidInputError):
        tb.fit(lambda: "not a model", (x, y), method="deep_ensemble", members=1, epochs=1, verbose=0)


def test_labels_outside_the_model_outputs_raise_invalid_input(digits):
    """Label 12 for a 10-output model is bad input, not a TensorFlow InvalidArgumentError mid-training."""
    x, y = _subset(digits)
    y = y.copy()
    y[0] = 12
    with pytest.raises(InvalidInputError):
        tb.fit(make_mlp, (x, y), method="deep_ensemble", members=1, epochs=1, verbose=0)


def test_class_names_come_from_the_dataset_or_given(digits, ensemble):
    assert ensemble.class_names == list(digits.class_names)
    post = tb.fit(make_mlp, _subset(digits, 64), method="deep_ensemble", members=1, epochs=1, verbose=0,
                  class_names=list("abcdefghij"))
    assert post.class_names == list("abcdefghij")


def test_same_seed_same_weights_different_seed_different(digits):
    def run(seed):
        post = tb.fit(make_mlp, _subset(digits), method="deep_ensemble", members=1, epochs=1, verbose=0, seed=seed)
        return post.members[0]

    a, b, c = run(3), run(3), run(4)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c))


# --------------------------------------------------------------------------- trained posteriors


def test_fixture_posteriors_learn_digits(digits, posteriors):
    for name, post in posteriors.items():
        pred = post.predict(digits.x_test)
        acc = float(np.mean(pred.label == digits.y_test))
        assert acc > 0.85, (name, acc)
        assert post.method == name


def test_deep_ensemble_members_are_distinct(ensemble):
    assert ensemble.num_samples == 3
    assert ensemble.options["members"] == 3
    k0 = [m[0] for m in ensemble.members]
    assert not np.allclose(k0[0], k0[1]) and not np.allclose(k0[1], k0[2])


def test_deep_ensemble_beats_a_single_network_nll(digits, mlp_builder):
    """Five members vs the same MLP trained alone (three independent seeds, averaged).

    Over ensemble seeds 0..4 the ensemble's NLL was 0.018-0.032 below the single networks'
    mean (single networks vary by ~0.01 between seeds), so this margin is not luck.
    """
    kw = dict(epochs=20, learning_rate=1e-2, verbose=0)
    ens = tb.fit(mlp_builder, digits, method="deep_ensemble", members=5, seed=0, **kw)
    nll_ens = tb.metrics.nll(ens.predict(digits.x_test).probs, digits.y_test)
    singles = []
    for seed in (101, 102, 103):
        single = tb.fit(mlp_builder, digits, method="deep_ensemble", members=1, seed=seed, **kw)
        singles.append(tb.metrics.nll(single.predict(digits.x_test).probs, digits.y_test))
    assert nll_ens < np.mean(singles), (nll_ens, singles)
    # Jensen: the ensemble's NLL is at most its members' mean; strictly less when members differ
    member_nll = [tb.metrics.nll(p, digits.y_test) for p in ens.sample_probs(digits.x_test)]
    assert nll_ens < np.mean(member_nll) - 0.005


@pytest.mark.parametrize("method", ["mc_dropout", "variational", "deep_ensemble"])
def test_noise_gets_higher_epistemic_uncertainty_than_digits(posteriors, digits, x_noise, method):
    post = posteriors[method]
    s = None if method == "deep_ensemble" else 32
    epi_in = post.predict(digits.x_test, num_samples=s).epistemic
    epi_out = post.predict(x_noise, num_samples=s).epistemic
    auroc = tb.metrics.ood_auroc(epi_in, epi_out)
    assert auroc > 0.8, auroc
    assert np.median(epi_out) > np.median(epi_in)


@pytest.mark.parametrize("method", ["mc_dropout", "variational"])
def test_stochastic_predictions_differ_between_calls(posteriors, digits, method):
    post = posteriors[method]
    x = digits.x_test[:50]
    a = post.sample_probs(x, num_samples=4)
    b = post.sample_probs(x, num_samples=4)
    assert a.shape == (4, 50, 10)
    assert not np.allclose(a, b)
    assert not np.allclose(a[0], a[1])  # the samples within one call differ too
    assert np.all(post.predict(x).epistemic > 0)


def test_ensemble_predictions_are_deterministic(ensemble, digits):
    x = digits.x_test[:50]
    np.testing.assert_array_equal(ensemble.sample_probs(x), ensemble.sample_probs(x))
    p1, p2 = ensemble.predict(x), ensemble.predict(x)
    np.testing.assert_array_equal(p1.probs, p2.probs)
    np.testing.assert_array_equal(p1.epistemic, p2.epistemic)


def test_mc_dropout_fixture_has_dropout_before_each_weight_layer_but_the_first(mc_dropout):
    kinds = _layer_kinds(mc_dropout.model)
    assert kinds == ["Flatten", "Dense", "MCDropout", "Dense", "MCDropout", "Dense"]
    rates = [l.rate for l in mc_dropout.model.layers if isinstance(l, MCDropout)]
    assert rates == [0.25, 0.25]
    mc = [l.name for l in mc_dropout.model.layers if isinstance(l, MCDropout)]
    fed = [mc_dropout.model.layers[i + 1].name for i, l in enumerate(mc_dropout.model.layers) if l.name in mc]
    assert mc_dropout.options == {"rate": None, "layers": "auto", "num_samples": 16, "dropout_policy": "all",
                                  "dropout_layers": mc, "dropout_feeds": {d: [f] for d, f in zip(mc, fed)}}
    assert mc_dropout.num_samples == 16


def test_variational_fixture_kl_weight_defaults_to_one_over_n(variational, digits):
    n = len(digits.x_train)
    assert variational.options["kl_weight"] == pytest.approx(1.0 / n)
    layers = [l for l in variational.model.layers if isinstance(l, VariationalDense)]
    assert len(layers) == 3
    for layer in layers:
        assert layer.kl_weight == pytest.approx(1.0 / n)
        assert layer.estimator == "flipout"
    # the KL in model.losses is the scaled sum over the layers
    variational.model(digits.x_test[:2])
    want = sum(float(l.kl_divergence()) / n for l in layers)
    got = float(sum(float(v) for v in variational.model.losses))
    assert got == pytest.approx(want, rel=1e-5)


def test_fit_layers_last(digits):
    post = tb.fit(make_mlp, _subset(digits), method="mc_dropout", layers="last", rate=0.3, epochs=1, verbose=0)
    assert _layer_kinds(post.model) == ["Flatten", "Dense", "Dense", "MCDropout", "Dense"]
    assert post.model.layers[-2].rate == pytest.approx(0.3)
    assert post.options["layers"] == "last"
    assert post.class_names == [str(i) for i in range(10)]  # (x, y) data: default names
    post = tb.fit(make_mlp, _subset(digits), method="variational", layers="last", epochs=1, verbose=0,
                  estimator="local_reparameterization")
    assert _layer_kinds(post.model) == ["Flatten", "Dense", "Dense", "VariationalDense"]
    # the KL weight follows the training-set size (200 here, 1,437 in the fixture)
    assert post.options["kl_weight"] == pytest.approx(1 / 200)
    assert post.model.layers[-1].kl_weight == pytest.approx(1 / 200)
    assert post.model.layers[-1].estimator == "local_reparameterization"
    assert post.options["estimator"] == "local_reparameterization"


# --------------------------------------------------------------------------- config rewriting


def _copy_dense_weights(src, dst):
    for layer in src.layers:
        if layer.weights:
            dst.get_layer(layer.name).set_weights(layer.get_weights())


def test_to_mc_dropout_inserts_before_each_weight_layer_except_the_first():
    from tflbayes.architectures import cnn

    model = cnn((8, 8, 1), 10)
    out = to_mc_dropout(model)
    kinds = _layer_kinds(out)
    weight_pos = [i for i, k in enumerate(kinds) if k in ("Dense", "Conv2D")]
    assert len(weight_pos) == 4
    assert "MCDropout" not in kinds[: weight_pos[0]]
    for i in weight_pos[1:]:
        assert kinds[i - 1] == "MCDropout"
    assert kinds.count("MCDropout") == 3
    assert all(l.rate == 0.25 for l in out.layers if isinstance(l, MCDropout))
    # every original layer is kept with its name
    assert [l.name for l in model.layers] == [l.name for l in out.layers if not isinstance(l, MCDropout)]
    assert weight_layer_names(out) == weight_layer_names(model)
    # with rate given
    out = to_mc_dropout(model, rate=0.1)
    assert [l.rate for l in out.layers if isinstance(l, MCDropout)] == [0.1] * 3


def _mlp_with_dropout():
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dropout(0.3, name="drop_a"),
        keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.1, name="drop_b"),
        keras.layers.Dense(10, name="logits"),
    ])


def test_to_mc_dropout_keeps_the_models_own_dropout_layers():
    model = _mlp_with_dropout()
    out = to_mc_dropout(model)
    assert _layer_kinds(out) == ["Flatten", "Dense", "MCDropout", "Dense", "MCDropout", "Dense"]
    mc = [l for l in out.layers if isinstance(l, MCDropout)]
    assert [(l.name, l.rate) for l in mc] == [("drop_a", 0.3), ("drop_b", 0.1)]
    out = to_mc_dropout(model, rate=0.5)
    assert [l.rate for l in out.layers if isinstance(l, MCDropout)] == [0.5, 0.5]


def test_to_mc_dropout_layers_last():
    # no dropout in the model: exactly one MCDropout, right before the last Dense
    out = to_mc_dropout(make_mlp(), layers="last")
    assert _layer_kinds(out) == ["Flatten", "Dense", "Dense", "MCDropout", "Dense"]
    assert out.layers[-2].rate == 0.25
    # the model's own dropout before the last Dense is the one made stochastic; the others stay plain
    out = to_mc_dropout(_mlp_with_dropout(), layers="last")
    kinds = _layer_kinds(out)
    assert kinds == ["Flatten", "Dense", "Dropout", "Dense", "MCDropout", "Dense"]
    assert out.layers[4].name == "drop_b" and out.layers[4].rate == pytest.approx(0.1)
    assert sum(isinstance(l, MCDropout) for l in out.layers) == 1


def test_to_mc_dropout_keeps_the_wiring_sequential_and_functional():
    """With rate 0 the rewritten model must compute exactly what the original does."""
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype(np.float32)
    for model in (make_mlp(), make_functional_mlp()):
        out = to_mc_dropout(model, rate=0.0)
        assert sum(isinstance(l, MCDropout) for l in out.layers) == 2
        _copy_dense_weights(model, out)
        np.testing.assert_allclose(out(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)


def test_to_mc_dropout_functional_model():
    model = make_functional_mlp()
    out = to_mc_dropout(model)
    assert isinstance(out, keras.Model) and not isinstance(out, keras.Sequential)
    assert [l.name for l in out.layers] == ["image", "flat", "hidden0", "mc_dropout_hidden1", "hidden1",
                                           "mc_dropout_logits", "logits"]
    cfg = {e["config"]["name"]: e for e in out.get_config()["layers"]}
    assert cfg["hidden1"]["inbound_nodes"][0][0][0] == "mc_dropout_hidden1"
    assert cfg["mc_dropout_hidden1"]["inbound_nodes"][0][0][0] == "hidden0"
    # a functional model with its own dropout, last layer only
    out = to_mc_dropout(make_functional_mlp(dropout=0.2), layers="last")
    assert [type(l).__name__ for l in out.layers if isinstance(l, keras.layers.Dropout)] == ["Dropout", "MCDropout"]
    assert out.get_layer("drop1").rate == pytest.approx(0.2)
    x = np.random.default_rng(1).uniform(size=(8, 8, 8, 1)).astype(np.float32)
    assert not np.allclose(out(x).numpy(), out(x).numpy())


def _vi_equivalence(model, out):
    """Give ``out`` the original weights as posterior means and ~zero std; outputs must agree."""
    for layer in model.layers:
        if not layer.weights:
            continue
        twin = out.get_layer(layer.name)
        if isinstance(twin, (VariationalDense, VariationalConv2D)):
            twin.kernel_loc.assign(layer.kernel)
            twin.kernel_rho.assign(np.full(layer.kernel.shape, -80.0, np.float32))  # softplus ~ 2e-35
            twin.bias.assign(layer.bias)
        else:
            twin.set_weights(layer.get_weights())


def test_to_variational_keeps_layers_and_computes_the_same_at_zero_std():
    from tflbayes.architectures import cnn

    x = np.random.default_rng(2).uniform(size=(8, 8, 8, 1)).astype(np.float32)
    for model in (make_mlp(), make_functional_mlp(), cnn((8, 8, 1), 10)):
        out = to_variational(model, estimator="reparameterization", kl_weight=0.0)
        kinds = _layer_kinds(out)
        assert "Dense" not in kinds and "Conv2D" not in kinds
        assert [l.name for l in out.layers] == [l.name for l in model.layers]
        _vi_equivalence(model, out)
        np.testing.assert_allclose(out(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_to_variational_layers_last():
    out = to_variational(make_mlp(), layers="last")
    assert _layer_kinds(out) == ["Flatten", "Dense", "Dense", "VariationalDense"]
    from tflbayes.architectures import cnn

    out = to_variational(cnn((8, 8, 1), 10), layers="last")
    kinds = _layer_kinds(out)
    assert kinds.count("VariationalDense") == 1 and kinds[-1] == "VariationalDense"
    assert "VariationalConv2D" not in kinds and kinds.count("Conv2D") == 2


def test_to_variational_passes_layer_options():
    out = to_variational(make_mlp(), estimator="local_reparameterization", prior_std=0.5, kl_weight=0.01,
                         init_std=0.02)
    variational = [layer for layer in out.layers if isinstance(layer, VariationalDense)]
    assert len(variational) == 3  # every Dense of the MLP (layers="all"), so the checks below run
    for layer in variational:
        assert layer.estimator == "local_reparameterization"
        assert layer.prior_std == 0.5 and layer.kl_weight == 0.01
        np.testing.assert_allclose(layer.kernel_std().numpy(), 0.02, rtol=1e-4)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.flat = keras.layers.Flatten()
        self.dense = keras.layers.Dense(10)

    def call(self, x):
        return self.dense(self.flat(x))


def test_subclassed_model_is_refused_by_the_rewriters():
    model = _Subclassed()
    model(np.zeros((1, 8, 8, 1), np.float32))  # built
    for fn in (to_mc_dropout, to_variational, weight_layer_names):
        with pytest.raises(InvalidInputError, match="subclassed"):
            fn(model)


@pytest.mark.parametrize("method", ["mc_dropout", "variational", "deep_ensemble"])
def test_fit_refuses_a_subclassed_model_with_invalid_input(digits, method):
    with pytest.raises(InvalidInputError):
        tb.fit(_Subclassed, _subset(digits), method=method, epochs=1, verbose=0)


def test_nested_model_and_model_without_weight_layers_are_refused():
    inner = make_mlp()
    nested = keras.Sequential([keras.Input((8, 8, 1)), inner])
    with pytest.raises(InvalidInputError, match="nested"):
        to_mc_dropout(nested)
    no_weights = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten()])
    with pytest.raises(InvalidInputError):
        to_mc_dropout(no_weights)
    with pytest.raises(InvalidInputError):
        to_variational(no_weights)


def test_transforms_round_trip_through_json():
    for out in (to_mc_dropout(make_functional_mlp()), to_variational(make_mlp())):
        import tflbayes.layers  # noqa: F401  (registers the custom layers)

        again = keras.models.model_from_json(out.to_json())
        assert _layer_kinds(again) == _layer_kinds(out)


# --------------------------------------------------------------------------- distribution


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    import tflbayes as tb
    from tflbayes.architectures import builder

    ds = tb.data.load("digits")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    build = builder("mlp", ds.input_shape, ds.num_classes)
    out = {"replicas": strategy.num_replicas_in_sync}
    for method, opts in (("deep_ensemble", {"members": 2}), ("mc_dropout", {}), ("variational", {})):
        post = tb.fit(build, ds, method=method, epochs=2, learning_rate=1e-2, verbose=0, strategy=strategy, **opts)
        acc = float(np.mean(post.predict(ds.x_test).label == ds.y_test))
        out[method] = {
            "accuracy": acc,
            "same_strategy": post.model.distribute_strategy is strategy,
            "mirrored": isinstance(post.model.weights[0], tf.distribute.DistributedValues),
            "S": post.num_samples,
        }
    print("RESULT " + json.dumps(out))
    """
)


def test_mirrored_strategy_over_two_logical_cpus_trains(tmp_path):
    out = run_result_script(tmp_path, _MIRRORED_SCRIPT)
    assert out["replicas"] == 2
    for method in ("deep_ensemble", "mc_dropout", "variational"):
        r = out[method]
        assert r["same_strategy"] and r["mirrored"], (method, r)
        assert r["accuracy"] > 0.5, (method, r)  # 2 epochs: ~0.9 seen; chance is 0.1
    assert out["deep_ensemble"]["S"] == 2
