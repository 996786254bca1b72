"""Heavy checks of the sampling methods (``make test-slow``): every sampler against exact posteriors,
the temperature, TFP's NUTS as an independent reference, and digits against a deep ensemble.

Problems (from ``test_sampling.py``):
* Bayesian linear regression, 3 weights, conjugate Gaussian: posterior mean and std of every
  weight within 10 % of the exact ones.
* 2-weight logistic regression: posterior predictive on a 9×9 grid of inputs (corners far from
  the data) within 0.03 of quadrature, and within 0.03 of TFP's NUTS.

Each sampler runs with its default step size / friction / schedule shape; only the budget
(epochs, num_samples, burn_in, thinning, cycles) is set, with two exceptions for ``csgmcmc``:

* ``exploration=0.5``: every cycle restarts its sampling phase from the mode its exploration
  phase found, and the phase must be long enough (in Σ step sizes) to forget it. With the
  default 0.8 the phase is 20 % of the cycle and at the cosine's tail; on these unimodal toys
  affordable budgets then leave a 5-15 % bias of the logistic posterior mean towards the MAP
  (measured: 60 cycles of 800 steps, mean -10 % / -16 %). The exploration is what the method
  is for (several modes of a deep net), and it is wasted here.
* the SGLD variant uses ``step_size=1.0``: without momentum it moves ``1 / friction`` = 10 times
  less per step than the SGHMC variant at the same step size.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.methods.registry import METHODS, TrainConfig

from test_sampling import build_linear, build_logistic, linear_weights, linreg_problem, logistic_problem, train

pytestmark = pytest.mark.slow

# name -> (method, options, epochs, batch_size): linear regression has N = 64, logistic N = 32
LINREG_RUNS = {
    "sgld": ("sgld", dict(num_samples=1950, burn_in=500, thinning=10, steps_per_execution=2), 10000, 32),
    "sghmc": ("sghmc", dict(num_samples=1950, burn_in=500, thinning=10, steps_per_execution=2), 10000, 32),
    # cyclical: 300 cycles of 100 steps, half of each spent sampling (see the module docstring)
    "csgmcmc-sghmc": ("csgmcmc", dict(num_samples=600, cycles=300, exploration=0.5, thinning=10,
                                      steps_per_execution=4), 7500, 16),
    "csgmcmc-sgld": ("csgmcmc", dict(num_samples=600, cycles=300, exploration=0.5, thinning=10, sampler="sgld",
                                     step_size=1.0, steps_per_execution=4), 7500, 16),
    "subspace-pca": ("subspace", dict(rank=3, num_samples=2000, thinning=5), 40, 32),
    "subspace-random": ("subspace", dict(rank=3, subspace="random", num_samples=2000, thinning=5), 40, 32),
    "subspace-sgld": ("subspace", dict(rank=3, sampler="sgld", num_samples=1500, burn_in=500, thinning=10), 40, 32),
}
LOGISTIC_RUNS = {
    "sgld": ("sgld", dict(num_samples=1550, burn_in=500, thinning=10, steps_per_execution=2), 8000, 16),
    "sghmc": ("sghmc", dict(num_samples=1550, burn_in=500, thinning=10, steps_per_execution=2), 8000, 16),
    "csgmcmc-sghmc": ("csgmcmc", dict(num_samples=500, cycles=250, exploration=0.5, thinning=20,
                                      steps_per_execution=8), 6250, 4),
    "csgmcmc-sgld": ("csgmcmc", dict(num_samples=500, cycles=250, exploration=0.5, thinning=20, sampler="sgld",
                                     step_size=1.0, steps_per_execution=8), 6250, 4),
    "subspace-pca": ("subspace", dict(rank=2, num_samples=1000, thinning=5), 40, 16),
    "subspace-random": ("subspace", dict(rank=2, subspace="random", num_samples=1000, thinning=5), 40, 16),
    "subspace-sgld": ("subspace", dict(rank=2, sampler="sgld", num_samples=1000, burn_in=500, thinning=10), 40, 16),
}

REPORT: dict = {}  # measured errors, printed at the end of the module (pytest -s)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if REPORT:
        print("\nsampling exactness report")
        for key in sorted(REPORT):
            print(f"  {key}: {REPORT[key]}")


@pytest.fixture(scope="module")
def logistic():
    return logistic_problem()


@pytest.fixture(scope="module")
def logistic_posteriors(logistic):
    x, y, *_ = logistic
    cache = {}

    def get(name):
        if name not in cache:
            method, opts, epochs, batch = LOGISTIC_RUNS[name]
            cache[name] = train(method, build_logistic, x, y, epochs=epochs, batch_size=batch, **opts)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(LINREG_RUNS))
def test_linear_regression_posterior_mean_and_std(name):
    x, y, mean, cov = linreg_problem()
    method, opts, epochs, batch = LINREG_RUNS[name]
    post = train(method, build_linear, x, y, epochs=epochs, batch_size=batch, likelihood="regression", **opts)
    w = linear_weights(post)
    mean_err = np.abs(w.mean(0) - mean) / np.abs(mean)
    std_err = np.abs(w.std(0) / np.sqrt(np.diag(cov)) - 1)
    REPORT[f"linreg {name}"] = f"max rel error mean {mean_err.max():.3f}, std {std_err.max():.3f} (S={len(w)})"
    assert np.all(mean_err < 0.10), (w.mean(0), mean)
    assert np.all(std_err < 0.10), (w.std(0), np.sqrt(np.diag(cov)))


@pytest.mark.parametrize("name", sorted(LOGISTIC_RUNS))
def test_logistic_regression_predictive_matches_quadrature(name, logistic, logistic_posteriors):
    _, _, xt, exact, mean, std = logistic
    post = logistic_posteriors(name)
    err = np.abs(post.predict(xt).probs[:, 1] - exact).max()
    w = np.array([m[0].ravel() for m in post.members])
    REPORT[f"logistic {name}"] = (f"max |p - exact| {err:.4f}; rel error mean {np.abs(w.mean(0) / mean - 1).max():.3f}, "
                                  f"std {np.abs(w.std(0) / std - 1).max():.3f}")
    assert err < 0.03
    assert np.all(np.abs(w.mean(0) / mean - 1) < 0.10) and np.all(np.abs(w.std(0) / std - 1) < 0.15)


@pytest.mark.parametrize("method", ["sgld", "sghmc"])
def test_temperature_scales_the_spread(method):
    """p(θ|D)^(1/T) of a Gaussian posterior is Gaussian with covariance T Σ: std × sqrt(T)."""
    x, y, mean, cov = linreg_problem()
    _, opts, epochs, batch = LINREG_RUNS[method]
    post = train(method, build_linear, x, y, epochs=epochs, batch_size=batch, likelihood="regression",
                 temperature=0.25, **opts)
    w = linear_weights(post)
    ratio = w.std(0) / np.sqrt(np.diag(cov))
    REPORT[f"temperature 0.25 {method}"] = f"std / exact std = {np.round(ratio, 3).tolist()} (theory 0.5)"
    assert np.all(np.abs(ratio / 0.5 - 1) < 0.10), ratio
    assert np.all(np.abs(w.mean(0) / mean - 1) < 0.10)


@pytest.fixture(scope="module")
def nuts(logistic):
    """TFP's No-U-Turn sampler on the same logistic posterior: 4 chains × 2,000 draws after adaptation."""
    import tensorflow_probability as tfp

    from tflbayes._keras import tf

    x, y, xt, *_ = logistic
    xs, ys = tf.constant(x, tf.float64), tf.constant(y, tf.float64)

    def log_post(w):  # w [chains, 2]
        z = tf.linalg.matvec(xs[None], w)
        return tf.reduce_sum(ys * z - tf.math.softplus(z), -1) - 0.5 * tf.reduce_sum(w ** 2, -1)

    kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
        tfp.mcmc.NoUTurnSampler(log_post, step_size=0.3), num_adaptation_steps=800)

    @tf.function
    def run():
        return tfp.mcmc.sample_chain(2000, tf.zeros([4, 2], tf.float64), kernel=kernel, num_burnin_steps=1000,
                                     trace_fn=None, seed=(1, 2))

    draws = run().numpy().reshape(-1, 2)
    from scipy.special import expit

    return draws, (expit(xt.astype(np.float64) @ draws.T)).mean(1)


