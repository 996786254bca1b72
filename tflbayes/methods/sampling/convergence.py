"""Convergence diagnostics of a sampled posterior: effective sample size and R-hat (TFP's ``tfp.mcmc``).

The scalar summary tracked along each chain is the predictive log-likelihood of one posterior
sample on a held-out batch, ``ℓ_s = (1/n) Σ_i log p(y_i | x_i, θ_s)``: one number per sample, which
moves when the sample's predictions move (weights themselves are not identifiable).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tflbayes._checks import check_inputs
from tflbayes._keras import tf
from tflbayes.errors import InvalidInputError
from tflbayes.methods.sampling.likelihoods import log_likelihood
from tflbayes.posterior import EnsemblePosterior
from tflbayes.posterior.base import forward

__all__ = ["diagnostics", "log_likelihood_trace", "ess_rhat"]


def log_likelihood_trace(posterior: EnsemblePosterior, x, y) -> np.ndarray:
    """``[S]`` mean predictive log-likelihood of each member on ``(x, y)``, in member order."""
    if not isinstance(posterior, EnsemblePosterior):
        raise InvalidInputError(
            "Invalid value received for argument `posterior_or_chains`. Expected an EnsemblePosterior (SG-MCMC "
            f"samples) or a list of them (one per chain). Received: {type(posterior).__name__}"
        )
    x = check_inputs(x, posterior.input_shape, "x")
    y = np.asarray(y)
    if len(y) != len(x):
        raise InvalidInputError(f"`y` must hold {len(x)} targets (one per input). Received: shape={list(y.shape)}")
    lik = posterior.options.get("likelihood", "classification")
    noise = float(posterior.options.get("noise_std", 1.0))
    model, out = posterior.model, []
    saved = model.get_weights()
    try:
        for ws in posterior.members:
            model.set_weights(ws)
            out.append(float(np.mean(log_likelihood(forward(model, x), y, lik, noise))))
    finally:
        model.set_weights(saved)
    return np.asarray(out)


def ess_rhat(chains) -> dict:
    """ESS and split-R-hat of ``chains`` (``[num_chains, num_draws]`` scalar traces) via ``tfp.mcmc``.

    ESS is Vehtari et al.'s (2021) cross-chain ESS (``cross_chain_dims``) of all draws, truncated by
    Geyer's positive pairs; R-hat is the split potential scale reduction (Gelman & Rubin 1992;
    each chain is halved, so one chain also gives an R-hat).
    """
    import tensorflow_probability as tfp

    arr = np.asarray(chains, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InvalidInputError(
            f"Expected chains of shape [num_chains, num_draws >= 2]. Received: shape={list(arr.shape)}"
        )
    states = tf.constant(arr.T)  # [draws, chains]
    c, n = arr.shape[0], arr.shape[1]
    if c >= 2:
        ess = tfp.mcmc.effective_sample_size(states, filter_beyond_positive_pairs=True, cross_chain_dims=1)
    else:
        ess = tfp.mcmc.effective_sample_size(states[:, 0], filter_beyond_positive_pairs=True)
    if n >= 4:
        rhat = tfp.mcmc.potential_scale_reduction(states, independent_chain_ndims=1, split_chains=True)
    elif c >= 2:
        rhat = tfp.mcmc.potential_scale_reduction(states, independent_chain_ndims=1)
    else:
        rhat = tf.constant(np.nan)
    return {"ess": float(np.squeeze(ess.numpy())), "rhat": float(np.squeeze(rhat.numpy())),
            "chains": int(c), "samples_per_chain": int(n)}


def _split(posterior: EnsemblePosterior) -> list:
    counts = posterior.options.get("chains")
    s = posterior.num_samples
    if not isinstance(counts, list) or sum(counts) != s or not counts:
        counts = [s]
    idx = np.cumsum([0] + counts)
    return [list(range(idx[i], idx[i + 1])) for i in range(len(counts))]


def diagnostics(posterior_or_chains, x, y) -> dict:
    """Effective sample size and R-hat of the predictive log-likelihood on a held-out batch.

    Args:
        posterior_or_chains: an :class:`EnsemblePosterior` from a sampling method (its chains are
            ``options["chains"]``, written by :func:`tflbayes.merge`; else one chain), or a list of
            them (one chain each).
        x, y: a held-out batch and its labels (regression: targets).

    Returns:
        ``{"ess", "rhat", "chains", "samples_per_chain"}``. Chains of unequal length are cut to the
        shortest (keeping their last samples). R-hat near 1 (say < 1.1) and ESS not far below the
        number of samples mean the chains agree; see :func:`ess_rhat`.

    Example:
        >>> chains = [tb.fit(build, ds, method="sghmc", seed=s) for s in range(4)]  # doctest: +SKIP
        >>> diagnostics(tb.merge(chains), ds.x_test[:256], ds.y_test[:256])  # doctest: +SKIP
        {'ess': 31.2, 'rhat': 1.02, 'chains': 4, 'samples_per_chain': 10}
    """
    if isinstance(posterior_or_chains, EnsemblePosterior):
        trace = log_likelihood_trace(posterior_or_chains, x, y)
        traces = [trace[ids] for ids in _split(posterior_or_chains)]
    elif isinstance(posterior_or_chains, Sequence) and not isinstance(posterior_or_chains, (str, bytes)) \
            and len(posterior_or_chains) > 0:
        traces = [log_likelihood_trace(p, x, y) for p in posterior_or_chains]
    else:
        raise InvalidInputError(
            "Invalid value received for argument `posterior_or_chains`. Expected an EnsemblePosterior or a "
            f"non-empty list of them. Received: {type(posterior_or_chains).__name__}"
        )
    m = min(len(t) for t in traces)
    if m < 2:
        raise InvalidInputError(
            f"Diagnostics need at least 2 samples per chain; the shortest chain has {m}. Collect more "
            "(`num_samples`)."
        )
    return ess_rhat(np.stack([t[-m:] for t in traces]))
