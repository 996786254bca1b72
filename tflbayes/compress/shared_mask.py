"""Prune-then-sample: one sparsity mask for the whole posterior (survey §3.1, second approach).

1. **Find the mask.** Iterative magnitude pruning with fine-tuning (Han et al. 2015, "Learning both
   Weights and Connections") of one network, member 0 of the given ensemble: TF-MOT's
   ``prune_low_magnitude`` with a polynomial schedule from 0 to the target sparsity over
   ``prune_epochs`` epochs (a mask update every half epoch, fine-tuning in between, kept by
   ``UpdatePruningStep``), then ``finetune_epochs`` more at the final mask. This gives the sparse
   structure *and* a good starting point inside it.
2. **Sample inside it.** ``sampler="sghmc"`` runs SG-MCMC (``tb.fit(..., method="sghmc")``) from
   that starting point, re-zeroing the pruned weights after every step, so the chain lives in the
   subspace the mask spans. ``sampler="ensemble"`` (the fallback when the SG-MCMC methods are not
   installed) fine-tunes S copies restricted to the mask, each from the pruned network plus
   Gaussian noise (``perturb`` × each kernel's std of kept weights) with its own data order
   (``init="members"``: from the given ensemble's members cut to the mask instead, which keeps
   their diversity but starts far from a good point inside the mask). ``"auto"`` picks SG-MCMC
   when it is available.

Every member has its non-zeros in the same places, so the result is an
:class:`~tflbayes.posterior.EnsemblePosterior` with ``mask`` set: its folder stores the indices
once and the S members' values (``O(2N + NS)`` instead of ``O(3NS)``), and the ``batched``
bundle can keep that layout on the device (``sparse_layout="shared_mask"``).

Example:
    >>> sm = tb.compress.prune(ens, 0.9, method="shared_mask", data=(x, y))  # doctest: +SKIP
    >>> sm.mask is not None                                                  # doctest: +SKIP
    True
"""
from __future__ import annotations

import numpy as np

from tflbayes._keras import keras
from tflbayes.compress._common import (KeepMask, copy_model, finetune, record, seed_all, slot_pairs,
                                       steps_per_epoch)
from tflbayes.compress._targets import keep_masks, keep_top, kernel_slots, num_pruned
from tflbayes.errors import InvalidInputError

__all__ = ["prune_shared_mask", "find_mask", "SAMPLERS", "DEFAULTS"]

SAMPLERS = ("auto", "sghmc", "ensemble")
INITS = ("pruned", "members")
DEFAULTS = {"members": None, "prune_epochs": 6, "finetune_epochs": 6, "sampler": "auto", "sample_epochs": None,
            "sampler_options": None, "init": "pruned", "perturb": 0.3, "learning_rate": 2e-3, "batch_size": 64,
            "seed": 0, "verbose": 0}


def _layer_targets(weights, slots, sparsity, scope) -> list:
    """Per-kernel number of weights to prune (global scope: from the trained network's ranking)."""
    if scope == "layer":
        return [num_pruned(sl.size, sparsity) if num_pruned(sl.size, sparsity) < sl.size else sl.size - 1
                for sl in slots]
    masks = keep_masks([np.abs(weights[sl.index]) for sl in slots], sparsity, "global")
    return [int((~m).sum()) for m in masks]


