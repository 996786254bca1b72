"""Tests of tflbayes.compress: pruning methods, achieved sparsity, QAT, LiteRT's sparse format, bad input.

Exactness checks use hand-built weights (known ranks, known dead units); the trained checks use
the shared digits fixtures (conftest.py) and a few epochs on small subsets.
"""
from __future__ import annotations

import numpy as np
import pytest

import tflbayes as tb
import tflbayes.compress as compress
from tflbayes._keras import keras
from tflbayes.architectures import cnn
from tflbayes.compress._targets import PRUNED_RHO, kernel_slots
from tflbayes.compress.nm import is_m_by_n
from tflbayes.compress.snr import softplus
from tflbayes.compress.structured import GroupLasso, unit_norms
from tflbayes.converters.tflite import op_names
from tflbayes.errors import InvalidInputError, TflbayesError
from tflbayes.posterior import EnsemblePosterior, StochasticPosterior

from conftest import make_mlp


def _kernels(post, member=0):
    ws = post.members[member] if isinstance(post, EnsemblePosterior) else post.model.get_weights()
    return {sl.layer: ws[sl.index] for sl in kernel_slots(post.model)}


@pytest.fixture(scope="module")
def small_data(digits):
    return digits.x_train[:300], digits.y_train[:300]


@pytest.fixture(scope="module")
def random_cnn(digits):
    """One untrained CNN (4 / 8 filters, 16 dense units, Keras's initialisation) as a 1-member ensemble."""
    keras.utils.set_random_seed(3)
    model = cnn(digits.input_shape, 10, filters=(4, 8), dense=16)
    return EnsemblePosterior(model, [model.get_weights()])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), "0.5", True, None])
def test_sparsity_outside_0_1_raises(untrained_ensemble, sparsity):
    with pytest.raises(InvalidInputError, match="sparsity"):
        compress.prune(untrained_ensemble, sparsity)


def test_unknown_method_scope_criterion_option_raise(untrained_ensemble):
    with pytest.raises(InvalidInputError, match=r"method.*'magnitude'.*'shared_mask'.*'snr'"):
        compress.prune(untrained_ensemble, 0.5, method="lottery")
    with pytest.raises(InvalidInputError, match="scope"):
        compress.prune(untrained_ensemble, 0.5, scope="model")
    with pytest.raises(InvalidInputError, match="criterion"):
        compress.prune(untrained_ensemble, 0.5, method="magnitude", criterion="fisher")
    with pytest.raises(InvalidInputError, match="Unknown option.*epochs"):
        compress.prune(untrained_ensemble, 0.5, method="magnitude", epochs=3)
    with pytest.raises(InvalidInputError, match="Unknown option.*bogus.*Valid options"):
        compress.prune(untrained_ensemble, 0.5, method="structured", data=(np.zeros((4, 8, 8, 1)), np.zeros(4)),
                       bogus=1)


def test_method_that_does_not_fit_names_what_fits(untrained_ensemble, mc_dropout):
    with pytest.raises(InvalidInputError, match=r"'snr' does not fit.*variational posteriors") as info:
        compress.prune(untrained_ensemble, 0.5, method="snr")
    assert isinstance(info.value, ValueError)
    for method in ("shared_mask", "structured", "2:4"):
        with pytest.raises(InvalidInputError, match="fits ensemble posteriors"):
            compress.prune(mc_dropout, 0.5 if method != "2:4" else None, method=method)
    with pytest.raises(InvalidInputError, match=r"method='snr' does not fit"):
        compress.prune(mc_dropout, 0.5, method="snr")


