"""Tests of tflbayes.uncertainty: the numpy reference of the uncertainty decomposition.

References: ``scipy.stats.entropy`` for Shannon entropies, ``scipy.special.digamma`` for the
Dirichlet closed form, and numpy Monte Carlo (Dirichlet draws) with tolerances of ``Z`` standard
errors of the estimate. Everything is seeded, so the tests are deterministic.
"""
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from tflbayes.errors import InvalidInputError
from tflbayes.uncertainty import (
    Prediction,
    decompose,
    dirichlet_decompose,
    entropy,
    prediction_from_samples,
)

Z = 5.0  # tolerance in standard errors for the Monte Carlo checks


def _dirichlet_samples(rng, s, n, c, alpha=1.0):
    """``[S, N, C]`` probability samples, every row drawn from Dir(alpha * 1)."""
    return rng.dirichlet(np.full(c, alpha), size=(s, n))


# --------------------------------------------------------------------------- entropy


def test_entropy_matches_scipy():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=50)
    np.testing.assert_allclose(entropy(p), scipy.stats.entropy(p, axis=-1), rtol=1e-12)


def test_entropy_axis_and_exact_zeros():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    out = entropy(p)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [math.log(2), 0.0], atol=1e-15)
    # along another axis
    np.testing.assert_allclose(entropy(p.T, axis=0), out)


# --------------------------------------------------------------------------- decompose


@pytest.mark.parametrize("s,n,c,alpha", [(2, 5, 2, 1.0), (10, 30, 10, 0.5), (50, 8, 3, 5.0)])
def test_decompose_matches_scipy_on_random_dirichlet_samples(s, n, c, alpha):
    rng = np.random.default_rng(s * 100 + c)
    samples = _dirichlet_samples(rng, s, n, c, alpha)
    total, aleatoric, epistemic = decompose(samples)
    ref_total = scipy.stats.entropy(samples.mean(axis=0), axis=-1)
    ref_aleatoric = scipy.stats.entropy(samples, axis=-1).mean(axis=0)
    for arr in (total, aleatoric, epistemic):
        assert arr.shape == (n,)
        assert arr.dtype == np.float64
    np.testing.assert_allclose(total, ref_total, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(aleatoric, ref_aleatoric, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(epistemic, ref_total - ref_aleatoric, rtol=1e-8, atol=1e-10)


def test_decompose_bounds_on_random_samples():
    rng = np.random.default_rng(1)
    s, n, c = 6, 200, 4
    total, aleatoric, epistemic = decompose(_dirichlet_samples(rng, s, n, c, 0.3))
    assert np.all(epistemic >= 0)
    assert np.all(aleatoric >= 0)
    assert np.all(total <= math.log(c) + 1e-12)
    # mutual information I(y; s) <= min(H[y], H[s]) = min(total, log S)
    assert np.all(epistemic <= total + 1e-12)
    assert np.all(epistemic <= math.log(s) + 1e-12)
    np.testing.assert_allclose(total, aleatoric + epistemic, atol=1e-12)


def test_decompose_is_invariant_to_sample_order():
    rng = np.random.default_rng(2)
    samples = _dirichlet_samples(rng, 8, 20, 5)
    ref = decompose(samples)
    perm = decompose(samples[rng.permutation(8)])
    for a, b in zip(ref, perm):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_one_hot_samples_have_zero_uncertainty():
    # every sample agrees on a one-hot: no uncertainty of any kind
    one_hot = np.eye(4)[[0, 3, 2]]  # [N=3, C=4]
    samples = np.stack([one_hot] * 5)  # [S=5, 3, 4]
    for v in decompose(samples):
        np.testing.assert_array_equal(v, np.zeros(3))


def test_identical_samples_have_no_epistemic_uncertainty():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6), size=10)  # [N, C]
    total, aleatoric, epistemic = decompose(np.stack([p] * 7))
    ref = scipy.stats.entropy(p, axis=-1)
    np.testing.assert_allclose(epistemic, 0.0, atol=1e-12)
    np.testing.assert_allclose(total, ref, rtol=1e-12)
    np.testing.assert_allclose(aleatoric, ref, rtol=1e-12)


def test_opposite_one_hots_have_epistemic_log2():
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two members, opposite one-hots
    total, aleatoric, epistemic = decompose(samples)
    np.testing.assert_allclose(total, [math.log(2)], rtol=1e-15)
    np.testing.assert_array_equal(aleatoric, [0.0])
    np.testing.assert_allclose(epistemic, [math.log(2)], rtol=1e-15)


