"""Pruning on the edge architectures (issue 10): every kernel kind is pruned or named as skipped, and
``tb.compress.sparsity`` reports the zeros actually in the weights.

The reference counts here do not use ``kernel_slots``: they read the model's variables by name
(``.../kernel``, ``depthwise_kernel``, ``pointwise_kernel``, ``recurrent_kernel``, ``kernel_loc``).
Pruning needs no training, so the posteriors hold random initial weights.
"""
import numpy as np
import pytest

import tflbayes as tb
from tflbayes._keras import keras
from tflbayes.architectures import builder
from tflbayes.compress._targets import PRUNED_STD
from tflbayes.methods.transform import to_mc_dropout, to_variational
from tflbayes.posterior import EnsemblePosterior, StochasticPosterior

SHAPE = (8, 8, 1)
KERNELS = {"kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "kernel_loc"}


def _short(v):
    return v.name.split("/")[-1].split(":")[0]


def _reference(model, weight_sets):
    """{variable name: (zeros, size)} over every kernel, counted from the variables themselves."""
    names = [v.name for v in model.weights]
    out = {}
    for k, v in enumerate(model.weights):
        if _short(v) not in KERNELS:
            continue
        zeros, size = 0, 0
        for ws in weight_sets:
            z = ws[k] == 0
            if _short(v) == "kernel_loc":  # a removed variational weight: mu = 0 and sigma ~ 0
                rho = ws[names.index(v.name.replace("kernel_loc", "kernel_rho"))]
                z &= np.log1p(np.exp(np.minimum(rho.astype(np.float64), 30))) <= PRUNED_STD
            zeros += int(z.sum())
            size += z.size
        out[v.name] = (zeros, size)
    return out


def _overall(ref):
    return sum(z for z, _ in ref.values()) / sum(n for _, n in ref.values())


def _mc_posterior(arch):
    keras.utils.set_random_seed(0)
    model = to_mc_dropout(builder(arch, SHAPE, 10)(), layers="auto")
    return StochasticPosterior(model, "mc_dropout", {"num_samples": 4}, [str(i) for i in range(10)])


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("target", [0.5, 0.9])
@pytest.mark.parametrize("arch", ["conv1d", "ds_cnn", "gru"])
def test_prune_reaches_the_request_in_the_real_zero_fraction(arch, target, scope):
    post = _mc_posterior(arch)
    assert _overall(_reference(post.model, [post.model.get_weights()])) < 0.01  # dense to start with
    sparse = tb.compress.prune(post, target, scope=scope)
    ref = _reference(sparse.model, [sparse.model.get_weights()])
    rep = tb.compress.sparsity(sparse)
    assert rep["overall"] == pytest.approx(_overall(ref), abs=1e-12)
    total = sum(n for _, n in ref.values())
    assert abs(rep["overall"] - target) <= len(ref) / total  # whole weights, one kept per kernel
    if scope == "layer":
        for name, (z, n) in ref.items():  # every kernel kind, including depthwise and recurrent
            assert z == np.floor(target * n + 0.5), name
    by_layer = {}
    for name, (z, n) in ref.items():
        layer = name.split("/")[0]
        z0, n0 = by_layer.get(layer, (0, 0))
        by_layer[layer] = (z0 + z, n0 + n)
    assert rep["layers"] == pytest.approx({k: z / n for k, (z, n) in by_layer.items()}, abs=1e-12)
    assert sparse.options["compression"][-1].get("skipped", {}) == rep["skipped"]  # BN only, with the reason


def test_recurrent_and_depthwise_kernels_are_reported_by_kind():
    rep = tb.compress.sparsity(tb.compress.prune(_mc_posterior("gru"), 0.5))
    assert set(rep["kernels"]) == {"gru", "gru/recurrent_kernel", "logits"}
    assert rep["skipped"] == {}
    rep = tb.compress.sparsity(tb.compress.prune(_mc_posterior("ds_cnn"), 0.5))
    assert rep["kernels"]["ds0_dw/depthwise_kernel"] == pytest.approx(0.5, abs=1e-2)
    assert set(rep["skipped"]) == {"stem_bn", "ds0_dw_bn", "ds0_pw_bn", "ds1_dw_bn", "ds1_pw_bn"}
    assert all("normalization" in why for why in rep["skipped"].values())


def test_ensemble_of_grus_counts_every_member():
    model = builder("gru", SHAPE, 4)()
    rng = np.random.default_rng(0)
    sets = [[rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()] for _ in range(3)]
    ens = EnsemblePosterior(model, sets, "deep_ensemble", {"members": 3}, ["a", "b", "c", "d"])
    sparse = tb.compress.prune(ens, 0.7)
    ref = _reference(sparse.model, sparse.members)
    assert tb.compress.sparsity(sparse)["overall"] == pytest.approx(_overall(ref), abs=1e-12)
    assert _overall(ref) == pytest.approx(0.7, abs=3 / sum(n for _, n in ref.values()))
    masks = [sparse.members[i][1] == 0 for i in range(3)]  # the GRU's recurrent kernel: own mask per member
    assert not np.array_equal(masks[0], masks[1])
    two_four = tb.compress.prune(ens, method="2:4")
    record = two_four.options["compression"][-1]
    assert set(record["skipped"]) == {"gru", "gru/recurrent_kernel"} and "m-by-n" in record["skipped"]["gru"]
    rep = tb.compress.sparsity(two_four)
    assert rep["layers"]["logits"] == pytest.approx(0.5) and rep["layers"]["gru"] == 0.0
    assert rep["overall"] == pytest.approx(_overall(_reference(two_four.model, two_four.members)), abs=1e-12)


def test_variational_gru_snr_leaves_the_deterministic_gru_and_says_so():
    keras.utils.set_random_seed(0)
    model = to_variational(builder("gru", SHAPE, 10)(), init_std=0.05)
    post = StochasticPosterior(model, "variational", {"num_samples": 4}, [str(i) for i in range(10)])
    snr = tb.compress.prune(post, 0.5, method="snr")
    ref = _reference(snr.model, [snr.model.get_weights()])
    rep = tb.compress.sparsity(snr)
    assert rep["overall"] == pytest.approx(_overall(ref), abs=1e-12)
    assert rep["layers"]["gru"] == 0.0 and rep["layers"]["logits"] == pytest.approx(0.5, abs=1e-2)
    assert rep["overall"] < 0.05  # the GRU holds most weights: the honest figure, not the request
    skipped = snr.options["compression"][-1]["skipped"]
    assert set(skipped) == {"gru", "gru/recurrent_kernel"} and "signal-to-noise" in skipped["gru"]
    mag = tb.compress.prune(post, 0.5, method="magnitude")
    rep = tb.compress.sparsity(mag)
    assert rep["overall"] == pytest.approx(_overall(_reference(mag.model, [mag.model.get_weights()])), abs=1e-12)
    assert rep["overall"] == pytest.approx(0.5, abs=1e-2)


def test_variational_depthwise_and_conv1d_kernels_are_pruned_by_snr():
    for arch, name in (("ds_cnn", "ds0_dw"), ("conv1d", "conv1")):
        keras.utils.set_random_seed(0)
        post = StochasticPosterior(to_variational(builder(arch, SHAPE, 10)(), init_std=0.05), "variational",
                                   {"num_samples": 4}, [str(i) for i in range(10)])
        sparse = tb.compress.prune(post, 0.6, method="snr")
        rep = tb.compress.sparsity(sparse)
        assert rep["layers"][name] == pytest.approx(0.6, abs=0.02)
        assert rep["overall"] == pytest.approx(_overall(_reference(sparse.model, [sparse.model.get_weights()])))
        assert sparse.predict(np.zeros((2, *SHAPE), np.float32)).probs.shape == (2, 10)


def test_separable_and_bidirectional_kernels_are_all_pruned():
    inp = keras.Input((8, 8, 3))
    h = keras.layers.SeparableConv2D(4, 3, name="sep")(inp)
    h = keras.layers.Reshape((6, 24))(h)
    h = keras.layers.Bidirectional(keras.layers.LSTM(5), name="bi")(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(h))
    post = StochasticPosterior(to_mc_dropout(model, layers="auto"), "mc_dropout", {}, ["a", "b", "c"])
    sparse = tb.compress.prune(post, 0.5)
    rep = tb.compress.sparsity(sparse)
    assert set(rep["kernels"]) == {"sep/depthwise_kernel", "sep/pointwise_kernel", "bi/forward/kernel",
                                   "bi/forward/recurrent_kernel", "bi/backward/kernel",
                                   "bi/backward/recurrent_kernel", "logits"}
    ref = _reference(sparse.model, [sparse.model.get_weights()])
    assert len(ref) == 7 and rep["overall"] == pytest.approx(_overall(ref), abs=1e-12)


def test_shared_mask_on_a_conv1d_ensemble_holds_the_real_sparsity():
    ds = tb.data.load("digits")
    model = builder("conv1d", SHAPE, 10)()
    rng = np.random.default_rng(1)
    sets = [[rng.normal(0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()] for _ in range(2)]
    ens = EnsemblePosterior(model, sets, "deep_ensemble", {"members": 2}, [str(i) for i in range(10)])
    sm = tb.compress.prune(ens, 0.6, method="shared_mask", data=(ds.x_train[:128], ds.y_train[:128]),
                           sampler="ensemble", prune_epochs=1, finetune_epochs=0, sample_epochs=1)
    ref = _reference(sm.model, sm.members)
    for name, (z, n) in ref.items():  # exact counts per kernel and member (Conv1D kernels included)
        assert z == 2 * np.floor(0.6 * (n // 2) + 0.5), name
    assert all(np.array_equal(sm.members[0][k] == 0, sm.members[1][k] == 0) for k in range(len(sm.members[0]))
               if sm.mask[k] is not None)  # one mask for both members
    assert tb.compress.sparsity(sm)["overall"] == pytest.approx(_overall(ref), abs=1e-12)


@pytest.mark.parametrize("arch", ["ds_cnn", "conv1d"])
def test_qat_twin_of_a_variational_conv_model_computes_its_mean_network(arch):
    from tflbayes.compress.qat import deterministic_twin

    keras.utils.set_random_seed(0)
    vi = to_variational(builder(arch, SHAPE, 10)(), estimator="reparameterization", kl_weight=0.0)
    ws = vi.get_weights()
    for v, k in zip(vi.weights, range(len(ws))):
        if _short(v) == "kernel_rho":
            ws[k] = np.full(ws[k].shape, -80.0, np.float32)  # sigma ~ 2e-35: the mean network
    vi.set_weights(ws)
    twin, to_twin, from_twin = deterministic_twin(vi)
    assert not any(type(l).__name__.startswith("Variational") for l in twin.layers)
    twin.set_weights(to_twin(ws))
    x = np.random.default_rng(3).uniform(size=(4, *SHAPE)).astype(np.float32)
    np.testing.assert_allclose(twin(x).numpy(), vi(x).numpy(), rtol=1e-5, atol=1e-5)
    back = from_twin(twin.get_weights(), ws)
    assert all(np.array_equal(a, b) for a, b in zip(back, ws))
