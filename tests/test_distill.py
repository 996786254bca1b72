"""tb.distill: BDK, GPED and EnD² students of a deep ensemble on digits; losses, posteriors, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

import tflbayes as tb
from tflbayes._keras import keras, tf
from tflbayes.architectures import mlp
from tflbayes.distill import auxiliary_inputs, default_student, distill, perturb, widen
from tflbayes.distill import losses as L
from tflbayes.errors import InvalidInputError, TflbayesError
from tflbayes.metrics.quality import nll, ood_auroc
from tflbayes.posterior import EnsemblePosterior
from tflbayes.posterior.dirichlet import DirichletPosterior, sample_dirichlet
from tflbayes.posterior.distilled import DistilledPosterior
from tflbayes.uncertainty import dirichlet_decompose

EPOCHS = 20  # teacher members and students alike


# -- fixtures: one teacher for the module (conftest's 3-member / 10-epoch ensemble is weaker) -----
@pytest.fixture(scope="module")
def ds(digits):
    return digits


@pytest.fixture(scope="module")
def build(ds):
    return lambda: mlp(ds.input_shape, ds.num_classes)


@pytest.fixture(scope="module")
def teacher(ds, build):
    return tb.fit(build, (ds.x_train, ds.y_train), method="deep_ensemble", members=4, epochs=EPOCHS, verbose=0)


@pytest.fixture(scope="module")
def end2(teacher, ds):
    return distill(teacher, ds.x_train, method="end2", epochs=15)


@pytest.fixture(scope="module")
def gped(teacher, ds):
    return distill(teacher, ds.x_train, method="gped", epochs=EPOCHS)


# -- the statistical properties ------------------------------------------------------------------
def test_end2_epistemic_ranks_noise_above_test_inputs(end2, ds):
    assert isinstance(end2, DirichletPosterior) and end2.kind == "dirichlet"
    x_ood = tb.data.ood(ds, "noise")
    pred_in, pred_ood = end2.predict(ds.x_test), end2.predict(x_ood)
    assert ood_auroc(pred_in.epistemic, pred_ood.epistemic) > 0.8
    assert np.mean(pred_in.label == ds.y_test) > 0.9


def test_end2_predict_is_the_closed_form_and_samples_are_dirichlet(end2, ds):
    x = ds.x_test[:50]
    alpha = end2.alpha(x)
    pred = end2.predict(x)
    np.testing.assert_allclose(pred.probs, alpha / alpha.sum(-1, keepdims=True))
    for got, ref in zip((pred.total, pred.aleatoric, pred.epistemic), dirichlet_decompose(alpha)):
        np.testing.assert_allclose(got, ref)
    s = end2.sample_probs(x[:5], num_samples=4000, seed=0)
    assert s.shape == (4000, 5, 10)
    np.testing.assert_allclose(s.sum(-1), 1.0, atol=1e-9)
    a0 = alpha[:5].sum(-1, keepdims=True)
    mean = alpha[:5] / a0
    se = np.sqrt(mean * (1 - mean) / (a0 + 1) / len(s))  # sd of the Dirichlet marginal / sqrt(S)
    assert np.all(np.abs(s.mean(0) - mean) <= 5 * se + 1e-9)


def test_bdk_student_nll_beats_a_single_network(teacher, ds):
    """A single network trained on labels = each teacher member (same architecture, same training):
    the BDK student's test NLL beats their mean, i.e. what one such network gets on average."""
    student = distill(teacher, ds.x_train, method="bdk", epochs=30)
    assert isinstance(student, DistilledPosterior) and student.method == "bdk"
    singles = [nll(EnsemblePosterior(teacher.model, [w]).predict(ds.x_test).probs, ds.y_test)
               for w in teacher.members]
    pred = student.predict(ds.x_test)
    assert nll(pred.probs, ds.y_test) < np.mean(singles)
    # BDK has no epistemic (or aleatoric) part: it is reported as missing, not invented
    assert pred.aleatoric is None and pred.epistemic is None
    np.testing.assert_allclose(pred.total, tb.uncertainty.entropy(pred.probs))
    assert student.sample_probs(ds.x_test[:3]).shape == (1, 3, 10)


