"""Data: bundled data sets, the user's ``.npz`` arrays, and out-of-distribution protocols.

Example:
    >>> import tflbayes as tb
    >>> ds = tb.data.load("digits", holdout_classes=[9])   # train without 9s
    >>> x_ood = tb.data.ood(ds, "heldout")                  # ... and test on them
    >>> x_noise = tb.data.ood(ds, "noise", num=100)
"""
from tflbayes.data.datasets import DATASETS, Dataset, load
from tflbayes.data.ood_protocols import OOD_KINDS, ood

__all__ = [
    # the data set type and its loader
    "Dataset",
    "load",
    "DATASETS",
    # out-of-distribution inputs
    "ood",
    "OOD_KINDS",
]
