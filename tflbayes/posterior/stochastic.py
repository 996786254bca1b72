"""Posteriors whose forward pass samples: MC dropout and mean-field variational inference."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from tflbayes._keras import tf
from tflbayes._checks import check_positive_int
from tflbayes.posterior.base import SingleNetworkPosterior, forward, softmax

__all__ = ["StochasticPosterior"]


class StochasticPosterior(SingleNetworkPosterior):
    """One Keras model whose every forward pass is a posterior sample.

    The model holds always-on :class:`~tflbayes.layers.MCDropout` layers or variational layers
    (:class:`~tflbayes.layers.VariationalDense`, ...). S is chosen at prediction time; the
    default is ``options["num_samples"]`` (32 unless set).

    Args:
        model: the stochastic Keras model (outputs logits).
        method: ``"mc_dropout"`` or ``"variational"``.
        options: hyper-parameters; ``num_samples`` sets the default S.
        class_names: one name per class.
        seed: optional seed for the global TF generator, for repeatable sampling.
    """

    kind = "stochastic"

    def __init__(self, model, method: str, options: Optional[dict] = None,
                 class_names: Optional[Sequence[str]] = None):
        super().__init__(model, method, options, class_names)
        self.options.setdefault("num_samples", 32)

    @property
    def num_samples(self) -> int:
        return int(self.options["num_samples"])

    def sample_probs(self, x, num_samples: Optional[int] = None, seed: Optional[int] = None) -> np.ndarray:
        x = self._check_x(x)
        s = check_positive_int("num_samples", self.num_samples if num_samples is None else num_samples)
        if seed is not None:
            tf.random.set_seed(seed)
        return np.stack([softmax(forward(self.model, x)) for _ in range(int(s))])
