"""Posteriors whose S samples come out of one forward pass: MIMO and BatchEnsemble.

The network outputs logits ``[B, S, C]``: S heads of a multi-input multi-output network
(Havasi et al. 2021) or the S vectorised members of a BatchEnsemble (Wen et al. 2020).
``sample_probs`` runs the model once and returns the softmax of every head, ``[S, N, C]``;
predictions are deterministic. Downstream (metrics, conversion, the uncertainty decomposition)
it is an ensemble of S members that costs one network.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from tflbayes.errors import InvalidInputError
from tflbayes.posterior.base import SingleNetworkPosterior, forward, softmax

__all__ = ["SinglePassPosterior"]


class SinglePassPosterior(SingleNetworkPosterior):
    """One Keras model whose output ``[B, S, C]`` holds S posterior samples' logits.

    Args:
        model: the Keras model (``x [B, ...] -> logits [B, S, C]``).
        method: ``"mimo"`` or ``"batch_ensemble"``.
        options: hyper-parameters (``num_samples`` = S is set from the model).
        class_names: one name per class.

    Example:
        >>> post = tb.fit(build, ds, method="mimo", num_samples=3)   # doctest: +SKIP
        >>> post.sample_probs(ds.x_test).shape                       # doctest: +SKIP
        (3, 360, 10)
    """

    kind = "single_pass"

    def __init__(self, model, method: str, options: Optional[dict] = None,
                 class_names: Optional[Sequence[str]] = None):
        super().__init__(model, method, options, class_names)
        shape = tuple(model.output_shape)
        if len(shape) != 3 or shape[1] is None:
            raise InvalidInputError(
                f"Invalid value received for argument `model`: a single-pass posterior's model outputs logits "
                f"[B, S, C]; this one outputs {list(shape)}.")
        self.options["num_samples"] = int(shape[1])

    @property
    def num_samples(self) -> int:
        return int(self.options["num_samples"])

    def logits(self, x) -> np.ndarray:
        """``[S, N, C]`` logits of the S heads / members (float64)."""
        return np.transpose(forward(self.model, self._check_x(x)), (1, 0, 2))

    def sample_probs(self, x, num_samples: Optional[int] = None) -> np.ndarray:
        s = self.num_samples if num_samples is None else num_samples
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= s <= self.num_samples:
            raise InvalidInputError(
                f"Invalid value received for argument `num_samples`. Expected an integer in [1, {self.num_samples}] "
                f"(the network's heads). Received: num_samples={num_samples!r}")
        return softmax(self.logits(x)[: int(s)])
