"""Which weights are pruned, and exact-count masks over them.

Pruned are the weight matrices of every layer kind tflbayes knows (never biases, normalization or
other parameters): ``kernel`` of Dense, Conv1D/2D/3D and the transposed convolutions,
``depthwise_kernel`` of DepthwiseConv1D/2D, ``depthwise_kernel`` and ``pointwise_kernel`` of
SeparableConv1D/2D, ``kernel`` and ``recurrent_kernel`` of GRU / LSTM / SimpleRNN (inside a
``Bidirectional`` too), ``embeddings`` of Embedding; for the variational layers
(:data:`~tflbayes.layers.MEAN_FIELD_LAYERS`) the kernel is the pair ``kernel_loc`` (μ) /
``kernel_rho`` (σ = softplus ρ). :func:`unpruned_layers` names every other layer with weights and
says why it is left alone.

A mask keeps exactly ``size - round(sparsity * size)`` weights per kernel (``scope="layer"``) or
over all kernels together (``scope="global"``; each kernel keeps at least its largest-scoring
weight, so no layer is cut off). Ties are broken by position, so the achieved sparsity equals the
request up to the rounding to whole weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from tflbayes._keras import keras

__all__ = ["Slot", "kernel_slots", "unpruned_layers", "keep_masks", "keep_top", "num_pruned", "PRUNED_RHO"]

# A pruned variational weight: mu = 0 and rho = PRUNED_RHO, sigma = softplus(-50) ~ 2e-22: a point
# mass at zero for every float32 computation, while the KL term log(sigma_p / sigma) stays finite.
PRUNED_RHO = -50.0
PRUNED_STD = 1e-20  # sigma at or below this counts as pruned


@dataclass(frozen=True)
class Slot:
    """One prunable kernel: its layer, its position in ``model.get_weights()`` and its shape.

    ``kind`` says which of the layer's matrices it is (``"kernel"``, ``"recurrent_kernel"``,
    ``"depthwise_kernel"``, ``"pointwise_kernel"``, ``"embeddings"``; inside a Bidirectional
    ``"forward/kernel"`` ...); ``rho`` is the position of ``kernel_rho`` for a variational layer
    (else ``None``).
    """

    layer: str
    index: int
    shape: tuple
    layer_type: str
    rho: Optional[int] = None
    kind: str = "kernel"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def key(self) -> str:
        """``layer`` for a layer's only kernel, else ``layer/kind`` (e.g. ``"gru/recurrent_kernel"``)."""
        return self.layer if self.kind == "kernel" else f"{self.layer}/{self.kind}"


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


L = keras.layers
_KERNEL = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_DEPTHWISE = tuple(getattr(L, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D") if hasattr(L, n))
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_RNN = (L.GRU, L.LSTM, L.SimpleRNN)
_NORMALIZATION = (L.BatchNormalization, L.LayerNormalization) + tuple(
    getattr(L, n) for n in ("GroupNormalization", "UnitNormalization") if hasattr(L, n))


def _matrices(layer, prefix=""):
    """``[(kind, variable)]``: the prunable matrices of one (exact-type) Keras layer."""
    t = type(layer)
    if t in _KERNEL:
        return [(prefix + "kernel", layer.kernel)]
    if t in _DEPTHWISE:
        return [(prefix + "depthwise_kernel", layer.depthwise_kernel)]
    if t in _SEPARABLE:
        return [(prefix + "depthwise_kernel", layer.depthwise_kernel),
                (prefix + "pointwise_kernel", layer.pointwise_kernel)]
    if t in _RNN:
        return [(prefix + "kernel", layer.cell.kernel), (prefix + "recurrent_kernel", layer.cell.recurrent_kernel)]
    if t is L.Bidirectional:
        return _matrices(layer.forward_layer, prefix + "forward/") + _matrices(layer.backward_layer, prefix + "backward/")
    if t is L.Embedding:
        return [(prefix + "embeddings", layer.embeddings)]
    return []


def kernel_slots(model) -> list:
    """The prunable kernels of ``model`` in layer order (see the module docstring)."""
    from tflbayes.layers import MEAN_FIELD_LAYERS

    index = {id(v): k for k, v in enumerate(model.weights)}
    slots = []
    for layer in _all_layers(model):
        t = type(layer)
        if t in MEAN_FIELD_LAYERS:
            k = index[id(layer.kernel_loc)]
            slots.append(Slot(layer.name, k, tuple(int(d) for d in layer.kernel_loc.shape), t.__name__,
                              rho=index[id(layer.kernel_rho)]))
            continue
        for kind, var in _matrices(layer):
            slots.append(Slot(layer.name, index[id(var)], tuple(int(d) for d in var.shape), t.__name__, kind=kind))
    return slots


def unpruned_layers(model) -> dict:
    """``{layer name: why}`` for every layer that has weights but no prunable kernel."""
    covered = {sl.layer for sl in kernel_slots(model)}
    out = {}
    for layer in _all_layers(model):
        if not layer.weights or layer.name in covered:
            continue
        if isinstance(layer, _NORMALIZATION):
            out[layer.name] = (f"{type(layer).__name__}: normalization parameters are not a kernel (kept dense; "
                               "folded into the convolution at conversion)")
        else:
            out[layer.name] = f"{type(layer).__name__}: no kernel tflbayes knows how to prune in this layer"
    return out


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