def test_opposite_one_hots_many_classes():
    # S members each sure of a different class out of C: epistemic = total = log S
    s, c = 4, 10
    samples = np.eye(c)[:s][:, None, :]  # [S, 1, C]
    total, aleatoric, epistemic = decompose(samples)
    np.testing.assert_allclose(total, [math.log(s)], rtol=1e-14)
    np.testing.assert_array_equal(aleatoric, [0.0])
    np.testing.assert_allclose(epistemic, [math.log(s)], rtol=1e-14)


def test_exact_zeros_are_safe():
    samples = np.array(
        [
            [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
            [[0.0, 0.5, 0.5], [0.0, 1.0, 0.0]],
        ]
    )
    with np.errstate(all="raise"):  # no hidden divide-by-zero / invalid warnings either
        out = decompose(samples)
    for v in out:
        assert np.all(np.isfinite(v))
    total, aleatoric, epistemic = out
    ref_total = scipy.stats.entropy(samples.mean(0), axis=-1)
    np.testing.assert_allclose(total, ref_total, rtol=1e-12)
    np.testing.assert_allclose(aleatoric, [math.log(2), 0.0], rtol=1e-12)


def test_float32_input_is_accepted_and_computed_in_float64():
    rng = np.random.default_rng(4)
    samples = _dirichlet_samples(rng, 5, 10, 3).astype(np.float32)
    total, _, _ = decompose(samples)
    assert total.dtype == np.float64
    ref = scipy.stats.entropy(samples.astype(np.float64).mean(0), axis=-1)
    np.testing.assert_allclose(total, ref, rtol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        np.full((4, 3), 0.25),  # ndim 2
        np.full((2, 2, 2, 2), 0.5),  # ndim 4
        np.full((0, 3, 2), 0.5),  # no samples
        np.ones((2, 3, 1)),  # one class
        np.array([[[np.nan, 1.0]]]),  # NaN
        np.array([[[np.inf, 0.0]]]),  # inf
        np.array([[[0.5, 0.6]]]),  # does not sum to 1
        np.array([[[1.5, -0.5]]]),  # negative
        np.array([[[2.0, 3.0]], [[0.4, 0.6]]]),  # logits, not probabilities
    ],
    ids=["ndim2", "ndim4", "S0", "C1", "nan", "inf", "sum", "negative", "logits"],
)
def test_decompose_rejects_bad_inputs(bad):
    with pytest.raises(InvalidInputError, match="samples"):
        decompose(bad)
    with pytest.raises(InvalidInputError):
        prediction_from_samples(bad)


def test_invalid_input_error_is_a_value_error():
    with pytest.raises(ValueError):
        decompose(np.zeros((2, 2)))


# --------------------------------------------------------------------------- Prediction


