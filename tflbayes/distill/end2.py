"""Ensemble Distribution Distillation, EnD² (Malinin, Mlodozeniec & Gales 2020).

The student is a Prior Network: it outputs Dirichlet concentrations ``alpha(x)`` (``alpha =
exp(clip(z, ln 1e-3, ln 1e4))``, :mod:`tflbayes.posterior.dirichlet`) and is trained so that
``Dir(alpha(x))`` matches the distribution of the teacher's sample probabilities
``{p(y|x, theta_s)}``, so one forward pass keeps the ensemble's knowledge uncertainty.

Losses (``loss=``):

- ``"proxy"`` (default), Ryabinin, Malinin & Gales 2021: per input, a proxy Dirichlet
  ``beta = pbar * beta_0 + prior`` is fitted to the teacher's samples (mean ``pbar``, precision
  ``beta_0 = (C-1) / (2 mean_s KL(pbar || p_s))``, capped at ``max_precision``; ``prior`` is the
  smoothing pseudo-count) and the student minimises the reverse KL ``KL(Dir(alpha) || Dir(beta))``.
  Its gradients do not blow up on low-probability classes, unlike the NLL with many classes.
- ``"nll"``, the original EnD² criterion: ``-mean_s ln Dir(p_s | alpha)`` (teacher samples smoothed
  by ``teacher_smoothing``).

Both use temperature annealing: ``T`` goes linearly from ``temperature`` to 1 over the first
``anneal`` fraction of the epochs (concentrations divided by ``T``; for the NLL the samples are
pulled towards their mean), then stays 1.

EnD² keeps out-of-distribution detection only if the transfer set contains inputs on which the
teacher's samples disagree: :func:`tflbayes.distill.distill` adds auxiliary inputs by default
(``x_aux="auto"``, :func:`~tflbayes.distill.auxiliary_inputs`).
"""
from __future__ import annotations

import numpy as np

from tflbayes._keras import tf
from tflbayes.distill.losses import AnnealTemperature, DirichletNLL, ProxyDirichletKL
from tflbayes.distill.recipe import Recipe, register_recipe

__all__ = ["EnsembleDistributionDistillation", "END2_LOSSES"]

END2_LOSSES = ("proxy", "nll")


@register_recipe
class EnsembleDistributionDistillation(Recipe):
    name = "end2"
    defaults = {"loss": "proxy", "temperature": 2.5, "anneal": 0.5, "prior": 0.1, "max_precision": 1e3,
                "teacher_smoothing": 1e-4}
    min_teacher_samples = 2
    summary = "a Dirichlet over class probabilities (closed-form total, aleatoric, epistemic)"

    def targets(self, samples):
        n, s, c = samples.shape
        return samples.reshape(n, s * c).astype(np.float32)

    def loss(self):
        t = tf.Variable(1.0, trainable=False, dtype=tf.float32)
        o = self.options
        if o["loss"] == "nll":
            return DirichletNLL(self.num_samples, self.num_classes, t, o["teacher_smoothing"])
        return ProxyDirichletKL(self.num_samples, self.num_classes, t, o["prior"], o["max_precision"])

    def callbacks(self, loss, epochs):
        return [AnnealTemperature(loss.temperature, epochs, self.options["temperature"], self.options["anneal"])]

    def posterior(self, model, options, class_names):
        from tflbayes.posterior.dirichlet import DirichletPosterior

        return DirichletPosterior(model, self.name, options, class_names)