def test_nuts_reference_agrees_with_quadrature(logistic, nuts):
    _, _, _, exact, mean, std = logistic
    draws, pred = nuts
    REPORT["logistic NUTS vs quadrature"] = f"max |p - exact| {np.abs(pred - exact).max():.4f}"
    assert np.abs(pred - exact).max() < 0.01
    np.testing.assert_allclose(draws.mean(0), mean, rtol=0.05)
    np.testing.assert_allclose(draws.std(0), std, rtol=0.05)


@pytest.mark.parametrize("name", sorted(LOGISTIC_RUNS))
def test_samplers_agree_with_nuts(name, logistic, logistic_posteriors, nuts):
    _, _, xt, *_ = logistic
    err = np.abs(logistic_posteriors(name).predict(xt).probs[:, 1] - nuts[1]).max()
    REPORT[f"logistic {name} vs NUTS"] = f"max |p - p_nuts| {err:.4f}"
    assert err < 0.03


# --------------------------------------------------------------------------- digits vs a deep ensemble


def _run(name, ds, epochs, **options):
    from tflbayes.architectures import mlp

    cfg = TrainConfig(epochs=epochs, batch_size=64, verbose=0, seed=0, class_names=ds.class_names)
    spec = METHODS[name]
    c0 = time.process_time()  # CPU time: other jobs on a shared machine disturb it less than wall time
    post = spec.train(lambda: mlp(ds.input_shape, ds.num_classes), ds.x_train, ds.y_train, cfg,
                      **{**spec.defaults, **options})
    return post, time.process_time() - c0