def test_gped_expected_entropy_ranks_like_the_teachers(gped, teacher, ds):
    pred, ref = gped.predict(ds.x_test), teacher.predict(ds.x_test)
    rho = spearmanr(pred.aleatoric, ref.aleatoric).correlation
    assert rho > 0.8, rho
    np.testing.assert_allclose(pred.epistemic, np.maximum(pred.total - pred.aleatoric, 0.0))
    assert np.all((pred.aleatoric >= 0) & (pred.aleatoric <= np.log(10) + 1e-9))


def test_gped_mutual_information_head(teacher, ds):
    student = distill(teacher, ds.x_train[:500], method="gped", epochs=2,
                      expectations=["predictive", "expected_entropy", "mutual_information"])
    assert student.model.output_shape[-1] == 12
    out = student.outputs(ds.x_test[:7])
    pred = student.predict(ds.x_test[:7])
    np.testing.assert_allclose(pred.epistemic, out["mutual_information"])
    np.testing.assert_allclose(pred.aleatoric, out["expected_entropy"])


# -- persistence -----------------------------------------------------------------------------------
def test_dirichlet_posterior_save_load_roundtrip(end2, ds, tmp_path):
    end2.save(tmp_path / "end2")
    back = tb.load(tmp_path / "end2")
    assert isinstance(back, DirichletPosterior)
    assert back.class_names == end2.class_names and back.method == "end2"
    assert back.options == end2.options
    np.testing.assert_array_equal(back.alpha(ds.x_test[:20]), end2.alpha(ds.x_test[:20]))
    a, b = end2.predict(ds.x_test[:20]), back.predict(ds.x_test[:20])
    np.testing.assert_array_equal(a.epistemic, b.epistemic)


def test_distilled_posterior_save_load_roundtrip(gped, ds, tmp_path):
    gped.save(tmp_path / "gped")
    back = tb.load(tmp_path / "gped")
    assert isinstance(back, DistilledPosterior) and back.expectations == gped.expectations
    np.testing.assert_array_equal(back.predict(ds.x_test[:20]).aleatoric, gped.predict(ds.x_test[:20]).aleatoric)


# -- LiteRT graphs of BDK / GPED students ------------------------------------------------------------
def test_gped_graph_matches_predict(gped, ds):
    from ai_edge_litert.interpreter import Interpreter

    from tflbayes.converters.tflite import op_names, to_tflite
    from tflbayes.distill import build_gped

    blob = to_tflite(build_gped(gped, batch_size=8), gped.model)
    assert not [o for o in op_names(blob) if o.startswith("CUSTOM")]
    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    x = ds.x_test[:8]
    out = it.get_signature_runner()(x=x)
    ref = gped.predict(x)
    assert set(out) == {"probs", "total", "aleatoric", "epistemic"}
    np.testing.assert_allclose(out["probs"], ref.probs, atol=1e-5)
    for name in ("total", "aleatoric", "epistemic"):
        assert np.max(np.abs(out[name] - getattr(ref, name))) <= 1e-4


# -- the losses against hand-computed references -----------------------------------------------------
def test_dirichlet_kl_matches_scipy_and_is_zero_at_equality():
    rng = np.random.default_rng(0)
    a, b = rng.gamma(2.0, 3.0, (6, 5)) + 0.05, rng.gamma(2.0, 3.0, (6, 5)) + 0.05
    got = L.dirichlet_kl(tf.constant(a), tf.constant(b)).numpy()
    np.testing.assert_allclose(got, L.dirichlet_kl_np(a, b), rtol=1e-8)
    assert np.all(got > 0)
    np.testing.assert_allclose(L.dirichlet_kl(tf.constant(a), tf.constant(a)).numpy(), 0.0, atol=1e-9)
    # Monte Carlo: KL = E_{p~Dir(a)}[log Dir(p|a) - log Dir(p|b)]
    from scipy.stats import dirichlet

    p = rng.dirichlet(a[0], size=20000)
    mc = np.mean([dirichlet.logpdf(q, a[0]) - dirichlet.logpdf(q, b[0]) for q in p[:4000]])
    assert abs(mc - got[0]) < 0.1 * max(1.0, got[0])


