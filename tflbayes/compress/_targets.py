"""Which weights are pruned, and exact-count masks over them.

Pruned are the kernels of ``Dense`` and ``Conv2D`` layers (never biases, BatchNorm or other
parameters); for variational layers (:class:`~tflbayes.layers.VariationalDense` /
``VariationalConv2D``) the kernel is the pair ``kernel_loc`` (μ) / ``kernel_rho`` (σ = softplus ρ).

A mask keeps exactly ``size - round(sparsity * size)`` weights per layer (``scope="layer"``) or
over all kernels together (``scope="global"``; each layer keeps at least its largest-scoring
weight, so no layer is cut off). Ties are broken by position, so the achieved sparsity equals the
request up to the rounding to whole weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from tflbayes._keras import keras

__all__ = ["Slot", "kernel_slots", "keep_masks", "keep_top", "num_pruned", "PRUNED_RHO"]

# A pruned variational weight: mu = 0 and rho = PRUNED_RHO, sigma = softplus(-50) ~ 2e-22: a point
# mass at zero for every float32 computation, while the KL term log(sigma_p / sigma) stays finite.
PRUNED_RHO = -50.0
PRUNED_STD = 1e-20  # sigma at or below this counts as pruned


@dataclass(frozen=True)
class Slot:
    """One prunable kernel: its layer, its position in ``model.get_weights()`` and its shape.

    ``rho`` is the position of ``kernel_rho`` for a variational layer (else ``None``);
    ``units_axis`` is the output-unit axis (last) for group norms.
    """

    layer: str
    index: int
    shape: tuple
    layer_type: str
    rho: Optional[int] = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def kernel_slots(model) -> list:
    """The prunable kernels of ``model`` in layer order (exact ``Dense``/``Conv2D`` and the
    tflbayes variational twins)."""
    from tflbayes.layers import VariationalConv2D, VariationalDense

    index = {id(v): k for k, v in enumerate(model.weights)}
    slots = []
    for layer in _all_layers(model):
        t = type(layer)
        if t in (keras.layers.Dense, keras.layers.Conv2D):
            k = index[id(layer.kernel)]
            slots.append(Slot(layer.name, k, tuple(int(d) for d in layer.kernel.shape), t.__name__))
        elif t in (VariationalDense, VariationalConv2D):
            k = index[id(layer.kernel_loc)]
            slots.append(Slot(layer.name, k, tuple(int(d) for d in layer.kernel_loc.shape), t.__name__,
                              rho=index[id(layer.kernel_rho)]))
    return slots


def num_pruned(size: int, sparsity: float) -> int:
    """How many of ``size`` weights a request of ``sparsity`` removes (round half up)."""
    return int(np.floor(sparsity * size + 0.5))


def keep_top(score: np.ndarray, keep: int) -> np.ndarray:
    """Boolean mask of the ``keep`` highest entries of ``score`` (ties: the earlier position wins)."""
    flat = score.reshape(-1)
    order = np.argsort(-flat, kind="stable")
    mask = np.zeros(flat.size, bool)
    mask[order[:keep]] = True
    return mask.reshape(score.shape)


def keep_masks(scores: list, sparsity: float, scope: str = "layer") -> list:
    """Boolean keep-masks (``True`` = kept) of the highest scores.

    Args:
        scores: one non-negative score array per kernel (e.g. ``|w|`` or ``|mu| / sigma``).
        sparsity: the fraction to remove, in ``[0, 1)``.
        scope: ``"layer"`` (each kernel loses ``round(sparsity * size)``) or ``"global"``
            (``round(sparsity * total)`` over all kernels; each keeps its best weight).
    """
    if scope == "layer":
        return [keep_top(sc, max(1, sc.size - num_pruned(sc.size, sparsity))) for sc in scores]
    flat = [np.asarray(sc, np.float64).reshape(-1).copy() for sc in scores]
    for f in flat:  # protect each layer's best weight
        f[np.argmax(f)] = np.inf
    total = sum(f.size for f in flat)
    keep = total - num_pruned(total, sparsity)
    joined = np.concatenate(flat)
    mask = keep_top(joined, max(keep, len(flat)))
    out, start = [], 0
    for sc in scores:
        out.append(mask[start:start + sc.size].reshape(sc.shape))
        start += sc.size
    return out
