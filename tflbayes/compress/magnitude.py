"""One-shot magnitude pruning of each posterior sample independently (no fine-tuning).

Each member ``W_s`` keeps its ``(1 - sparsity)`` largest ``|w|`` per kernel (or over all kernels,
``scope="global"``) and loses the rest: ``W_s ⊙ 1[|W_s| ≥ τ_s]`` (Janowsky 1989; Han et al. 2015
without the retraining).

The survey (§3.1) notes that fine-tuning a pruned posterior sample would move it away from the
distribution the ensemble represents; one-shot pruning keeps every member where its sampler put
it and relies on the averaging over members to absorb the damage. Each member gets its own mask
(the ``|w|`` ranking of its own weights), so storing the result sparsely costs ``O(3NS)``; for a
shared mask see :mod:`tflbayes.compress.shared_mask`.

Example:
    >>> sparse = tb.compress.prune(ens, sparsity=0.9, method="magnitude")  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from tflbayes.compress._common import copy_model, record
from tflbayes.compress._targets import kernel_slots, keep_masks, unpruned_layers

__all__ = ["prune_members"]


def prune_weights(weights: list, slots: list, sparsity: float, scope: str) -> list:
    """One weight list with the lowest ``|w|`` kernels zeroed (exact counts, see ``keep_masks``)."""
    ws = [np.array(w, dtype=np.float32, copy=True) for w in weights]
    masks = keep_masks([np.abs(ws[sl.index]) for sl in slots], sparsity, scope)
    for sl, m in zip(slots, masks):
        ws[sl.index] = np.where(m, ws[sl.index], np.float32(0))
    return ws


def prune_members(posterior, sparsity: float, scope: str):
    """Every member of an :class:`~tflbayes.posterior.EnsemblePosterior` (or the one weight set
    of an MC-dropout posterior) pruned by magnitude on its own."""
    from tflbayes.posterior import EnsemblePosterior, StochasticPosterior

    slots = kernel_slots(posterior.model)
    skipped = unpruned_layers(posterior.model)
    entry = {"method": "magnitude", "sparsity": float(sparsity), "scope": scope,
             **({"skipped": skipped} if skipped else {})}
    if isinstance(posterior, EnsemblePosterior):
        members = [prune_weights(ws, slots, sparsity, scope) for ws in posterior.members]
        return EnsemblePosterior(copy_model(posterior.model, members[0]), members, posterior.method,
                                 record(posterior, entry), posterior.class_names)
    weights = prune_weights(posterior.model.get_weights(), slots, sparsity, scope)
    return StochasticPosterior(copy_model(posterior.model, weights), posterior.method, record(posterior, entry),
                               posterior.class_names)