def test_prediction_from_samples():
    rng = np.random.default_rng(5)
    samples = _dirichlet_samples(rng, 9, 12, 4)
    pred = prediction_from_samples(samples)
    assert isinstance(pred, Prediction)
    np.testing.assert_allclose(pred.probs, samples.mean(axis=0), rtol=1e-12)
    for got, want in zip((pred.total, pred.aleatoric, pred.epistemic), decompose(samples)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(pred.label, np.argmax(samples.mean(axis=0), axis=-1))


def test_prediction_is_frozen():
    pred = prediction_from_samples(np.array([[[0.2, 0.8]]]))
    with pytest.raises(AttributeError):
        pred.probs = None  # type: ignore[misc]


# --------------------------------------------------------------------------- Dirichlet


def _alphas():
    rng = np.random.default_rng(6)
    return np.concatenate(
        [
            rng.uniform(0.5, 5.0, size=(6, 3)),
            np.array([[1.0, 1.0, 1.0], [20.0, 1.0, 1.0], [0.7, 0.7, 0.7], [50.0, 50.0, 50.0]]),
        ]
    )


def test_dirichlet_aleatoric_matches_digamma_closed_form():
    alpha = np.concatenate([_alphas(), np.random.default_rng(7).uniform(0.1, 100, size=(20, 3))])
    total, aleatoric, epistemic = dirichlet_decompose(alpha)
    a0 = alpha.sum(-1)
    # E_{p~Dir(a)} H[p] = psi(a0 + 1) - sum_c (a_c / a0) psi(a_c + 1)
    ref_aleatoric = scipy.special.digamma(a0 + 1) - np.sum(
        alpha / a0[:, None] * scipy.special.digamma(alpha + 1), axis=-1
    )
    ref_total = scipy.stats.entropy(alpha / a0[:, None], axis=-1)
    np.testing.assert_allclose(aleatoric, ref_aleatoric, rtol=1e-10)
    np.testing.assert_allclose(total, ref_total, rtol=1e-10)
    np.testing.assert_allclose(epistemic, np.maximum(ref_total - ref_aleatoric, 0), atol=1e-10)


def test_dirichlet_decompose_matches_monte_carlo():
    """Closed form vs ``decompose`` of many Dirichlet draws, within Z Monte Carlo standard errors."""
    alpha = _alphas()
    n, c = alpha.shape
    s = 20_000
    rng = np.random.default_rng(8)
    draws = np.stack([rng.dirichlet(a, size=s) for a in alpha], axis=1)  # [S, N, C]
    draws = draws / draws.sum(-1, keepdims=True)
    total, aleatoric, epistemic = dirichlet_decompose(alpha)
    mc_total, mc_aleatoric, mc_epistemic = decompose(draws)

    # SE of the mean of H[p_s]
    se_aleatoric = scipy.stats.entropy(draws, axis=-1).std(axis=0, ddof=1) / math.sqrt(s)
    # delta method for H[mean p]: grad H(m) = -(log m + 1); Var = g^T Cov g / S
    m = draws.mean(axis=0)
    g = -(np.log(m) + 1.0)  # [N, C]
    proj = np.einsum("snc,nc->sn", draws - m, g)
    se_total = proj.std(axis=0, ddof=1) / math.sqrt(s)
    se_epistemic = se_total + se_aleatoric  # conservative (no covariance needed)

    np.testing.assert_array_less(np.abs(mc_aleatoric - aleatoric), Z * se_aleatoric + 1e-9)
    np.testing.assert_array_less(np.abs(mc_total - total), Z * se_total + 1e-4)  # + O(1/S) bias
    np.testing.assert_array_less(np.abs(mc_epistemic - epistemic), Z * se_epistemic + 1e-4)
    # and the tolerances are tight enough to mean something
    assert np.all(Z * se_aleatoric < 0.05)


def test_dirichlet_epistemic_is_nonnegative_and_shrinks_with_concentration():
    rng = np.random.default_rng(9)
    alpha = rng.uniform(0.01, 1e6, size=(500, 5))
    alpha = np.concatenate([alpha, np.full((1, 5), 1e8), np.full((1, 5), 1e-3)])
    total, aleatoric, epistemic = dirichlet_decompose(alpha)
    for v in (total, aleatoric, epistemic):
        assert np.all(np.isfinite(v))
    assert np.all(epistemic >= 0)
    assert np.all(aleatoric >= 0)
    # same mean, more concentration: less knowledge uncertainty, same total
    base = np.array([[2.0, 1.0, 1.0]])
    eps = [dirichlet_decompose(base * k)[2][0] for k in (0.5, 1, 10, 100, 1e4)]
    assert all(a > b for a, b in zip(eps, eps[1:]))
    tot = [dirichlet_decompose(base * k)[0][0] for k in (0.5, 1, 10, 100, 1e4)]
    np.testing.assert_allclose(tot, tot[0], rtol=1e-12)


def test_dirichlet_flat_prior_has_known_values():
    # Dir(1, 1): p ~ Uniform; E H[p] = 1/2 nats, H[E p] = log 2
    total, aleatoric, epistemic = dirichlet_decompose(np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(total, [math.log(2)], rtol=1e-14)
    np.testing.assert_allclose(aleatoric, [0.5], rtol=1e-12)
    np.testing.assert_allclose(epistemic, [math.log(2) - 0.5], rtol=1e-12)


@pytest.mark.parametrize(
    "bad",
    [
        np.ones(3),  # ndim 1
        np.ones((2, 3, 4)),  # ndim 3
        np.ones((4, 1)),  # one class
        np.array([[1.0, 0.0]]),  # zero concentration
        np.array([[1.0, -2.0]]),  # negative
        np.array([[1.0, np.nan]]),  # NaN
        np.array([[1.0, np.inf]]),  # inf
    ],
    ids=["ndim1", "ndim3", "C1", "zero", "negative", "nan", "inf"],
)
def test_dirichlet_decompose_rejects_bad_inputs(bad):
    with pytest.raises(InvalidInputError, match="alpha"):
        dirichlet_decompose(bad)
