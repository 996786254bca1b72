"""Tests of tflbayes.methods.sampling: SGLD, SGHMC, cyclical SG-MCMC, snapshot ensembles, subspace inference.

The exactness tests compare samples with problems whose posterior is known: Bayesian linear
regression (conjugate Gaussian: exact mean and covariance) and a 2-parameter logistic regression
(posterior predictive by quadrature on a grid). They use fixed seeds; their margins were checked
over several seeds (see the comments). The full matrix (every sampler × both problems, the
temperature for SG-MCMC, TFP's NUTS as an independent reference, digits against a deep ensemble)
is in ``test_sampling_exact.py`` under ``@pytest.mark.slow``.
"""
from __future__ import annotations

import inspect
import json
import math
import textwrap

import numpy as np

from conftest import run_result_script
import pytest
from scipy.special import expit

import tflbayes as tb
import tflbayes.methods.sampling as sampling
from tflbayes._keras import keras, tf
from tflbayes.errors import DivergenceError, InvalidInputError, TflbayesError
from tflbayes.methods.registry import METHODS, TrainConfig
from tflbayes.methods.sampling import (
    SGHMC,
    SGLD,
    CyclicalCosine,
    GaussianNLL,
    PolynomialStepSize,
    SampleCollector,
    SamplingPhase,
)
from tflbayes.methods.sampling.methods import cyclical_steps

SAMPLING_METHODS = ("sgld", "sghmc", "csgmcmc", "snapshot", "subspace")


# --------------------------------------------------------------------------- problems with exact answers


class PadZero(keras.layers.Layer):
    """``z -> [0, z]``: a one-logit binary classifier as 2-class softmax logits."""

    def call(self, z):
        return tf.concat([tf.zeros_like(z), z], axis=-1)


def linreg_problem(n=64, seed=0, prior_std=1.0, noise_std=1.0, data_noise=None):
    """``y = x·(1, -2) + 0.5 + ε``, ``x ~ N(0, I₂)``, ``ε ~ N(0, data_noise²)`` (default: noise_std);
    the exact posterior of (w₁, w₂, b) under the prior N(0, prior_std² I) and the likelihood
    N(y; x·w + b, noise_std²)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    eps = (noise_std if data_noise is None else data_noise) * rng.normal(size=n)
    y = (x @ np.array([1.0, -2.0]) + 0.5 + eps).astype(np.float32)
    phi = np.c_[x, np.ones(n)].astype(np.float64)
    cov = np.linalg.inv(phi.T @ phi / noise_std ** 2 + np.eye(3) / prior_std ** 2)
    mean = cov @ phi.T @ y / noise_std ** 2
    return x, y, mean, cov


def build_linear():
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


def linear_weights(post):
    """``[S, 3]``: (w₁, w₂, b) of each member."""
    return np.array([np.r_[m[0].ravel(), m[1]] for m in post.members], dtype=np.float64)


def logistic_problem(n=32, seed=1):
    """``p(y=1|x) = σ(w·x)``, 2 weights, no bias, ``x ~ N(0, 3² I₂)``, prior N(0, I).

    Returns x, y, test inputs ``xt`` (a 9×9 grid over [-6, 6]², well outside the data in the
    corners), and the exact posterior predictive ``p(y=1 | xt, D)`` by quadrature on a 601² grid
    (spacing 0.01 against a posterior std of ~0.24), with the posterior mean and std.
    """
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.normal(size=(n, 2))).astype(np.float32)
    y = (rng.uniform(size=n) < expit(x @ np.array([0.5, -0.5]))).astype(np.int64)
    g = np.linspace(-3, 3, 601)
    w = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    z = x.astype(np.float64) @ w.T
    logp = (y[:, None] * z - np.logaddexp(0, z)).sum(0) - 0.5 * (w ** 2).sum(1)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    gx = np.linspace(-6, 6, 9)
    xt = np.stack(np.meshgrid(gx, gx, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    exact = expit(xt.astype(np.float64) @ w.T) @ p
    mean = p @ w
    std = np.sqrt(p @ (w - mean) ** 2)
    return x, y, xt, exact, mean, std


def build_logistic():
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False), PadZero()])


def train(method, build, x, y, epochs, batch_size, seed=0, verbose=0, callbacks=(), strategy=None, **options):
    """A registered method's train function with its defaults (like tb.fit, but float targets allowed)."""
    spec = METHODS[method]
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, verbose=verbose, seed=seed,
                      callbacks=list(callbacks), strategy=strategy)
    return spec.train(build, x, y, cfg, **{**spec.defaults, **options})