def test_digits_sgmcmc_against_a_deep_ensemble(digits, x_noise):
    """Cyclical SG-MCMC with S = 10 samples: NLL <= 1.05 × a 10-member deep ensemble's, in <= 0.4 ×
    its training (CPU) time (measured 0.87× NLL at 0.15×-0.3× time), and more epistemic
    uncertainty on OOD noise than on test digits. Plain SGHMC (one chain, 100 epochs) is reported
    and must rank OOD noise above test digits too; its NLL varies more with the budget."""
    ens, t_ens = _run("deep_ensemble", digits, 20, members=10)
    nll_ens = tb.metrics.nll(ens.predict(digits.x_test).probs, digits.y_test)
    for name, epochs, opts in (("csgmcmc", 50, {"num_samples": 10, "cycles": 5}),
                               ("sghmc", 100, {"num_samples": 10})):
        post, t = _run(name, digits, epochs, **opts)
        pred_in, pred_ood = post.predict(digits.x_test), post.predict(x_noise)
        nll = tb.metrics.nll(pred_in.probs, digits.y_test)
        auroc = tb.metrics.ood_auroc(pred_in.epistemic, pred_ood.epistemic)
        REPORT[f"digits {name}"] = (f"NLL {nll:.4f} vs ensemble {nll_ens:.4f} ({nll / nll_ens:.3f}x), "
                                    f"CPU time {t:.1f}s vs {t_ens:.1f}s ({t / t_ens:.2f}x), OOD AUROC {auroc:.3f}")
        assert post.num_samples == 10
        assert pred_ood.epistemic.mean() > pred_in.epistemic.mean()
        assert auroc > 0.85
        if name == "csgmcmc":
            assert nll <= 1.05 * nll_ens, REPORT[f"digits {name}"]
            assert t <= 0.4 * t_ens, REPORT[f"digits {name}"]