def test_proxy_dirichlet_target():
    rng = np.random.default_rng(1)
    samples = rng.dirichlet(np.ones(4) * 2, size=(3, 7)).astype(np.float32)  # [B=3, S=7, C=4]
    got = L.proxy_dirichlet(tf.constant(samples), prior=0.1, max_precision=1e3).numpy()
    ref = L.proxy_dirichlet_np(samples, prior=0.1, max_precision=1e3)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # by hand for the first input: Minka's precision estimate, mean preserved, prior added
    s = samples[0].astype(np.float64)
    m = s.mean(0)
    b0 = 3 / (2 * np.sum(m * (np.log(m) - np.log(s).mean(0))))
    np.testing.assert_allclose(ref[0], m * b0 + 0.1, rtol=1e-6)
    # members that agree: precision capped
    same = np.repeat(samples[:, :1], 7, axis=1)
    np.testing.assert_allclose(L.proxy_dirichlet_np(same, prior=0.0, max_precision=1e3).sum(-1), 1e3, rtol=1e-6)


def test_dirichlet_nll_matches_scipy_at_temperature_one():
    from scipy.stats import dirichlet

    rng = np.random.default_rng(2)
    z = rng.normal(0, 1, (2, 3)).astype(np.float32)
    samples = rng.dirichlet([2.0, 3.0, 4.0], size=(2, 5)).astype(np.float32)
    loss = L.DirichletNLL(5, 3, teacher_smoothing=1e-12)
    got = loss.call(tf.constant(samples.reshape(2, 15)), tf.constant(z)).numpy()
    alpha = np.exp(z.astype(np.float64))
    ref = [-np.mean([dirichlet.logpdf(p / p.sum(), a) for p in s.astype(np.float64)]) for s, a in zip(samples, alpha)]
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_temperature_anneals_to_one():
    assert L.temperature_at(0, 10, 2.5, 0.5) == 2.5
    assert L.temperature_at(5, 10, 2.5, 0.5) == 1.0
    assert L.temperature_at(9, 10, 2.5, 0.5) == 1.0
    assert 1.0 < L.temperature_at(2, 10, 2.5, 0.5) < 2.5


def test_sample_dirichlet_is_stable_for_tiny_concentrations():
    s = sample_dirichlet(np.full((2, 10), 1e-3), 500, np.random.default_rng(0))
    assert np.all(np.isfinite(s)) and np.allclose(s.sum(-1), 1.0)
    assert np.mean(s.max(-1) > 0.99) > 0.9  # tiny alpha: draws sit on the simplex corners


# -- transfer data and students ----------------------------------------------------------------------
def test_auxiliary_inputs_and_perturbation(ds):
    x = ds.x_train[:100]
    aux = auxiliary_inputs(x, num=90, seed=0)
    assert aux.shape == (90, 8, 8, 1) and aux.dtype == np.float32
    assert aux.min() >= x.min() and aux.max() <= x.max()
    assert not np.allclose(aux[:30], auxiliary_inputs(x, num=90, seed=1)[:30])
    flat = auxiliary_inputs(x.reshape(100, -1), num=20)  # not images: no rotations
    assert flat.shape == (20, 64)
    with pytest.raises(InvalidInputError, match="kinds"):
        auxiliary_inputs(x, kinds=["blur"])
    p = perturb(x, np.random.default_rng(0), noise_std=0.05, shift=1)
    assert p.shape == x.shape and 0 < np.abs(p - x).mean() < 0.3


def test_default_student_strips_stochastic_layers(ds, mc_dropout, variational):
    post = mc_dropout
    student = default_student(post)
    names = [type(l).__name__ for l in student.layers]
    assert "MCDropout" not in names and "Dropout" in names
    assert [l.name for l in student.layers] == [l.name for l in post.model.layers]
    assert student.output_shape == post.model.output_shape
    kinds = {type(l).__name__ for l in default_student(variational).layers}
    assert not {"VariationalDense", "VariationalConv2D"} & kinds and "Dense" in kinds
    # and a stochastic teacher distills
    st = distill(post, ds.x_train[:200], method="end2", epochs=1, num_samples=8)
    assert st.options["teacher"] == {"kind": "stochastic", "method": "mc_dropout", "num_samples": 8}