@pytest.fixture(scope="module")
def small_digits(digits):
    """256 digits and a tiny MLP builder: enough to run every method in about a second."""
    from tflbayes.architectures import mlp

    return digits.x_train[:256], digits.y_train[:256], lambda: mlp(digits.input_shape, 10, hidden=(16,))


# --------------------------------------------------------------------------- registry


def test_methods_are_registered_with_plain_defaults():
    for name in SAMPLING_METHODS:
        spec = METHODS[name]
        assert spec.sampling is (name != "snapshot")
        json.dumps(spec.defaults)
        params = inspect.signature(spec.train).parameters
        for key, value in spec.defaults.items():  # the registry and the signature agree
            assert params[key].default == value, (name, key)
        assert spec.train.__doc__ and "Options:" in spec.train.__doc__
        assert any(year in spec.train.__doc__ for year in ("2011", "2014", "2017", "2019", "2020"))


def test_public_surface():
    assert callable(sampling.diagnostics)
    for name in sampling.__all__:
        assert hasattr(sampling, name), name


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "method,options,named",
    [
        ("sgld", {"step_size": -0.1}, "step_size"),
        ("sgld", {"step_size": 0.0}, "step_size"),
        ("sghmc", {"burn_in": 80}, "burn_in"),  # 10 epochs x 8 steps = 80 steps in all
        ("sgld", {"burn_in": -1}, "burn_in"),
        ("sgld", {"num_samples": 0}, "num_samples"),
        ("sgld", {"num_samples": 200}, "num_samples"),  # more than the steps after burn-in
        ("sghmc", {"temperature": 0.0}, "temperature"),
        ("sgld", {"temperature": -1.0}, "temperature"),
        ("sgld", {"thinning": 0}, "thinning"),
        ("sgld", {"thinning": 50}, "thinning"),  # burn_in + thinning x num_samples > total
        ("sgld", {"prior_std": 0}, "prior_std"),
        ("sgld", {"likelihood": "poisson"}, "likelihood"),
        ("sgld", {"likelihood": "regression", "noise_std": -1.0}, "noise_std"),
        ("sgld", {"schedule": "linear"}, "schedule"),
        ("sghmc", {"friction": 0.0}, "friction"),
        ("sghmc", {"friction": 1.5}, "friction"),
        ("csgmcmc", {"cycles": 0}, "cycles"),
        ("csgmcmc", {"exploration": 1.0}, "exploration"),
        ("csgmcmc", {"sampler": "nuts"}, "sampler"),
        ("csgmcmc", {"num_samples": 3, "cycles": 5}, "num_samples"),
        ("csgmcmc", {"step_size": -1.0}, "step_size"),
        ("snapshot", {"cycles": 0}, "cycles"),
        ("snapshot", {"momentum": 1.0}, "momentum"),
        ("subspace", {"rank": 20, "iterates": 20}, "rank"),
        ("subspace", {"subspace": "svd"}, "subspace"),
        ("subspace", {"sampler": "hmc"}, "sampler"),
        ("subspace", {"temperature": 0}, "temperature"),
        ("subspace", {"num_samples": 0}, "num_samples"),
        ("subspace", {"iterates": 500}, "iterates"),
    ],
)
def test_invalid_hyper_parameters_raise_naming_the_option(small_digits, method, options, named):
    x, y, build = small_digits
    with pytest.raises(ValueError) as info:
        train(method, build, x, y, epochs=10, batch_size=32, **options)
    assert isinstance(info.value, InvalidInputError)
    assert f"`{named}`" in str(info.value), str(info.value)


def test_invalid_option_through_tb_fit(small_digits):
    x, y, build = small_digits
    with pytest.raises(InvalidInputError, match="`temperature`"):
        tb.fit(build, (x, y), method="sgld", temperature=0.0, epochs=2, verbose=0)
    with pytest.raises(InvalidInputError, match="friction"):  # unknown option lists the valid ones
        tb.fit(build, (x, y), method="sgld", friction=0.1, epochs=2, verbose=0)


# --------------------------------------------------------------------------- the samplers' maths


