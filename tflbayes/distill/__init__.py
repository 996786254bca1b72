"""Distillation: one network that carries a posterior's predictions and uncertainty (survey §4).

Example:
    >>> import tflbayes as tb
    >>> ens = tb.fit(build, (x, y), method="deep_ensemble", members=5)      # doctest: +SKIP
    >>> bdk = tb.distill(ens, x, method="bdk")    # predictive only (epistemic None)  # doctest: +SKIP
    >>> gped = tb.distill(ens, x, method="gped")  # + expected entropy heads           # doctest: +SKIP
    >>> end2 = tb.distill(ens, x, method="end2")  # a Dirichlet: DirichletPosterior    # doctest: +SKIP
    >>> res = tb.distill(ens, x, method="end2", search="prune", budgets=[0.5, 0.2])  # doctest: +SKIP
"""
import sys as _sys
import types as _types

from tflbayes.distill.api import DISTILL_METHODS, SEARCHES, distill
from tflbayes.distill.students import default_student, widen, with_extra_outputs
from tflbayes.distill.transfer import AUX_KINDS, auxiliary_inputs, perturb


class _CallableModule(_types.ModuleType):
    """``tb.distill(...)`` must call the function even where ``tflbayes.distill`` (this package) was
    imported first: importing a submodule makes it an attribute of its parent package, so
    ``tflbayes.distill`` may be this module rather than the function; calling it calls the function."""

    def __call__(self, *args, **kwargs):
        return distill(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule


def __getattr__(name):  # the search and the graph builders import TF-MOT / the converters lazily
    if name in ("search_students", "SearchResult"):
        from tflbayes.distill import search

        return getattr(search, name)
    if name in ("build_gped", "gped_head_fn"):
        from tflbayes.converters.graphs import distilled as graphs

        return getattr(graphs, name)
    raise AttributeError(f"module 'tflbayes.distill' has no attribute {name!r}")


__all__ = [
    # the entry point
    "distill",
    "DISTILL_METHODS",
    "SEARCHES",
    # transfer data
    "auxiliary_inputs",
    "perturb",
    "AUX_KINDS",
    # student architectures
    "default_student",
    "widen",
    "with_extra_outputs",
    # student search (pruning vs width multipliers)
    "search_students",
    "SearchResult",
    # LiteRT graphs of BDK / GPED students
    "build_gped",
    "gped_head_fn",
]