def test_training_methods_need_data_and_2_4_is_fixed_at_half(untrained_ensemble):
    for method in ("shared_mask", "structured"):
        with pytest.raises(InvalidInputError, match=r"data=\(x_train, y_train\)"):
            compress.prune(untrained_ensemble, 0.5, method=method)
    with pytest.raises(InvalidInputError, match="data"):
        compress.prune(untrained_ensemble, 0.5, method="shared_mask", data=(np.zeros((4, 3)), np.zeros(4)))
    with pytest.raises(InvalidInputError, match="2 zeros in every 4"):
        compress.prune(untrained_ensemble, 0.9, method="2:4")
    with pytest.raises(InvalidInputError, match="data"):
        compress.quantization_aware(untrained_ensemble, None)


# --------------------------------------------------------------------------- magnitude: exact counts


@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9, 0.99])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_achieved_sparsity_equals_the_request(untrained_ensemble, sparsity, scope):
    post = compress.prune(untrained_ensemble, sparsity, scope=scope)
    rep = compress.sparsity(post)
    slots = kernel_slots(post.model)
    total = sum(sl.size for sl in slots)
    if scope == "layer":
        for sl in slots:  # round(sparsity * size) weights per kernel and member (one always kept)
            want = min(np.floor(sparsity * sl.size + 0.5), sl.size - 1) / sl.size
            assert rep["layers"][sl.layer] == pytest.approx(want, abs=1e-12)
    assert abs(rep["overall"] - sparsity) <= 0.5 / total + (len(slots) / total if sparsity > 0.9 else 0)
    for ws in post.members:  # biases untouched
        for sl_w, w0 in zip(ws, untrained_ensemble.members[0]):
            assert sl_w.shape == w0.shape
    assert isinstance(post, EnsemblePosterior) and post.num_samples == untrained_ensemble.num_samples


def test_magnitude_removes_the_smallest_weights_of_each_member_and_leaves_the_input_alone(untrained_ensemble):
    before = [[w.copy() for w in ws] for ws in untrained_ensemble.members]
    post = compress.prune(untrained_ensemble, 0.5)
    for i, (ws, orig) in enumerate(zip(post.members, before)):
        for sl in kernel_slots(post.model):
            kept, w = ws[sl.index] != 0, orig[sl.index]
            assert np.abs(w[kept]).min() >= np.abs(w[~kept]).max()  # hand reference: the |w| ranking
            np.testing.assert_array_equal(ws[sl.index][kept], w[kept])
        for k in range(len(ws)):
            if k not in {sl.index for sl in kernel_slots(post.model)}:
                np.testing.assert_array_equal(ws[k], orig[k])  # biases are never pruned
    for a, b in zip(untrained_ensemble.members, before):
        for wa, wb in zip(a, b):
            np.testing.assert_array_equal(wa, wb)
    # members are pruned independently: their masks differ
    m0, m1 = (post.members[i][kernel_slots(post.model)[0].index] != 0 for i in (0, 1))
    assert not np.array_equal(m0, m1)
    assert post.options["compression"][-1] == {"step": "pruning", "method": "magnitude", "sparsity": 0.5,
                                               "scope": "layer"}


def test_global_scope_ranks_all_kernels_together():
    model = make_mlp()
    ws = [w.copy() for w in model.get_weights()]
    slots = kernel_slots(model)
    ws[slots[0].index][:] = 10.0  # the first kernel is large everywhere: global pruning spares it
    for sl in slots[1:]:
        ws[sl.index][:] = np.linspace(0.01, 1, ws[sl.index].size).reshape(ws[sl.index].shape)
    total = sum(sl.size for sl in slots)
    post = compress.prune(EnsemblePosterior(model, [ws]), 0.2, scope="global")  # 544 < the 670 small ones
    rep = compress.sparsity(post)
    assert rep["layers"][slots[0].layer] == 0.0
    assert rep["overall"] == pytest.approx(0.2, abs=0.5 / total)


def test_low_sparsity_predicts_like_the_dense_posterior(ensemble, digits):
    x = digits.x_test
    dense = ensemble.predict(x)
    for method_kw in ({}, {"scope": "global"}):
        sparse = compress.prune(ensemble, 0.2, **method_kw).predict(x)
        assert np.mean(np.abs(sparse.probs - dense.probs)) < 0.01
        assert np.mean(sparse.probs.argmax(-1) == dense.probs.argmax(-1)) >= 0.98
        assert np.mean(np.abs(sparse.epistemic - dense.epistemic)) < 0.01