def _one_update(opt, theta, grad):
    var = tf.Variable(theta)
    opt.apply_gradients([(tf.constant(grad), var)])
    return var.numpy()


def test_sgld_update_is_the_scaled_langevin_step():
    n, alpha, sigma = 50, 0.1, 2.0
    theta = np.linspace(-1, 1, 6).astype(np.float32)
    grad = np.linspace(0.5, -0.5, 6).astype(np.float32)
    got = _one_update(SGLD(alpha, data_size=n, prior_std=sigma, temperature=0.0), theta, grad)
    np.testing.assert_allclose(got, theta - alpha * (grad + theta / (n * sigma ** 2)), rtol=1e-6)

    # the noise: N(0, 2 α T / N) per coordinate, independent across variables and seeds
    big = np.zeros(200_000, np.float32)
    for temp in (1.0, 0.25):
        delta = _one_update(SGLD(alpha, data_size=n, prior_std=None, temperature=temp, seed=3), big, big)
        assert abs(delta.std() / math.sqrt(2 * alpha * temp / n) - 1) < 0.01
        assert abs(delta.mean()) < 5 * delta.std() / math.sqrt(big.size)
    a = _one_update(SGLD(alpha, data_size=n, prior_std=None, seed=3), big, big)
    b = _one_update(SGLD(alpha, data_size=n, prior_std=None, seed=3), big, big)
    c = _one_update(SGLD(alpha, data_size=n, prior_std=None, seed=4), big, big)
    np.testing.assert_array_equal(a, b)
    assert abs(np.corrcoef(a, c)[0, 1]) < 0.01


def test_sghmc_update_is_chen_et_al_eq_15():
    n, alpha, sigma, a = 40, 0.05, 1.5, 0.2
    theta = np.linspace(-1, 1, 5).astype(np.float32)
    grad = np.linspace(1.0, -1.0, 5).astype(np.float32)
    opt = SGHMC(alpha, data_size=n, prior_std=sigma, temperature=0.0, friction=a)
    var = tf.Variable(theta)
    v = np.zeros_like(theta)
    th = theta.astype(np.float64)
    for _ in range(3):
        opt.apply_gradients([(tf.constant(grad), var)])
        v = (1 - a) * v - alpha * (grad + th / (n * sigma ** 2))
        th = th + v
    np.testing.assert_allclose(var.numpy(), th, rtol=1e-5)
    big = np.zeros(200_000, np.float32)
    delta = _one_update(SGHMC(alpha, data_size=n, prior_std=None, friction=a, seed=1), big, big)
    assert abs(delta.std() / math.sqrt(2 * a * alpha / n) - 1) < 0.01


def test_likelihood_is_scaled_to_the_training_set_size():
    """T = 0 turns the samplers into SGD on U(θ) = Σ_i -log p(y_i|x_i,θ) + ||θ||²/2σ²: they must
    reach its minimiser, the exact posterior mean (it depends on N through the prior's weight)."""
    x, y, mean, _ = linreg_problem(n=16, prior_std=0.5)
    for opt in (SGLD(0.2, data_size=16, prior_std=0.5, temperature=0.0),
                SGHMC(0.05, data_size=16, prior_std=0.5, temperature=0.0, friction=0.3)):
        keras.utils.set_random_seed(0)
        model = build_linear()
        model.compile(opt, loss=GaussianNLL(1.0))
        model.fit(x, y, batch_size=16, epochs=400, verbose=0)
        got = np.r_[model.get_weights()[0].ravel(), model.get_weights()[1]]
        np.testing.assert_allclose(got, mean, atol=2e-4)


def test_configs_round_trip():
    for obj in (SGLD(0.1, data_size=10, prior_std=0.5, temperature=0.3, seed=7),
                SGHMC(CyclicalCosine(0.1, 50), data_size=10, friction=0.2, noise_schedule=SamplingPhase(50, 0.8)),
                SGLD(PolynomialStepSize(0.1, 100, 0.55), data_size=3, prior_std=None)):
        again = type(obj).from_config(obj.get_config())
        assert again.get_config() == obj.get_config()
        named = keras.optimizers.deserialize(keras.optimizers.serialize(obj))
        assert type(named) is type(obj) and named.get_config() == obj.get_config()
    for sched in (CyclicalCosine(0.2, 10), SamplingPhase(10, 0.8), PolynomialStepSize(0.1, 100, 0.55)):
        again = type(sched).from_config(sched.get_config())
        assert [float(again(t)) for t in range(25)] == [float(sched(t)) for t in range(25)]
    loss = GaussianNLL(2.0)
    assert GaussianNLL.from_config(loss.get_config()).noise_std == 2.0
    assert keras.losses.deserialize(keras.losses.serialize(loss)).noise_std == 2.0


