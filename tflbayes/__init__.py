"""tflbayes: approximate Bayesian deep learning from Keras training to LiteRT edge devices.

Public surface (import as ``import tflbayes as tb``)::

    ds = tb.data.load("digits")
    post = tb.fit(build_model, (ds.x_train, ds.y_train), method="deep_ensemble", members=5)
    pred = post.predict(ds.x_test)          # Prediction(probs, total, aleatoric, epistemic)
    tb.metrics.evaluate(post, ds.x_test, ds.y_test, x_ood=tb.data.ood(ds, "noise"))
    post.save("runs/ens"); post = tb.load("runs/ens")

Modules that need TensorFlow are imported lazily, so ``tflbayes.runtime`` and
``tflbayes.uncertainty`` work on a device that only has numpy and ``ai_edge_litert``.
"""
from importlib import import_module

from tflbayes.errors import (
    BundleError,
    ConversionError,
    DivergenceError,
    InvalidInputError,
    InvalidTypeError,
    PosteriorFormatError,
    TflbayesError,
    VerificationError,
)
from tflbayes.uncertainty import Prediction

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself)
_LAZY = {
    # modules
    "data": ("tflbayes.data", None),
    "uncertainty": ("tflbayes.uncertainty", None),
    "metrics": ("tflbayes.metrics", None),
    "plots": ("tflbayes.metrics.plots", None),
    "layers": ("tflbayes.layers", None),
    "methods": ("tflbayes.methods", None),
    "compress": ("tflbayes.compress", None),
    "runtime": ("tflbayes.runtime", None),
    # training
    "fit": ("tflbayes.methods.fit", "fit"),
    "METHODS": ("tflbayes.methods.fit", "METHODS"),
    # post-hoc: last-layer Laplace around a trained network, temperature calibration of any posterior
    "laplace": ("tflbayes.methods.laplace", "fit_laplace"),
    "calibrate": ("tflbayes.calibration", "calibrate"),
    # distillation (the package tflbayes.distill is callable too: calling it calls distill)
    "distill": ("tflbayes.distill", "distill"),
    "DISTILL_METHODS": ("tflbayes.distill", "DISTILL_METHODS"),
    # posteriors
    "Posterior": ("tflbayes.posterior", "Posterior"),
    "EnsemblePosterior": ("tflbayes.posterior", "EnsemblePosterior"),
    "StochasticPosterior": ("tflbayes.posterior", "StochasticPosterior"),
    "DirichletPosterior": ("tflbayes.posterior.dirichlet", "DirichletPosterior"),
    "DistilledPosterior": ("tflbayes.posterior.distilled", "DistilledPosterior"),
    "load": ("tflbayes.posterior", "load"),
    "merge": ("tflbayes.posterior", "merge"),
    # LiteRT conversion and the device runtime
    "converters": ("tflbayes.converters", None),
    "convert": ("tflbayes.converters.convert", "convert"),
    "load_bundle": ("tflbayes.runtime", "load_bundle"),
    "Bundle": ("tflbayes.runtime", "Bundle"),
}

__all__ = [
    # errors
    "TflbayesError", "InvalidInputError", "InvalidTypeError", "PosteriorFormatError", "BundleError",
    "ConversionError", "VerificationError", "DivergenceError",
    # results
    "Prediction",
    *_LAZY,
]


def __getattr__(name):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tflbayes' has no attribute {name!r}") from None
    module = import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
