"""Merge independently trained ensembles / SG-MCMC chains into one posterior."""
from __future__ import annotations

import os
from typing import Sequence

from tflbayes.errors import InvalidInputError, InvalidTypeError
from tflbayes.posterior.ensemble import EnsemblePosterior

__all__ = ["merge"]


def merge(posteriors: Sequence, method: str | None = None) -> EnsemblePosterior:
    """Concatenate the members of ensemble posteriors trained as separate jobs.

    Each job (an ensemble member, an SG-MCMC chain) saves its own posterior folder; ``merge``
    checks that they share one architecture and one class list and returns an
    :class:`EnsemblePosterior` with all their members, in order. ``options["chains"]`` records
    how many members each part contributed (used for R-hat across chains).

    Args:
        posteriors: :class:`EnsemblePosterior` objects or paths to posterior folders.
        method: method name for the result (default: the parts' common method, else "merged").
    """
    from tflbayes.posterior.storage import load

    try:
        items = None if isinstance(posteriors, (str, os.PathLike)) else list(posteriors)
    except TypeError:
        items = None
    if items is None:
        raise InvalidTypeError("`posteriors` must be a list of ensemble posteriors or posterior folders. "
                               f"Received: {type(posteriors).__name__}")
    parts = [load(p) if isinstance(p, (str, os.PathLike)) else p for p in items]
    if not parts:
        raise InvalidInputError("Invalid value received for argument `posteriors`: nothing to merge.")
    for i, p in enumerate(parts):
        if not isinstance(p, EnsemblePosterior):
            raise InvalidInputError(
                f"Only ensemble posteriors (ensembles, SG-MCMC samples) can be merged; part {i} is a "
                f"{type(p).__name__}."
            )
    first = parts[0]
    arch = architecture_signature(first.model)
    for i, p in enumerate(parts[1:], start=1):
        if architecture_signature(p.model) != arch:
            raise InvalidInputError(f"Part {i} has a different Keras architecture from part 0; cannot merge.")
        if p.class_names != first.class_names:
            raise InvalidInputError(f"Part {i} has class names {p.class_names}, part 0 has {first.class_names}.")
    methods = {p.method for p in parts}
    name = method or (methods.pop() if len(methods) == 1 else "merged")
    options = dict(first.options)
    options["chains"] = [c for p in parts for c in p.options.get("chains", [p.num_samples])]
    members = [ws for p in parts for ws in p.members]
    return EnsemblePosterior(first.model, members, name, options, first.class_names)


def architecture_signature(model) -> list:
    """The architecture without layer/model names (Keras numbers them per process: dense_2, dense_6)."""
    sig = []
    for layer in model.layers:
        cfg = {k: v for k, v in layer.get_config().items() if k != "name"}
        sig.append((type(layer).__name__, repr(sorted(cfg.items())), [tuple(w.shape) for w in layer.weights]))
    return sig