def test_schedules():
    cos = CyclicalCosine(0.2, 10)
    np.testing.assert_allclose([float(cos(t)) for t in (0, 5, 9, 10)],
                               [0.2, 0.1, 0.1 * (math.cos(0.9 * math.pi) + 1), 0.2], rtol=1e-6)
    gate = SamplingPhase(10, 0.8)
    assert [int(gate(t)) for t in range(12)] == [0] * 8 + [1, 1] + [0, 0]
    poly = PolynomialStepSize(0.1, 100, 0.55)
    assert float(poly(0)) == pytest.approx(0.1) and float(poly(100)) == pytest.approx(0.1 * 2 ** -0.55)
    for bad in (lambda: CyclicalCosine(-1, 10), lambda: SamplingPhase(10, 1.0), lambda: PolynomialStepSize(1, 0)):
        with pytest.raises(ValueError):
            bad()


def test_cyclical_collection_steps_lie_in_the_sampling_phase():
    steps, thin = cyclical_steps(num_samples=10, cycles=5, cycle_length=100, first_sampling=80)
    assert thin == 10 and len(steps) == 10
    for s in steps:
        pos = (s - 1) % 100  # the update that produced the sample
        assert pos >= 80
    assert steps[1::2] == [100, 200, 300, 400, 500]  # the last sample of each cycle at its end
    with pytest.raises(InvalidInputError, match="num_samples"):
        cyclical_steps(num_samples=50, cycles=2, cycle_length=100, first_sampling=90, thinning=5)


# --------------------------------------------------------------------------- exactness (fast versions)


def test_sgld_matches_the_exact_linear_regression_posterior():
    """Default step size, mini-batches of 4 (N = 64), 16,000 steps, 1,560 samples.

    The targets have little noise (0.1) while the likelihood assumes noise_std = 1: the posterior
    is still the exact conjugate one, and the mini-batch gradient noise is small, so 16 steps per
    epoch keep the run short. (``test_sampling_exact.py`` runs the well-specified case, B = N/2.)
    Training seeds 0-5 gave relative errors <= 2.5 % (mean) and <= 5.2 % (std); 10 % is required."""
    x, y, mean, cov = linreg_problem(data_noise=0.1)
    post = train("sgld", build_linear, x, y, epochs=1000, batch_size=4, likelihood="regression",
                 num_samples=1560, burn_in=400, thinning=10, steps_per_execution=16)
    w = linear_weights(post)
    assert post.num_samples == 1560 and post.options["chains"] == [1560]
    assert np.all(np.abs(w.mean(0) - mean) / np.abs(mean) < 0.10), (w.mean(0), mean)
    assert np.all(np.abs(w.std(0) / np.sqrt(np.diag(cov)) - 1) < 0.10), (w.std(0), np.sqrt(np.diag(cov)))
    # the correlations too (the exact ones are small but not zero)
    np.testing.assert_allclose(np.cov(w.T), cov, atol=0.2 * np.sqrt(np.outer(np.diag(cov), np.diag(cov))).max())


def test_subspace_of_full_rank_is_exact_and_temperature_scales_the_spread():
    """With rank = number of weights the subspace posterior is the posterior; elliptical slice
    sampling needs no step size. T = 0.25 must halve the std (the posterior is Gaussian)."""
    x, y, mean, cov = linreg_problem()
    stds = {}
    for temp in (1.0, 0.25):
        post = train("subspace", build_linear, x, y, epochs=20, batch_size=32, likelihood="regression", rank=3,
                     iterates=10, num_samples=1000, thinning=3, temperature=temp)
        w = linear_weights(post)
        stds[temp] = w.std(0)
        assert np.all(np.abs(w.mean(0) - mean) / np.abs(mean) < 0.10)
    assert np.all(np.abs(stds[1.0] / np.sqrt(np.diag(cov)) - 1) < 0.10), stds[1.0]
    assert np.all(np.abs(stds[0.25] / stds[1.0] / 0.5 - 1) < 0.10), stds

    # the posterior predictive N(φ(x*)ᵀμ, φ(x*)ᵀΣφ(x*) + noise_std²) at T = 0.25: Σ -> Σ/4
    xs = np.array([[0.0, 0.0], [2.0, -1.0], [-3.0, 3.0]], np.float32)
    phi = np.c_[xs, np.ones(3)]
    mean_p, std_p = sampling.regression_predictive(post, xs)
    np.testing.assert_allclose(mean_p[:, 0], phi @ mean, rtol=0.05)
    np.testing.assert_allclose(std_p[:, 0], np.sqrt(np.einsum("ij,jk,ik->i", phi, cov / 4, phi) + 1.0), rtol=0.02)