def test_magnitude_on_mc_dropout_keeps_a_stochastic_posterior(mc_dropout):
    post = compress.prune(mc_dropout, 0.5)
    assert isinstance(post, StochasticPosterior) and post.method == "mc_dropout"
    assert compress.sparsity(post)["overall"] == pytest.approx(0.5, abs=1e-3)
    assert compress.sparsity(mc_dropout)["overall"] == 0.0


# --------------------------------------------------------------------------- SNR on VI


def test_snr_prunes_the_lowest_signal_to_noise_weights(variational, digits):
    post = compress.prune(variational, 0.5, method="snr")
    assert isinstance(post, StochasticPosterior) and post.method == "variational"
    rep = compress.sparsity(post)
    assert rep["overall"] == pytest.approx(0.5, abs=1e-3)
    before, after = variational.model.get_weights(), post.model.get_weights()
    for sl in kernel_slots(post.model):
        mu, rho = before[sl.index], before[sl.rho]
        snr = np.abs(mu) / softplus(rho)
        kept = after[sl.index] != 0
        assert snr[kept].min() >= snr[~kept].max()  # hand reference: the |μ|/σ ranking
        assert np.all(after[sl.rho][~kept] == np.float32(PRUNED_RHO))
        np.testing.assert_array_equal(after[sl.rho][kept], rho[kept])
    by_mean = compress.prune(variational, 0.5, method="snr", criterion="magnitude")
    k_snr, k_mag = _kernels(post), _kernels(by_mean)
    assert any(not np.array_equal(k_snr[n] != 0, k_mag[n] != 0) for n in k_snr)  # the criteria differ
    assert compress.sparsity(compress.prune(variational, 0.5))["overall"] == pytest.approx(0.5, abs=1e-3)
    # low sparsity keeps the predictive (Monte Carlo noise aside)
    x = digits.x_test[:200]
    a = variational.predict(x, num_samples=32).probs
    b = compress.prune(variational, 0.1, method="snr").predict(x, num_samples=32).probs
    assert np.mean(a.argmax(-1) == b.argmax(-1)) > 0.9


# --------------------------------------------------------------------------- shared mask


def test_shared_mask_puts_every_member_in_one_mask(ensemble, digits, small_data):
    post = compress.prune(ensemble, 0.8, method="shared_mask", data=small_data, sampler="ensemble",
                          prune_epochs=1, finetune_epochs=0, sample_epochs=1, members=2)
    assert isinstance(post, EnsemblePosterior) and post.num_samples == 2
    assert post.mask is not None
    rep = compress.sparsity(post)
    for sl in kernel_slots(post.model):
        m = post.mask[sl.index]
        assert m is not None and (~m).sum() == np.floor(0.8 * sl.size + 0.5)  # exact per layer
        for ws in post.members:
            assert not np.any(ws[sl.index][~m])  # inside the one mask
        assert rep["layers"][sl.layer] >= 0.8 - 1e-9
    assert post.options["compression"][-1]["sampler"] == "ensemble"
    acc = np.mean(post.predict(digits.x_test).probs.argmax(-1) == digits.y_test)
    assert acc > 0.5  # a pruned, briefly fine-tuned network, not a broken one


def test_shared_mask_global_scope_and_sampler_choice(untrained_ensemble, small_data):
    post = compress.prune(untrained_ensemble, 0.7, method="shared_mask", scope="global", data=small_data,
                          sampler="ensemble", prune_epochs=1, finetune_epochs=0, sample_epochs=1, members=1)
    total = sum(sl.size for sl in kernel_slots(post.model))
    assert compress.sparsity(post)["overall"] == pytest.approx(0.7, abs=1 / total)
    with pytest.raises(InvalidInputError, match="sampler"):
        compress.prune(untrained_ensemble, 0.5, method="shared_mask", data=small_data, sampler="hmc")


