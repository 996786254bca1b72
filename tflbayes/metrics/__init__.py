"""Quality metrics: fit, calibration and out-of-distribution detection (numpy, no TensorFlow).

Example:
    >>> import tflbayes as tb
    >>> ds = tb.data.load("digits")
    >>> report = tb.metrics.evaluate(post, ds.x_test, ds.y_test,
    ...                              x_ood=tb.data.ood(ds, "noise"))  # doctest: +SKIP
    >>> sorted(report)  # doctest: +SKIP
    ['accuracy', 'brier', 'ece', 'misclassification_auroc', 'nll', 'ood_aupr_epistemic', ...]

Plots live in :mod:`tflbayes.metrics.plots`.
"""
from tflbayes.metrics import plots
from tflbayes.metrics.quality import (
    accuracy,
    brier,
    ece,
    evaluate,
    evaluate_prediction,
    misclassification_auroc,
    nll,
    ood_aupr,
    ood_auroc,
)

__all__ = [
    # fit and calibration of the predictive distribution
    "accuracy",
    "nll",
    "brier",
    "ece",
    # ranking by uncertainty
    "misclassification_auroc",
    "ood_auroc",
    "ood_aupr",
    # everything at once
    "evaluate",
    "evaluate_prediction",
    # figures
    "plots",
]