def test_random_subspace_of_full_rank_matches_the_logistic_predictive():
    x, y, xt, exact, _, _ = logistic_problem()
    post = train("subspace", build_logistic, x, y, epochs=20, batch_size=16, rank=2, subspace="random",
                 iterates=10, num_samples=1000, thinning=3)
    assert np.abs(post.predict(xt).probs[:, 1] - exact).max() < 0.03
    assert post.predict(xt).epistemic.max() > 0.01  # the corners are uncertain


# --------------------------------------------------------------------------- each method runs and collects


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_each_method_makes_an_ensemble_posterior(small_digits, method):
    x, y, build = small_digits
    opts = {"subspace": {"rank": 2, "iterates": 5, "burn_in": 5, "thinning": 2, "num_samples": 4},
            "csgmcmc": {"cycles": 2, "num_samples": 4}, "snapshot": {"cycles": 3}}.get(method, {"num_samples": 4})
    post = train(method, build, x, y, epochs=6, batch_size=32, **opts)
    assert isinstance(post, tb.EnsemblePosterior) and post.method == method
    assert post.num_samples == (3 if method == "snapshot" else 4)
    json.dumps(post.options)
    members = post.members
    assert not np.allclose(members[0][0], members[-1][0])  # distinct samples
    probs = post.sample_probs(x[:16])
    assert probs.shape == (post.num_samples, 16, 10) and np.all(np.isfinite(probs))


def test_samples_are_taken_at_the_scheduled_steps(small_digits):
    x, y, build = small_digits  # 256 / 32 = 8 steps per epoch, 10 epochs = 80 steps
    post = train("sgld", build, x, y, epochs=10, batch_size=32, num_samples=4, burn_in=40, thinning=10)
    assert (post.options["burn_in"], post.options["thinning"]) == (40, 10)
    col = SampleCollector(sampling.collection_steps(4, 40, 10), total_steps=80)
    assert col.steps == [50, 60, 70, 80]
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(SGLD(0.05, data_size=256), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=10, verbose=0, callbacks=[col])
    assert col.sample_steps == [50, 60, 70, 80] and col.done
    np.testing.assert_array_equal(col.samples[-1][0], model.get_weights()[0])


def test_csgmcmc_explores_without_noise_then_samples(small_digits):
    x, y, build = small_digits
    post = train("csgmcmc", build, x, y, epochs=10, batch_size=32, cycles=2, num_samples=4, exploration=0.5)
    assert post.options["cycle_length"] == 40 and post.options["thinning"] == 10
    # temperature -> no effect in the exploration phase: SGD (no noise) until the gate opens
    opt = SGLD(CyclicalCosine(0.1, 40), data_size=256, prior_std=None, noise_schedule=SamplingPhase(40, 0.5))
    var = tf.Variable(np.zeros(1000, np.float32))
    moved = []
    for _ in range(40):
        before = var.numpy().copy()
        opt.apply_gradients([(tf.zeros(1000), var)])
        moved.append(bool(np.any(var.numpy() != before)))
    assert moved == [False] * 20 + [True] * 20


def test_user_callbacks_run_alongside_and_progress_is_shown(small_digits, capsys):
    x, y, build = small_digits

    class Count(keras.callbacks.Callback):
        batches = epochs = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            Count.epochs += 1

    post = train("sghmc", build, x, y, epochs=3, batch_size=32, num_samples=5, verbose=1, callbacks=[Count()])
    assert (Count.batches, Count.epochs) == (24, 3)
    err = capsys.readouterr().err
    assert "samples 5/5" in err and "step 24/24" in err
    assert post.num_samples == 5


