"""A student network that outputs Dirichlet concentrations: the EnD² posterior.

The network outputs ``C`` unconstrained values ``z`` (its "alpha logits"); the concentrations are

.. math::

    \\alpha_c = \\exp\\big(\\operatorname{clip}(z_c, \\ln 10^{-3}, \\ln 10^{4})\\big),
    \\qquad \\alpha_0 = \\textstyle\\sum_c \\alpha_c,

the exponential parametrisation of Prior Networks and EnD² (Malinin et al. 2020), clipped so
that every concentration lies in ``[1e-3, 1e4]``: the range on which the on-device digamma
(:mod:`tflbayes.converters.graphs.dirichlet`) is checked against ``scipy.special.digamma``.
The same clip is applied in training, here, and in the LiteRT graph.

``predict`` uses the closed form (:func:`tflbayes.uncertainty.dirichlet_decompose`):
``probs = alpha / alpha_0``, total = H[probs], aleatoric = E_{p~Dir(alpha)} H[p],
epistemic = the mutual information. ``sample_probs`` draws ``p ~ Dir(alpha)``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from tflbayes._checks import check_positive_int
from tflbayes.posterior.base import SingleNetworkPosterior, forward
from tflbayes.uncertainty import Prediction, dirichlet_decompose

__all__ = ["DirichletPosterior", "ALPHA_MIN", "ALPHA_MAX", "LOG_ALPHA_MIN", "LOG_ALPHA_MAX",
           "alpha_from_logits", "sample_dirichlet"]

#: Range of every concentration (the network's output is clipped to its logarithm).
ALPHA_MIN = 1e-3
ALPHA_MAX = 1e4
LOG_ALPHA_MIN = math.log(ALPHA_MIN)
LOG_ALPHA_MAX = math.log(ALPHA_MAX)

_DEFAULT_SAMPLES = 100


def alpha_from_logits(z) -> np.ndarray:
    """``alpha = exp(clip(z, ln 1e-3, ln 1e4))`` in float64 (the numpy twin of the graph)."""
    z = np.asarray(z, dtype=np.float64)
    return np.exp(np.clip(z, LOG_ALPHA_MIN, LOG_ALPHA_MAX))


def sample_dirichlet(alpha, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``[S, N, C]`` draws ``p ~ Dir(alpha)`` for ``alpha [N, C]``, stable for tiny concentrations.

    ``p = G / sum(G)`` with ``G_c ~ Gamma(alpha_c)``. Small ``alpha`` makes ``G`` underflow to 0
    (then every component of a draw may be 0), so the draw is made in log space with
    ``Gamma(a) = Gamma(a + 1) * U^(1/a)`` (``U ~ Uniform(0, 1)``) and normalised by a softmax.
    """
    a = np.asarray(alpha, dtype=np.float64)
    shape = (int(num_samples), *a.shape)
    log_g = np.log(rng.gamma(a + 1.0, size=shape)) + np.log(rng.uniform(size=shape)) / a
    log_g -= log_g.max(axis=-1, keepdims=True)
    g = np.exp(log_g)
    return g / g.sum(axis=-1, keepdims=True)


class DirichletPosterior(SingleNetworkPosterior):
    """An Ensemble Distribution Distillation (EnD²) student: one network, a Dirichlet per input.

    The network maps an input to concentrations ``alpha`` of a Dirichlet over the class
    probabilities (module docstring for the parametrisation), which stands in for the
    teacher's distribution of posterior samples (Malinin, Mlodozeniec & Gales 2020). One
    forward pass gives the whole uncertainty decomposition in closed form; the network costs
    what one ensemble member costs.

    Args:
        model: Keras model outputting the ``C`` alpha logits ``z``.
        method: the method that made it (``"end2"``).
        options: hyper-parameters (plain JSON); ``num_samples`` is the default S of
            :meth:`sample_probs` (100).
        class_names: one name per class.

    Example:
        >>> student = tb.distill(ensemble, ds.x_train, method="end2")   # doctest: +SKIP
        >>> student.predict(ds.x_test).epistemic                         # doctest: +SKIP
        >>> student.alpha(ds.x_test[:2])                                 # doctest: +SKIP
    """

    kind = "dirichlet"

    def __init__(self, model, method: str = "end2", options: Optional[dict] = None,
                 class_names: Optional[Sequence[str]] = None):
        super().__init__(model, method, options, class_names)
        self.options.setdefault("num_samples", _DEFAULT_SAMPLES)
        self.options.setdefault("parametrization", "alpha = exp(clip(z, ln 1e-3, ln 1e4))")

    @property
    def num_samples(self) -> int:
        return int(self.options["num_samples"])

    # -- the Dirichlet ------------------------------------------------------------------------
    def alpha(self, x) -> np.ndarray:
        """``[N, C]`` concentrations (float64)."""
        return alpha_from_logits(forward(self.model, self._check_x(x)))

    def sample_probs(self, x, num_samples: Optional[int] = None, seed: Optional[int] = None) -> np.ndarray:
        """``[S, N, C]`` draws ``p ~ Dir(alpha(x))`` (numpy gamma draws; ``seed`` makes them repeatable)."""
        s = check_positive_int("num_samples", self.num_samples if num_samples is None else num_samples)
        return sample_dirichlet(self.alpha(x), int(s), np.random.default_rng(seed))

    def predict(self, x, num_samples: Optional[int] = None) -> Prediction:
        """Closed-form predictive and decomposition (``num_samples`` is accepted and ignored: no sampling)."""
        a = self.alpha(x)
        total, aleatoric, epistemic = dirichlet_decompose(a)
        return Prediction(probs=a / a.sum(axis=-1, keepdims=True), total=total, aleatoric=aleatoric,
                          epistemic=epistemic)
