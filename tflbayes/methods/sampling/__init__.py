"""Sampling methods: SG-MCMC, cyclical SG-MCMC, snapshot ensembles and subspace inference.

Importing this package registers the methods ``sgld``, ``sghmc``, ``csgmcmc``, ``snapshot`` and
``subspace`` with :func:`tflbayes.fit`. Each trains with ``model.fit`` (user callbacks run
alongside) and returns an :class:`~tflbayes.posterior.EnsemblePosterior` of the collected samples.

Example:
    >>> import tflbayes as tb
    >>> import tflbayes.methods.sampling as sampling
    >>> post = tb.fit(build, ds, method="csgmcmc", epochs=50, num_samples=10)  # doctest: +SKIP
    >>> sampling.diagnostics(post, ds.x_test, ds.y_test)  # doctest: +SKIP
    {'ess': 8.7, 'rhat': 1.03, 'chains': 1, 'samples_per_chain': 10}
"""
from tflbayes.methods.sampling.collect import SampleCollector, collection_steps
from tflbayes.methods.sampling.convergence import diagnostics, ess_rhat, log_likelihood_trace
from tflbayes.methods.sampling.likelihoods import (
    LIKELIHOODS,
    GaussianNLL,
    check_targets,
    log_likelihood,
    regression_predictive,
)
from tflbayes.methods.sampling.methods import train_csgmcmc, train_sghmc, train_sgld, train_snapshot
from tflbayes.methods.sampling.optimizers import SGHMC, SGLD
from tflbayes.methods.sampling.schedules import CyclicalCosine, PolynomialStepSize, SamplingPhase
from tflbayes.methods.sampling.subspace import Subspace, elliptical_slice_chain, make_subspace, train_subspace

METHOD_NAMES = ("sgld", "sghmc", "csgmcmc", "snapshot", "subspace")

__all__ = [
    # the registered methods (use them through tb.fit(..., method=name))
    "METHOD_NAMES", "train_sgld", "train_sghmc", "train_csgmcmc", "train_snapshot", "train_subspace",
    # samplers as Keras optimizers, their schedules and the sample-collecting callback
    "SGLD", "SGHMC", "PolynomialStepSize", "CyclicalCosine", "SamplingPhase", "SampleCollector",
    "collection_steps",
    # likelihoods (regression: float targets, predictive mean and std)
    "LIKELIHOODS", "GaussianNLL", "log_likelihood", "check_targets", "regression_predictive",
    # subspace inference building blocks
    "Subspace", "make_subspace", "elliptical_slice_chain",
    # convergence diagnostics
    "diagnostics", "ess_rhat", "log_likelihood_trace",
]
