"""``tb.compress.prune`` and ``tb.compress.sparsity``: the entry points of pruning.

One factory with string options over small single-purpose modules (survey §3):

=============== ============================ =====================================================
method          fits                         what it does
=============== ============================ =====================================================
``magnitude``   ensemble, stochastic         one-shot ``|w|`` pruning of each member on its own
                                             (variational: by ``|μ|``, σ removed too)
``shared_mask`` ensemble (``data``)          prune-then-sample: TF-MOT iterative pruning of one
                                             network finds a mask, SG-MCMC / fine-tuning samples
                                             inside it; stored once, values per member
``snr``         variational                  remove the lowest ``|μ|/σ`` (``criterion="magnitude"``:
                                             ``|μ|``)
``structured``  ensemble (``data``)          group-lasso training, then removal of the weakest
                                             units / channels: a smaller dense model
``2:4``         ensemble (``data`` optional) TF-MOT m-by-n sparsity, 2 zeros in every 4
=============== ============================ =====================================================

Pruned are the kernels of Dense, Conv1D/2D, DepthwiseConv2D, SeparableConv and GRU/LSTM layers (kernel
and recurrent kernel) and of the variational twins — never biases or normalization parameters —
``sparsity`` per kernel by default (``scope="global"``: over all kernels together). What a method
leaves alone is listed per layer, with the reason, in ``options["compression"][-1]["skipped"]`` (when any) and
in ``sparsity(post)["skipped"]``. The input posterior is never changed.

Example:
    >>> sparse = tb.compress.prune(ens, sparsity=0.9, method="magnitude")   # doctest: +SKIP
    >>> tb.compress.sparsity(sparse)["overall"]                             # doctest: +SKIP
    0.9
"""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from tflbayes.compress._targets import PRUNED_STD, kernel_slots
from tflbayes.errors import InvalidInputError

__all__ = ["prune", "sparsity", "METHODS", "SCOPES"]

METHODS = ("magnitude", "shared_mask", "snr", "structured", "2:4")
SCOPES = ("layer", "global")
_FITS = {
    "magnitude": "ensemble, MC-dropout and variational posteriors",
    "shared_mask": "ensemble posteriors (EnsemblePosterior)",
    "snr": "variational posteriors (a StochasticPosterior with tflbayes.layers.MEAN_FIELD_LAYERS)",
    "structured": "ensemble posteriors (EnsemblePosterior)",
    "2:4": "ensemble posteriors (EnsemblePosterior)",
}


def _kind(posterior) -> str:
    from tflbayes.posterior import EnsemblePosterior, StochasticPosterior

    if isinstance(posterior, EnsemblePosterior):
        return "ensemble"
    if isinstance(posterior, StochasticPosterior):
        return "variational" if any(sl.rho is not None for sl in kernel_slots(posterior.model)) else "stochastic"
    raise InvalidInputError(
        "Invalid value received for argument `posterior`. Expected an EnsemblePosterior or a StochasticPosterior. "
        f"Received: {type(posterior).__name__}")


def _methods_for(kind: str) -> list:
    fits = {"ensemble": ("magnitude", "shared_mask", "structured", "2:4"),
            "variational": ("magnitude", "snr"), "stochastic": ("magnitude",)}
    return list(fits[kind])


def _check_sparsity(sparsity, method) -> Optional[float]:
    if method == "2:4":
        if sparsity is not None and sparsity != 0.5:
            raise InvalidInputError(
                "Invalid value received for argument `sparsity`. method='2:4' is fixed at 50 % (2 zeros in every "
                f"4); pass sparsity=None or 0.5. Received: sparsity={sparsity!r}")
        return 0.5
    ok = (isinstance(sparsity, numbers.Real) and not isinstance(sparsity, bool) and np.isfinite(sparsity)
          and 0 <= sparsity < 1)
    if not ok:
        raise InvalidInputError(
            "Invalid value received for argument `sparsity`. Expected a float in [0, 1) (the fraction of kernel "
            f"weights to remove). Received: sparsity={sparsity!r}")
    return float(sparsity)


