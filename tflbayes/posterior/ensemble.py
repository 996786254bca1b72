"""Posteriors represented by S fixed weight sets of one architecture."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError
from tflbayes.posterior.base import Posterior, forward, softmax

__all__ = ["EnsemblePosterior"]


class EnsemblePosterior(Posterior):
    """One Keras architecture and S weight sets: deep and snapshot ensembles, SG-MCMC samples.

    ``sample_probs`` runs every member (``num_samples`` may select the first k members).
    Predictions are deterministic: the same input always gives the same output.

    The members may share one sparsity mask (prune-then-sample, ``tb.compress.prune(...,
    method="shared_mask")``): ``mask`` holds, per weight tensor, ``None`` (dense) or a boolean
    array of the tensor's shape that is ``True`` where members may be non-zero. The folder then
    stores the mask's indices once and the S members' values inside it: ``O(2N + NS)`` instead
    of ``O(3NS)`` for N non-zeros per member (see :mod:`tflbayes.posterior.storage`).

    Example:
        >>> post = EnsemblePosterior(model, [w1, w2, w3], method="deep_ensemble")  # doctest: +SKIP
        >>> post.predict(x).epistemic  # doctest: +SKIP
    """

    kind = "ensemble"

    def __init__(self, model, weights: Sequence[Sequence[np.ndarray]], method: str = "ensemble",
                 options: Optional[dict] = None, class_names: Optional[Sequence[str]] = None,
                 mask: Optional[Sequence[Optional[np.ndarray]]] = None):
        super().__init__(model, method, options, class_names)
        if len(weights) < 1:
            raise InvalidInputError("Invalid value received for argument `weights`: an ensemble needs >= 1 member.")
        ref = [tuple(w.shape) for w in model.get_weights()]
        members = []
        for i, ws in enumerate(weights):
            ws = [np.asarray(w, dtype=np.float32) for w in ws]
            shapes = [tuple(w.shape) for w in ws]
            if shapes != ref:
                raise InvalidInputError(
                    f"Invalid value received for argument `weights`: member {i} has weight shapes "
                    f"{shapes}, the architecture needs {ref}."
                )
            members.append(ws)
        self._members = members
        self._mask = None if mask is None else _check_mask(mask, ref, members)

    @property
    def num_samples(self) -> int:
        return len(self._members)

    @property
    def members(self) -> list:
        """The S weight sets (lists of numpy arrays, in ``model.get_weights()`` order)."""
        return self._members

    @property
    def mask(self) -> Optional[list]:
        """The members' shared sparsity mask (``None``: dense): per weight tensor ``None`` or a
        boolean array, ``True`` where the members may be non-zero."""
        return self._mask

    def weight_sets(self) -> list:
        return self._members

    def member_model(self, i: int):
        """A fresh Keras model holding member ``i``'s weights."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(self._members):
            raise InvalidInputError(f"Invalid value received for argument `i`. Expected a member index in "
                                    f"[0, {len(self._members)}). Received: i={i!r}")
        m = keras.models.clone_model(self.model)
        m.set_weights(self._members[i])
        return m

    @classmethod
    def _from_storage(cls, model, sets, meta):
        model.set_weights(sets[0])
        return cls(model, sets, meta["method"], meta.get("options"), meta.get("class_names"), mask=meta.get("mask"))

    def sample_probs(self, x, num_samples: Optional[int] = None) -> np.ndarray:
        x = self._check_x(x)
        s = self.num_samples if num_samples is None else num_samples
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= s <= self.num_samples:
            raise InvalidInputError(
                f"Invalid value received for argument `num_samples`. Expected an integer in "
                f"[1, {self.num_samples}] (the ensemble's members). Received: num_samples={num_samples!r}"
            )
        out = []
        for ws in self._members[:s]:
            self.model.set_weights(ws)
            out.append(softmax(forward(self.model, x)))
        return np.stack(out)


def _check_mask(mask, shapes, members) -> list:
    """``mask`` as a list of ``None`` / bool arrays matching ``shapes``; members must be zero outside it."""
    if len(mask) != len(shapes):
        raise InvalidInputError(
            f"Invalid value received for argument `mask`: it has {len(mask)} entries, the architecture has "
            f"{len(shapes)} weight tensors (use None for a dense tensor)."
        )
    out = []
    for k, (m, shape) in enumerate(zip(mask, shapes)):
        if m is None:
            out.append(None)
            continue
        m = np.asarray(m)
        if m.dtype != bool or tuple(m.shape) != shape:
            raise InvalidInputError(
                f"Invalid value received for argument `mask`: entry {k} must be a boolean array of shape "
                f"{list(shape)}. Received: dtype={m.dtype}, shape={list(m.shape)}"
            )
        for i, ws in enumerate(members):
            if np.any(ws[k][~m] != 0):
                raise InvalidInputError(
                    f"Invalid value received for argument `weights`: member {i} has non-zero values outside "
                    f"the shared mask of weight tensor {k}."
                )
        out.append(m.copy())
    return out