def test_shared_mask_samples_with_sghmc_when_available(untrained_ensemble, small_data):
    from tflbayes.compress.shared_mask import sghmc_available

    if not sghmc_available():
        pytest.skip("tflbayes.methods.sampling (sghmc) is not importable here")
    post = compress.prune(untrained_ensemble, 0.5, method="shared_mask", data=small_data, prune_epochs=1,
                          finetune_epochs=0, sample_epochs=1, members=2, sampler_options={"burn_in": 2})
    assert post.method == "sghmc" and post.num_samples == 2
    for sl in kernel_slots(post.model):
        m = post.mask[sl.index]
        for ws in post.members:
            assert not np.any(ws[sl.index][~m])
    assert not np.array_equal(post.members[0][0], post.members[-1][0])  # a chain moves


# --------------------------------------------------------------------------- structured


def test_group_lasso_value_and_config_round_trip():
    reg = GroupLasso(0.5)
    w = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    want = 0.5 * np.sqrt((w.astype(np.float64) ** 2).sum(axis=0) + 1e-8).sum()
    assert float(reg(keras.backend.constant(w))) == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(unit_norms(w), np.sqrt((w.astype(np.float64) ** 2).sum(0)))
    again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(again, GroupLasso) and again.get_config() == reg.get_config()
    with pytest.raises(ValueError, match="strength"):
        GroupLasso(-1.0)


def _with_dead_units(model, rng, dead):
    """Random weights where the first ``dead[name]`` units of each named layer have zero in-weights and bias."""
    ws = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()]
    index = {id(v): k for k, v in enumerate(model.weights)}
    for layer in model.layers:
        if layer.name in dead:
            ws[index[id(layer.kernel)]][..., : dead[layer.name]] = 0
            ws[index[id(layer.bias)]][: dead[layer.name]] = 0
    return ws


def test_structured_removal_is_exact_for_dead_units(digits):
    """Units with zero incoming weights and bias output relu(0) = 0: removing them (and the matching
    rows of the next layer, through pooling and Flatten) must not change the function."""
    model = cnn(digits.input_shape, 10, filters=(4, 8), dense=16)
    names = [l.name for l in model.layers if type(l) in (keras.layers.Conv2D, keras.layers.Dense)]
    dead = {names[0]: 2, names[1]: 4, names[2]: 8}
    rng = np.random.default_rng(0)
    post = EnsemblePosterior(model, [_with_dead_units(model, rng, dead) for _ in range(2)])
    small = compress.prune(post, 0.5, method="structured", data=(digits.x_train[:8], digits.y_train[:8]),
                           epochs=0, finetune_epochs=0)
    assert small.model.count_params() < post.model.count_params()
    rec = small.options["compression"][-1]
    assert rec["units"] == {names[0]: [4, 2], names[1]: [8, 4], names[2]: [16, 8]}
    assert rec["params"] == [post.model.count_params(), small.model.count_params()]
    x = digits.x_test[:50]
    np.testing.assert_allclose(small.sample_probs(x), post.sample_probs(x), atol=1e-5)


def test_structured_pruning_shrinks_the_model_and_its_tflite_file(random_cnn, digits, small_data):
    from tflbayes.converters.graphs.members import build_member
    from tflbayes.converters.tflite import to_tflite

    small = compress.prune(random_cnn, 0.5, method="structured", data=small_data, epochs=1, finetune_epochs=1)
    assert small.model.count_params() < 0.45 * random_cnn.model.count_params()
    sizes = [len(to_tflite(build_member(p, 0), p.model)) for p in (random_cnn, small)]
    assert sizes[1] < 0.6 * sizes[0]
    assert np.all(np.isfinite(small.predict(digits.x_test[:20]).probs))