def prune(posterior, sparsity: Optional[float] = None, method: str = "magnitude", *, scope: str = "layer",
          data=None, criterion: str = "snr", **options):
    """Prune a posterior; returns a new Posterior of the same kind (the input is not changed).

    Args:
        posterior: an :class:`~tflbayes.posterior.EnsemblePosterior` or
            :class:`~tflbayes.posterior.StochasticPosterior`.
        sparsity: the fraction of kernel weights to remove, in ``[0, 1)`` (``structured``: the
            fraction of units / channels of each hidden layer; ``2:4``: fixed at 0.5).
        method: ``"magnitude"``, ``"shared_mask"``, ``"snr"``, ``"structured"`` or ``"2:4"``
            (see the table in the module docstring).
        scope: ``"layer"`` (each kernel loses ``sparsity`` of its weights) or ``"global"`` (one
            ranking over all kernels). ``structured`` and ``2:4`` are per layer by nature.
        data: ``(x, y)`` training data; required by ``shared_mask`` and ``structured``, optional
            for ``2:4`` (fine-tuning).
        criterion: ``snr`` only: ``"snr"`` (``|μ|/σ``) or ``"magnitude"`` (``|μ|``).
        **options: the method's own options (see :mod:`~tflbayes.compress.shared_mask`,
            :mod:`~tflbayes.compress.structured`, :mod:`~tflbayes.compress.nm`); unknown ones raise.

    Returns:
        The pruned posterior. ``options["compression"]`` records what was done;
        ``shared_mask`` results carry ``.mask`` (stored once on disk and in ``batched`` bundles).

    Raises:
        InvalidInputError: ``sparsity`` outside ``[0, 1)``, an unknown method / scope / criterion,
            a method that does not fit the posterior (the message names what fits), missing
            ``data``, or an unknown option.
    """
    from tflbayes.compress import magnitude, nm, shared_mask, snr, structured
    from tflbayes.compress._common import check_data

    if method not in METHODS:
        raise InvalidInputError(
            f"Invalid value received for argument `method`. Expected one of {', '.join(map(repr, METHODS))}. "
            f"Received: method={method!r}")
    if scope not in SCOPES:
        raise InvalidInputError(
            f"Invalid value received for argument `scope`. Expected one of {', '.join(map(repr, SCOPES))}. "
            f"Received: scope={scope!r}")
    if criterion not in snr.CRITERIA:
        raise InvalidInputError(
            f"Invalid value received for argument `criterion`. Expected one of {', '.join(map(repr, snr.CRITERIA))}. "
            f"Received: criterion={criterion!r}")
    s = _check_sparsity(sparsity, method)
    kind = _kind(posterior)
    fits = _methods_for(kind)
    if method not in fits:
        raise InvalidInputError(
            f"method={method!r} does not fit this {kind} posterior ({type(posterior).__name__}); it fits "
            f"{_FITS[method]}. Methods for this posterior: {', '.join(map(repr, fits))}.")
    if criterion != "snr" and method != "snr":
        raise InvalidInputError(f"`criterion` applies to method='snr' only. Received: method={method!r}")
    if method in ("magnitude", "snr") and options:
        raise InvalidInputError(f"Unknown option(s) {', '.join(sorted(options))} for method {method!r}. "
                                "Valid options: none (it is one-shot).")
    if method == "magnitude":
        if kind == "variational":
            return snr.prune_snr(posterior, s, scope, criterion="magnitude")
        return magnitude.prune_members(posterior, s, scope)
    if method == "snr":
        return snr.prune_snr(posterior, s, scope, criterion=criterion)
    if method == "2:4":
        xy = None if data is None else check_data(posterior, data, "method='2:4' with data")
        return nm.prune_m_by_n(posterior, xy, **options)
    x, y = check_data(posterior, data, f"method={method!r}")
    if method == "structured":
        return structured.prune_structured(posterior, s, x, y, **options)
    return shared_mask.prune_shared_mask(posterior, s, scope, x, y, **options)


def sparsity(posterior) -> dict:
    """The fraction of zero weights actually present in the posterior's prunable kernels.

    Counts every kernel :func:`~tflbayes.compress._targets.kernel_slots` knows (Dense, Conv1D/2D,
    DepthwiseConv2D, SeparableConv, GRU/LSTM kernels and recurrent kernels, the variational
    twins; over all members of an ensemble), whether or not a pruning step touched it: the figure
    is read from the weights, never from the request. A variational weight counts as zero when
    ``μ = 0`` and ``σ ≤ 1e-20`` (how ``snr`` removes it).

    Returns:
        ``{"overall": float, "layers": {layer: float}, "kernels": {layer or layer/kind: float},
        "skipped": {layer: why}}``: ``overall`` weights every kernel by its size; ``layers`` pools
        a layer's kernels (a GRU's kernel and recurrent kernel); ``skipped`` names the layers with
        weights that hold no prunable kernel (normalization, ...).
    """
    from tflbayes.compress._targets import unpruned_layers
    from tflbayes.compress.snr import softplus

    kind = _kind(posterior)
    slots = kernel_slots(posterior.model)
    sets = posterior.members if kind == "ensemble" else [posterior.model.get_weights()]
    counts, kernels, zeros, total = {}, {}, 0, 0
    for sl in slots:
        z = 0
        for ws in sets:
            is_zero = np.asarray(ws[sl.index]) == 0
            if sl.rho is not None:
                is_zero &= softplus(np.asarray(ws[sl.rho])) <= PRUNED_STD
            z += int(is_zero.sum())
        n = sl.size * len(sets)
        kernels[sl.key] = z / n if n else 0.0
        zl, nl = counts.get(sl.layer, (0, 0))
        counts[sl.layer] = (zl + z, nl + n)
        zeros += z
        total += n
    layers = {name: (z / n if n else 0.0) for name, (z, n) in counts.items()}
    return {"overall": zeros / total if total else 0.0, "layers": layers, "kernels": kernels,
            "skipped": unpruned_layers(posterior.model)}
