"""Signal-to-noise pruning of a mean-field variational posterior.

A weight with posterior ``N(μ, σ²)`` whose mean is small *relative to its uncertainty* carries
little information: the network already treats it as noise. SNR pruning removes the weights with
the lowest ``|μ| / σ`` (Graves 2011, "Practical Variational Inference for Neural Networks";
Blundell et al. 2015, §5.2), setting ``μ = 0`` and ``σ → 0`` (``ρ = -50``, σ ≈ 2e-22: a point mass
at zero that keeps the KL finite). ``criterion="magnitude"`` ranks by ``|μ|`` alone, for
comparison. The survey (§3.1) suggests both criteria for the Gaussian mean-field case.

Example:
    >>> sparse_vi = tb.compress.prune(vi, sparsity=0.9, method="snr")                         # doctest: +SKIP
    >>> by_mean = tb.compress.prune(vi, sparsity=0.9, method="snr", criterion="magnitude")    # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from tflbayes.compress._common import copy_model, record
from tflbayes.compress._targets import PRUNED_RHO, keep_masks, kernel_slots

__all__ = ["prune_snr", "CRITERIA", "softplus"]

CRITERIA = ("snr", "magnitude")


def softplus(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.where(x > 30, x, np.log1p(np.exp(np.minimum(x, 30))))


def prune_snr(posterior, sparsity: float, scope: str, criterion: str = "snr"):
    """A copy of the variational posterior with the lowest-SNR (or lowest-``|μ|``) kernel weights removed.

    ``criterion="magnitude"`` (what ``method="magnitude"`` uses) also prunes the deterministic
    kernels of the model (a last-layer VI posterior's body, a GRU left deterministic) by ``|w|``;
    ``criterion="snr"`` has no σ to rank those by and leaves them dense, listed in the record's
    ``skipped``.
    """
    from tflbayes.compress._targets import unpruned_layers
    from tflbayes.posterior import StochasticPosterior

    all_slots = kernel_slots(posterior.model)
    slots = all_slots if criterion == "magnitude" else [sl for sl in all_slots if sl.rho is not None]
    ws = [np.array(w, dtype=np.float32, copy=True) for w in posterior.model.get_weights()]
    if criterion == "snr":
        scores = [np.abs(ws[sl.index]) / np.maximum(softplus(ws[sl.rho]), 1e-30) for sl in slots]
    else:
        scores = [np.abs(ws[sl.index]) for sl in slots]
    for sl, m in zip(slots, keep_masks(scores, sparsity, scope)):
        ws[sl.index] = np.where(m, ws[sl.index], np.float32(0))
        if sl.rho is not None:
            ws[sl.rho] = np.where(m, ws[sl.rho], np.float32(PRUNED_RHO))
    skipped = unpruned_layers(posterior.model)
    for sl in all_slots:
        if sl not in slots:
            skipped[sl.key] = (f"{sl.layer_type}: deterministic kernel, no σ to rank by signal-to-noise "
                               "(method='magnitude' prunes it by |w|)")
    entry = {"method": "snr", "criterion": criterion, "sparsity": float(sparsity), "scope": scope,
             **({"skipped": skipped} if skipped else {})}
    return StochasticPosterior(copy_model(posterior.model, ws), posterior.method, record(posterior, entry),
                               posterior.class_names)