def test_structured_refuses_layers_it_cannot_follow(digits):
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, groups=1, activation="relu")(inp)
    h = keras.layers.LayerNormalization()(h)
    out = keras.layers.Dense(10)(keras.layers.Flatten()(h))
    post = EnsemblePosterior(keras.Model(inp, out), [keras.Model(inp, out).get_weights()])
    with pytest.raises(InvalidInputError, match="LayerNormalization"):
        compress.prune(post, 0.5, method="structured", data=(digits.x_train[:8], digits.y_train[:8]), epochs=0)


# --------------------------------------------------------------------------- 2:4


def test_two_four_holds_the_pattern_where_it_can(random_cnn):
    post = compress.prune(random_cnn, method="2:4")
    rep = compress.sparsity(post)
    for i in range(post.num_samples):
        for sl in kernel_slots(post.model):
            k = post.members[i][sl.index]
            assert is_m_by_n(k)  # TF-MOT's own check
            cin = sl.shape[-2]
            want = 0.0 if cin < 4 else 0.5  # a 1-channel first conv is padded by TF-MOT: kept whole
            assert rep["layers"][sl.layer] == pytest.approx(want)
    assert post.options["compression"][-1]["method"] == "2:4"


# --------------------------------------------------------------------------- QAT and int8


def test_qat_members_convert_to_int8_with_builtins_only(ensemble, digits, small_data, tmp_path):
    sparse = compress.prune(EnsemblePosterior(ensemble.model, ensemble.members[:2]), 0.5)
    q = compress.quantization_aware(sparse, data=small_data, epochs=1)
    assert isinstance(q, EnsemblePosterior) and q.num_samples == 2
    assert all(type(l).__name__ in ("Flatten", "Dense") for l in q.model.layers)  # no QuantizeWrapper
    assert compress.sparsity(q)["overall"] == pytest.approx(compress.sparsity(sparse)["overall"])
    assert any(not np.array_equal(a, b) for a, b in zip(q.members[0], sparse.members[0]))  # fine-tuned
    b = tb.convert(q, tmp_path / "q8", precision="int8", representative_data=digits.x_train[:200],
                   calibration=(digits.x_test[:100], digits.y_test[:100]))
    ops = {op for f in b.files for op in op_names((b.path / f).read_bytes())}
    assert not any(op.startswith("CUSTOM") for op in ops)
    assert b.manifest["verification"]["passed"] is True
    acc = np.mean(b.predict(digits.x_test[:100]).label == digits.y_test[:100])
    assert acc > 0.85


def test_qat_of_a_variational_posterior_changes_only_the_means(variational, small_data):
    q = compress.quantization_aware(variational, data=small_data, epochs=1)
    assert isinstance(q, StochasticPosterior)
    before, after = variational.model.get_weights(), q.model.get_weights()
    for sl in kernel_slots(q.model):
        np.testing.assert_array_equal(after[sl.rho], before[sl.rho])
    assert any(not np.array_equal(after[sl.index], before[sl.index]) for sl in kernel_slots(q.model))


# --------------------------------------------------------------------------- LiteRT's sparse format


def test_litert_sparse_members_are_smaller_and_equal(ensemble, digits):
    from ai_edge_litert.interpreter import Interpreter

    from tflbayes.converters.graphs.members import build_member
    from tflbayes.converters.tflite import to_tflite

    post = compress.prune(ensemble, 0.9)
    dense = to_tflite(build_member(post, 0), post.model)
    sparse = compress.sparse_member_tflite(post, 0)
    assert "DENSIFY" in op_names(sparse) or len(sparse) < len(dense)
    assert len(sparse) < 0.5 * len(dense)
    x = digits.x_test[:1]
    a, b = (Interpreter(model_content=c).get_signature_runner()(x=x)["logits"] for c in (dense, sparse))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_tflbayes_errors_are_value_errors():
    assert issubclass(InvalidInputError, ValueError) and issubclass(InvalidInputError, TflbayesError)