def find_mask(model, weights, x, y, sparsity: float, scope: str, *, prune_epochs: int, finetune_epochs: int,
              learning_rate: float, batch_size: int, verbose: int = 0):
    """Iterative magnitude pruning with fine-tuning (TF-MOT) of one network.

    Returns:
        ``(weights, keep_masks)``: the pruned, fine-tuned weights (``model.get_weights()`` order)
        and one boolean mask per prunable kernel (``kernel_slots`` order), with exactly the
        requested number of zeros per kernel.
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    slots = kernel_slots(model)
    targets = _layer_targets(weights, slots, sparsity, scope)
    by_name = {}  # layer -> (weights to prune, weights) over its kernels (a GRU has two)
    for sl, t in zip(slots, targets):
        t0, n0 = by_name.get(sl.layer, (0, 0))
        by_name[sl.layer] = (t0 + t, n0 + sl.size)
    steps = steps_per_epoch(len(x), batch_size)
    freq = max(1, steps // 2)
    end = max(freq, (prune_epochs * steps // freq) * freq)  # the last mask update lands on the target

    def wrap(layer):
        t, size = by_name.get(layer.name, (0, 0))
        if t == 0 or not PruneRegistry.supports(layer):  # the exact one-shot cut below still applies
            return layer
        sched = tfmot.sparsity.keras.PolynomialDecay(0.0, t / size, 0, end, frequency=freq)
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=sched)

    base = copy_model(model, weights)
    if any(targets):
        pruned = keras.models.clone_model(base, clone_function=wrap)
        epochs = int(np.ceil(end / steps)) + finetune_epochs
        finetune(pruned, x, y, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                 callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=verbose)
        base = tfmot.sparsity.keras.strip_pruning(pruned)
    out = [np.array(w, dtype=np.float32, copy=True) for w in base.get_weights()]
    masks = []
    for sl, t in zip(slots, targets):  # exact counts (TF-MOT's threshold may keep ties)
        w = out[sl.index]
        m = keep_top(np.abs(w), w.size - t)
        out[sl.index] = np.where(m, w, np.float32(0))
        masks.append(m)
    return out, masks


def sghmc_available() -> bool:
    try:
        import tflbayes.methods.sampling  # noqa: F401  (registers sgld / sghmc)
    except Exception:  # not installed yet, or broken: fall back
        return False
    from tflbayes.methods.registry import METHODS

    return "sghmc" in METHODS


def _apply(weights, slots, masks):
    ws = [np.array(w, dtype=np.float32, copy=True) for w in weights]
    for sl, m in zip(slots, masks):
        ws[sl.index] = np.where(m, ws[sl.index], np.float32(0))
    return ws


def _sample_sghmc(model, start, slots, masks, x, y, s, opts, class_names):
    from tflbayes.methods.fit import fit

    extra = dict(opts["sampler_options"] or {})
    post = fit(lambda: copy_model(model, start), (x, y), method="sghmc", epochs=opts["sample_epochs"],
               batch_size=opts["batch_size"], verbose=opts["verbose"], seed=opts["seed"],
               callbacks=[KeepMask(slot_pairs(slots, masks))], class_names=class_names, num_samples=s, **extra)
    return [_apply(ws, slots, masks) for ws in post.members], dict(post.options)


def _sample_ensemble(posterior, model, start, slots, masks, x, y, s, opts):
    rng = np.random.default_rng(opts["seed"])
    members = []
    for i in range(s):
        seed_all(None if opts["seed"] is None else opts["seed"] + 1000 * i)
        if opts["init"] == "members":
            ws = _apply(posterior.members[i % posterior.num_samples], slots, masks)
        else:
            ws = [np.array(w, dtype=np.float32, copy=True) for w in start]
            if i > 0 and opts["perturb"] > 0:  # member 0 starts at the pruned network itself
                for sl, m in zip(slots, masks):
                    w = ws[sl.index]
                    scale = float(np.std(w[m])) if m.any() else 0.0
                    w += (opts["perturb"] * scale * rng.standard_normal(w.shape) * m).astype(np.float32)
        m = copy_model(model, ws)
        finetune(m, x, y, epochs=opts["sample_epochs"], batch_size=opts["batch_size"],
                 learning_rate=opts["learning_rate"], callbacks=[KeepMask(slot_pairs(slots, masks))],
                 verbose=opts["verbose"])
        members.append(_apply(m.get_weights(), slots, masks))
    return members


def prune_shared_mask(posterior, sparsity: float, scope: str, x, y, **options):
    """See the module docstring. Options (defaults in ``DEFAULTS``):

    members: S of the result (default: the given ensemble's). prune_epochs / finetune_epochs: the
    mask search. sampler: ``"auto"`` | ``"sghmc"`` | ``"ensemble"``. sample_epochs: the chain's
    length (default 10) or each member's fine-tuning (default 3). sampler_options: extra options
    for ``tb.fit(..., method="sghmc")`` (``step_size``, ``burn_in``, ...). init (``"pruned"`` |
    ``"members"``) and perturb (0.3): where the ``ensemble`` sampler's members start. learning_rate,
    batch_size, seed, verbose: the usual.
    """
    from tflbayes.compress._common import check_options
    from tflbayes.posterior import EnsemblePosterior

    opts = check_options("shared_mask", options, DEFAULTS)
    if opts["sampler"] not in SAMPLERS:
        raise InvalidInputError(
            f"Invalid value received for argument `sampler`. Expected one of {', '.join(map(repr, SAMPLERS))}. "
            f"Received: sampler={opts['sampler']!r}")
    if opts["init"] not in INITS:
        raise InvalidInputError(
            f"Invalid value received for argument `init`. Expected one of {', '.join(map(repr, INITS))}. "
            f"Received: init={opts['init']!r}")
    perturb = opts["perturb"]
    if isinstance(perturb, bool) or not isinstance(perturb, (int, float)) or not 0 <= perturb < float("inf"):
        raise InvalidInputError(f"Invalid value received for argument `perturb`. Expected a float >= 0. "
                                f"Received: perturb={perturb!r}")
    if opts["prune_epochs"] < 1:
        raise InvalidInputError("Invalid value received for argument `prune_epochs`. Expected an integer >= 1. "
                                f"Received: prune_epochs={opts['prune_epochs']!r}")
    sampler = opts["sampler"]
    if sampler == "auto":
        sampler = "sghmc" if sghmc_available() else "ensemble"
    elif sampler == "sghmc" and not sghmc_available():
        raise InvalidInputError("sampler='sghmc' needs the SG-MCMC methods (tflbayes.methods.sampling), which are "
                                "not available; use sampler='ensemble' or 'auto'.")
    s = posterior.num_samples if opts["members"] is None else opts["members"]
    if opts["sample_epochs"] is None:
        opts["sample_epochs"] = 10 if sampler == "sghmc" else 3
    seed_all(opts["seed"])
    model = posterior.model
    slots = kernel_slots(model)
    start, masks = find_mask(model, posterior.members[0], x, y, sparsity, scope,
                             prune_epochs=opts["prune_epochs"], finetune_epochs=opts["finetune_epochs"],
                             learning_rate=opts["learning_rate"], batch_size=opts["batch_size"],
                             verbose=opts["verbose"])
    entry = {"method": "shared_mask", "sparsity": float(sparsity), "scope": scope, "sampler": sampler,
             **{k: opts[k] for k in ("prune_epochs", "finetune_epochs", "sample_epochs", "learning_rate")},
             **({"init": opts["init"], "perturb": float(opts["perturb"])} if sampler == "ensemble" else {})}
    if sampler == "sghmc":
        members, chain_options = _sample_sghmc(model, start, slots, masks, x, y, s, opts, posterior.class_names)
        method, options = "sghmc", {**chain_options, "compression": record(posterior, entry)["compression"]}
    else:
        members = _sample_ensemble(posterior, model, start, slots, masks, x, y, s, opts)
        method, options = posterior.method, record(posterior, entry)
    mask = [None] * len(members[0])
    for sl, m in zip(slots, masks):
        mask[sl.index] = None if m.all() else m
    return EnsemblePosterior(copy_model(model, members[0]), members, method, options, posterior.class_names,
                             mask=mask)
