"""Bayesian Dark Knowledge (Korattikara, Rathod, Murphy & Welling 2015).

The student ``q(y | x, w)`` is trained to match the teacher's posterior predictive
``pbar(y | x) = E_theta[p(y | x, theta)]`` (the Monte Carlo average of its samples) by minimising
the cross-entropy ``-sum_c pbar_c(x) log q_c(x)`` over the transfer set, which BDK enlarges with
perturbed copies of the training inputs (Gaussian noise, small shifts; :mod:`.transfer`).

The result is a :class:`~tflbayes.posterior.DistilledPosterior` whose ``predict`` gives
``probs`` and ``total = H[probs]`` only: ``aleatoric`` and ``epistemic`` are ``None``. A single
network that imitates the predictive has no knowledge uncertainty, and tflbayes does not invent
one (use ``method="gped"`` or ``"end2"`` for the decomposition).
"""
from __future__ import annotations

import numpy as np

from tflbayes.distill.losses import PredictiveCrossEntropy
from tflbayes.distill.recipe import Recipe, register_recipe

__all__ = ["BayesianDarkKnowledge"]


@register_recipe
class BayesianDarkKnowledge(Recipe):
    name = "bdk"
    defaults = {}
    min_teacher_samples = 1
    summary = "one network matching the posterior predictive (no epistemic uncertainty)"

    def targets(self, samples):
        return samples.mean(axis=1).astype(np.float32)

    def loss(self):
        return PredictiveCrossEntropy()

    def posterior(self, model, options, class_names):
        from tflbayes.posterior.distilled import DistilledPosterior

        return DistilledPosterior(model, self.name, {**options, "expectations": ["predictive"]}, class_names)
