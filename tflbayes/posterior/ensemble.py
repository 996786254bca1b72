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

    Example:
        >>> post = EnsemblePosterior(model, [w1, w2, w3], method="deep_ensemble")  # doctest: +SKIP
        >>> post.predict(x).epistemic  # doctest: +SKIP
    """

    kind = "ensemble"

    def __init__(self, model, weights: Sequence[Sequence[np.ndarray]], method: str = "ensemble",
                 options: Optional[dict] = None, class_names: Optional[Sequence[str]] = None):
        super().__init__(model, method, options, class_names)
        if len(weights) < 1:
            raise ValueError("Invalid value received for argument `weights`: an ensemble needs >= 1 member.")
        ref = [tuple(w.shape) for w in model.get_weights()]
        members = []
        for i, ws in enumerate(weights):
            ws = [np.asarray(w, dtype=np.float32) for w in ws]
            shapes = [tuple(w.shape) for w in ws]
            if shapes != ref:
                raise ValueError(
                    f"Invalid value received for argument `weights`: member {i} has weight shapes "
                    f"{shapes}, the architecture needs {ref}."
                )
            members.append(ws)
        self._members = members

    @property
    def num_samples(self) -> int:
        return len(self._members)

    @property
    def members(self) -> list:
        """The S weight sets (lists of numpy arrays, in ``model.get_weights()`` order)."""
        return self._members

    def weight_sets(self) -> list:
        return self._members

    def member_model(self, i: int):
        """A fresh Keras model holding member ``i``'s weights."""
        m = keras.models.clone_model(self.model)
        m.set_weights(self._members[i])
        return m

    @classmethod
    def _from_storage(cls, model, sets, meta):
        model.set_weights(sets[0])
        return cls(model, sets, meta["method"], meta.get("options"), meta.get("class_names"))

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
