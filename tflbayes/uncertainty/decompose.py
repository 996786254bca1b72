"""Numpy reference implementation of the uncertainty decomposition (no TensorFlow)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from tflbayes._checks import as_float_array
from tflbayes.errors import InvalidInputError

__all__ = ["Prediction", "entropy", "decompose", "dirichlet_decompose", "prediction_from_samples"]


@dataclass(frozen=True)
class Prediction:
    """What every posterior and every bundle returns for a batch of inputs.

    Attributes:
        probs: ``[N, C]`` posterior predictive probabilities.
        total: ``[N]`` entropy of ``probs`` (nats).
        aleatoric: ``[N]`` expected entropy of the members/samples (nats).
        epistemic: ``[N]`` mutual information = total - aleatoric (nats), or ``None`` where the
            posterior cannot provide it (a Bayesian Dark Knowledge student: one network that
            only matches the predictive distribution carries no knowledge uncertainty).
    """

    probs: np.ndarray
    total: np.ndarray
    aleatoric: Optional[np.ndarray]
    epistemic: Optional[np.ndarray]

    @property
    def label(self) -> np.ndarray:
        """``[N]`` the most probable class index."""
        return np.argmax(self.probs, axis=-1)


def _xlogx(p: np.ndarray) -> np.ndarray:
    # p * log p with the limit 0 at p = 0 (exact zeros are common: one-hot samples, int8 outputs).
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def entropy(p, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis``; safe for exact zeros."""
    p = as_float_array(p, "p")
    return -np.sum(_xlogx(p), axis=axis)


def _check_samples(samples) -> np.ndarray:
    s = as_float_array(samples, "samples")
    if s.ndim != 3:
        raise InvalidInputError(
            f"Invalid value received for argument `samples`. Expected an array of shape "
            f"[S, N, C] (samples, inputs, classes). Received: shape={s.shape}"
        )
    if s.shape[0] < 1 or s.shape[2] < 2:
        raise InvalidInputError(
            f"Invalid value received for argument `samples`. Expected S >= 1 samples and C >= 2 "
            f"classes. Received: shape={s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise InvalidInputError("Invalid value received for argument `samples`: it contains NaN or inf.")
    if np.any(s < -1e-6) or np.any(np.abs(s.sum(-1) - 1.0) > 1e-3):
        raise InvalidInputError(
            "Invalid value received for argument `samples`. Expected probabilities (non-negative, "
            f"summing to 1 over the last axis). Received: min={s.min():.3g}, "
            f"row sums in [{s.sum(-1).min():.4g}, {s.sum(-1).max():.4g}]"
        )
    return np.clip(s, 0.0, 1.0)


def decompose(samples):
    """Split the predictive uncertainty of ``S`` probability samples into its two parts.

    Args:
        samples: ``[S, N, C]`` class probabilities, one row per posterior sample (ensemble
            member, dropout mask, weight draw).

    Returns:
        ``(total, aleatoric, epistemic)``, each ``[N]`` float64 in nats, with
        ``total = H[mean_s p_s]``, ``aleatoric = mean_s H[p_s]`` and
        ``epistemic = total - aleatoric`` (the mutual information; clipped at 0 against rounding).

    Example:
        >>> import numpy as np
        >>> s = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])   # two members, opposite one-hots
        >>> [float(v[0]) for v in decompose(s)]           # doctest: +ELLIPSIS
        [0.693..., 0.0, 0.693...]
    """
    s = _check_samples(samples)
    mean = s.mean(axis=0)
    total = entropy(mean)
    aleatoric = entropy(s).mean(axis=0)
    epistemic = np.maximum(total - aleatoric, 0.0)
    return total, aleatoric, epistemic


def prediction_from_samples(samples) -> Prediction:
    """Build a :class:`Prediction` from ``[S, N, C]`` probability samples."""
    s = _check_samples(samples)
    total, aleatoric, epistemic = decompose(s)
    return Prediction(probs=s.mean(axis=0), total=total, aleatoric=aleatoric, epistemic=epistemic)


def dirichlet_decompose(alpha):
    """Closed-form decomposition for Dirichlet concentrations (Malinin & Gales 2018).

    For ``p ~ Dir(alpha)`` with ``alpha_0 = sum_c alpha_c``:

    - total = H[E p] with ``E p = alpha / alpha_0``
    - aleatoric = E_p H[p] = -sum_c (alpha_c/alpha_0) (psi(alpha_c + 1) - psi(alpha_0 + 1))
    - epistemic = total - aleatoric (mutual information)

    Args:
        alpha: ``[N, C]`` positive concentrations.

    Returns:
        ``(total, aleatoric, epistemic)``, each ``[N]`` in nats.
    """
    from scipy.special import digamma

    a = as_float_array(alpha, "alpha")
    if a.ndim != 2 or a.shape[1] < 2:
        raise InvalidInputError(
            f"Invalid value received for argument `alpha`. Expected shape [N, C] with C >= 2. "
            f"Received: shape={a.shape}"
        )
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise InvalidInputError(
            "Invalid value received for argument `alpha`. Expected finite concentrations > 0."
        )
    a0 = a.sum(axis=-1, keepdims=True)
    mean = a / a0
    total = entropy(mean)
    aleatoric = -np.sum(mean * (digamma(a + 1.0) - digamma(a0 + 1.0)), axis=-1)
    epistemic = np.maximum(total - aleatoric, 0.0)
    return total, aleatoric, epistemic