def test_early_stop_by_a_user_callback(small_digits):
    x, y, build = small_digits

    class StopAt(keras.callbacks.Callback):
        def __init__(self, step):
            super().__init__()
            self.step, self.seen = step, 0

        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.seen >= self.step:
                self.model.stop_training = True

    with pytest.warns(UserWarning, match="collected 2 of 4"):
        post = train("sgld", build, x, y, epochs=10, batch_size=32, num_samples=4, burn_in=40, thinning=10,
                     callbacks=[StopAt(60)])
    assert post.num_samples == 2
    with pytest.raises(TflbayesError, match="before the first sample"):
        train("sgld", build, x, y, epochs=10, batch_size=32, num_samples=4, burn_in=40, thinning=10,
              callbacks=[StopAt(20)])


def test_divergence_names_the_step_and_keeps_the_samples():
    x, y, _, _ = linreg_problem()
    with pytest.raises(DivergenceError) as info:
        train("sgld", build_linear, x, y, epochs=200, batch_size=32, likelihood="regression", step_size=5.0,
              num_samples=100, burn_in=0, thinning=2)
    err = info.value
    msg = str(err)
    assert isinstance(err, TflbayesError)
    assert "diverged at optimizer step" in msg and "smaller step size" in msg and "step_size=5" in msg
    assert isinstance(err.samples, tb.EnsemblePosterior) and 1 <= err.samples.num_samples < 100
    assert all(np.all(np.isfinite(w)) for ws in err.samples.members for w in ws)
    with pytest.raises(DivergenceError) as info:  # nothing collected yet: an empty list
        train("sgld", build_linear, x, y, epochs=200, batch_size=32, likelihood="regression", step_size=5.0,
              num_samples=10, burn_in=390, thinning=1)
    assert info.value.samples == []


def test_same_seed_same_samples(small_digits):
    x, y, build = small_digits
    runs = [train("sghmc", build, x, y, epochs=2, batch_size=32, num_samples=3, seed=s) for s in (5, 5, 6)]
    for a, b in zip(runs[0].members, runs[1].members):
        for wa, wb in zip(a, b):
            np.testing.assert_array_equal(wa, wb)
    assert not np.allclose(runs[0].members[0][0], runs[2].members[0][0])


def test_save_load_round_trip(small_digits, tmp_path):
    x, y, build = small_digits
    post = train("csgmcmc", build, x, y, epochs=4, batch_size=32, cycles=2, num_samples=4)
    post.save(tmp_path / "cs")
    again = tb.load(tmp_path / "cs")
    assert again.method == "csgmcmc" and again.options == post.options
    np.testing.assert_allclose(again.sample_probs(x[:8]), post.sample_probs(x[:8]), atol=1e-6)


def test_tb_fit_runs_a_sampling_method(small_digits):
    x, y, build = small_digits
    post = tb.fit(build, (x, y), method="sghmc", epochs=3, batch_size=32, verbose=0, num_samples=3,
                  class_names=[f"d{i}" for i in range(10)])
    assert post.num_samples == 3 and post.class_names[0] == "d0"


# --------------------------------------------------------------------------- diagnostics


def test_merged_chains_give_rhat_and_ess():
    x, y, _, _ = linreg_problem()
    xh, yh, _, _ = linreg_problem(seed=1)  # a held-out batch
    opts = dict(likelihood="regression", num_samples=30, burn_in=50, thinning=5, steps_per_execution=2)
    chains = [train("sghmc", build_linear, x, y, epochs=100, batch_size=32, seed=s, **opts) for s in range(2)]
    merged = tb.merge(chains)
    assert merged.options["chains"] == [30, 30]
    d = sampling.diagnostics(merged, xh, yh)
    assert d["chains"] == 2 and d["samples_per_chain"] == 30
    assert abs(d["rhat"] - 1) < 0.1, d
    assert 10 < d["ess"] <= 2 * 60, d
    assert sampling.diagnostics(chains, xh, yh) == pytest.approx(d)
    single = sampling.diagnostics(chains[0], xh, yh)  # one chain: split-R-hat
    assert single["chains"] == 1 and abs(single["rhat"] - 1) < 0.2

    # a chain that samples another posterior (shuffled targets): R-hat flags it
    lost = train("sghmc", build_linear, x, np.random.default_rng(0).permutation(y), epochs=100, batch_size=32,
                 seed=9, **opts)
    assert sampling.diagnostics([chains[0], lost], xh, yh)["rhat"] > 1.5