def test_widen_scales_hidden_layers_only(build):
    m = widen(build(), 0.5)
    assert [l.units for l in m.layers if isinstance(l, keras.layers.Dense)] == [64, 32, 10]


# -- bad input -------------------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_mismatch(teacher, ds, build, gped):
    x = ds.x_train[:50]
    with pytest.raises(InvalidInputError, match="teacher"):
        distill(teacher.model, x)
    with pytest.raises(InvalidInputError, match="distilled 'gped' student"):
        distill(gped, x, method="bdk")
    one = EnsemblePosterior(teacher.model, teacher.members[:1])
    for method in ("end2", "gped"):
        with pytest.raises(InvalidInputError, match="at least 2"):
            distill(one, x, method=method)
    with pytest.raises(InvalidInputError, match="transfer set is empty"):
        distill(teacher, np.zeros((0, 8, 8, 1), np.float32))
    with pytest.raises(InvalidInputError, match="transfer set is empty"):
        distill(teacher, [])
    with pytest.raises(InvalidInputError, match="x_transfer"):
        distill(teacher, np.zeros((5, 7, 7, 1), np.float32))
    with pytest.raises(InvalidInputError, match="outputs 7 values but the teacher has 10 classes"):
        distill(teacher, x, build_student=lambda: mlp((8, 8, 1), 7))
    with pytest.raises(InvalidInputError, match=r"inputs of shape \[64\]"):
        distill(teacher, x, build_student=lambda: keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)]))
    with pytest.raises(InvalidInputError, match="method"):
        distill(teacher, x, method="dark_knowledge")
    with pytest.raises(InvalidInputError, match="Unknown option.*temperature"):
        distill(teacher, x, method="bdk", temperature=2.0)
    with pytest.raises(InvalidInputError, match="loss"):
        distill(teacher, x, method="end2", loss="kl")
    with pytest.raises(InvalidInputError, match="expectations"):
        distill(teacher, x, method="gped", expectations=["expected_entropy"])
    with pytest.raises(InvalidInputError, match="budgets"):
        distill(teacher, x, budgets=[0.5])
    with pytest.raises(InvalidInputError, match="x_aux"):
        distill(teacher, x, x_aux="noise")
    assert issubclass(InvalidInputError, TflbayesError) and issubclass(InvalidInputError, ValueError)


def test_tb_distill_calls_distill_even_where_the_subpackage_was_imported(teacher):
    import tflbayes.distill as package

    assert callable(package) and package.distill is distill
    assert callable(tb.distill)  # the function (lazy name) or this package: both call distill
    with pytest.raises(InvalidInputError, match="teacher"):
        package(teacher.model, np.zeros((3, 8, 8, 1), np.float32))


@pytest.mark.slow
def test_prune_search_frontier(teacher, ds, tmp_path):
    res = distill(teacher, ds.x_train, method="end2", search="prune", budgets=[0.5, 0.2], epochs=6,
                  finetune_epochs=2, validation_data=(ds.x_test, ds.y_test), x_ood=tb.data.ood(ds, "noise"),
                  plot=tmp_path / "frontier.png", latency_rounds=30)
    names = {p.name for p in res.points}
    assert {"large", "prune@0.5", "prune@0.2", "width@0.5", "width@0.2"} == names
    by = {p.name: p for p in res.points}
    assert by["prune@0.2"].params < 0.3 * by["large"].params
    assert by["prune@0.2"].gzip_bytes < by["large"].gzip_bytes
    assert by["width@0.2"].latency_us > 0 and by["width@0.2"].tflite_bytes < by["large"].tflite_bytes
    assert res.frontier("gzip_bytes") and res.plot_path.is_file() and res.plot_path.stat().st_size > 1000
    assert isinstance(res.students["prune@0.5"], DirichletPosterior)