def test_ess_rhat_against_independent_draws():
    rng = np.random.default_rng(0)
    d = sampling.ess_rhat(rng.normal(size=(4, 500)))
    assert abs(d["rhat"] - 1) < 0.02 and 1500 < d["ess"] < 2600
    sticky = np.cumsum(rng.normal(size=(4, 500)), axis=1)  # random walks: no mixing
    assert sampling.ess_rhat(sticky)["ess"] < 100 and sampling.ess_rhat(sticky)["rhat"] > 1.1


def test_regression_targets_are_checked():
    x, y, _, _ = linreg_problem()
    assert sampling.check_targets(y, 64).dtype == np.float32
    for bad, match in ((y[:10], "64 regression targets"), (np.r_[y[:-1], np.nan], "NaN"), (["a"] * 64, "numbers")):
        with pytest.raises(InvalidInputError, match=match):
            sampling.check_targets(bad, 64)
    with pytest.raises(InvalidInputError, match="NaN"):
        train("sgld", build_linear, x, np.r_[y[:-1], np.inf], epochs=2, batch_size=32, likelihood="regression")


def test_diagnostics_bad_input(small_digits, untrained_ensemble):
    x, y, _ = small_digits
    with pytest.raises(InvalidInputError, match="posterior_or_chains"):
        sampling.diagnostics("runs/chain0", x, y)
    with pytest.raises(InvalidInputError, match="at least 2 samples"):
        sampling.diagnostics(tb.EnsemblePosterior(untrained_ensemble.model, untrained_ensemble.members[:1]), x, y)
    with pytest.raises(InvalidInputError, match="shape"):
        sampling.ess_rhat(np.zeros(5))


# --------------------------------------------------------------------------- distribution


_MIRRORED = textwrap.dedent(
    """
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    import tflbayes as tb
    import tflbayes.methods.sampling
    from tflbayes.architectures import mlp

    ds = tb.data.load("digits")
    x, y = ds.x_train[:256], ds.y_train[:256]
    build = lambda: mlp(ds.input_shape, ds.num_classes, hidden=(16,))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": strategy.num_replicas_in_sync}
    runs = {"sgld": {"num_samples": 4}, "csgmcmc": {"cycles": 2, "num_samples": 4, "exploration": 0.5},
            "subspace": {"rank": 1, "iterates": 3, "burn_in": 2, "thinning": 1, "num_samples": 3}}
    for method, opts in runs.items():
        post = tb.fit(build, (x, y), method=method, epochs=2, batch_size=32, verbose=0, strategy=strategy, **opts)
        out[method] = {
            "S": post.num_samples,
            "finite": all(bool(np.all(np.isfinite(w))) for ws in post.members for w in ws),
            "mirrored": isinstance(post.model.weights[0], tf.distribute.DistributedValues),
            "in_sync": all(np.array_equal(v.values[0].numpy(), v.values[1].numpy()) for v in post.model.weights),
        }
        if method == "sgld":  # the same run on one device: equal up to float rounding
            ref = tb.fit(build, (x, y), method=method, epochs=2, batch_size=32, verbose=0, **opts)
            out[method]["max_diff_vs_one_device"] = max(
                float(np.abs(a - b).max()) for ma, mb in zip(post.members, ref.members) for a, b in zip(ma, mb))
            out[method]["scale"] = max(float(np.abs(a).max()) for a in ref.members[0])
    print("RESULT " + json.dumps(out))
    """
)


def test_samplers_under_mirrored_strategy_over_two_logical_cpus(tmp_path):
    """Same noise on every replica (stateless keys), so mirrored weights stay identical, and the
    run matches the one-device run up to float rounding (the global batch is the same)."""
    out = run_result_script(tmp_path, _MIRRORED)
    assert out["replicas"] == 2
    for method in ("sgld", "csgmcmc", "subspace"):
        r = out[method]
        assert r["mirrored"] and r["in_sync"] and r["finite"], (method, r)
        assert r["S"] == (3 if method == "subspace" else 4)
    assert out["sgld"]["max_diff_vs_one_device"] < 1e-3 * max(1.0, out["sgld"]["scale"]), out["sgld"]

