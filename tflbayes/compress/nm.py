"""2:4 (m-by-n) sparsity with TF-MOT: in every 4 consecutive input weights of a unit, 2 are zero.

The pattern sparse tensor cores and XNNPACK's sparse kernels accelerate (Mishra et al. 2021,
"Accelerating Sparse Deep Neural Networks"; TF-MOT ``prune_low_magnitude(...,
sparsity_m_by_n=(2, 4))``). Blocks run along each kernel's input-channel axis in TFLite's layout
(``pruning_utils.weights_rearrange``); a kernel whose input axis is shorter than a block (e.g. a
first convolution on a 1-channel image) is padded by TF-MOT and so keeps its weights. The
sparsity is fixed at 50 % of the kernels that can hold the pattern.

Without ``data`` every member is masked one-shot (TF-MOT's ``generate_m_by_n_mask`` on its own
magnitudes). With ``data=(x, y)`` each member is fine-tuned ``epochs`` with TF-MOT's wrapper
and ``UpdatePruningStep`` (the mask is re-chosen as the weights move) and then masked.

Example:
    >>> sparse = tb.compress.prune(ens, method="2:4")                 # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from tflbayes._keras import keras, tf
from tflbayes.compress._common import copy_model, finetune, record, seed_all, steps_per_epoch
from tflbayes.compress._targets import kernel_slots, unpruned_layers

__all__ = ["prune_m_by_n", "m_by_n_mask", "is_m_by_n", "DEFAULTS", "M_BY_N"]

M_BY_N = (2, 4)
_M_BY_N_TYPES = ("Dense", "Conv2D")  # what TF-MOT's sparsity_m_by_n accepts
DEFAULTS = {"epochs": 2, "learning_rate": 1e-4, "batch_size": 64, "seed": 0, "verbose": 0}


def _utils():
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

    return pruning_utils


def m_by_n_mask(kernel: np.ndarray, m_by_n=M_BY_N) -> np.ndarray:
    """TF-MOT's m-by-n keep-mask of a Dense ``[K, D]`` or Conv2D ``[kh, kw, cin, cout]`` kernel."""
    u = _utils()
    w = tf.constant(np.asarray(kernel, np.float32))
    mask = u.m_by_n_sparsity_mask_prepare(u.generate_m_by_n_mask(u.weights_rearrange(w), m_by_n), w.shape)
    return mask.numpy() != 0


def is_m_by_n(kernel: np.ndarray, m_by_n=M_BY_N) -> bool:
    """Whether ``kernel`` holds the pattern (TF-MOT's ``is_pruned_m_by_n``)."""
    return bool(_utils().is_pruned_m_by_n(tf.constant(np.asarray(kernel, np.float32)), m_by_n))


def _mask_weights(weights, slots):
    ws = [np.array(w, dtype=np.float32, copy=True) for w in weights]
    for sl in slots:
        ws[sl.index] = np.where(m_by_n_mask(ws[sl.index]), ws[sl.index], np.float32(0))
    return ws


def _finetuned(model, weights, x, y, opts):
    import tensorflow_model_optimization as tfmot

    steps = steps_per_epoch(len(x), opts["batch_size"])
    sched = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=max(1, steps // 2))

    def wrap(layer):
        if type(layer) in (keras.layers.Dense, keras.layers.Conv2D):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=sched, sparsity_m_by_n=M_BY_N)
        return layer

    pm = keras.models.clone_model(copy_model(model, weights), clone_function=wrap)
    finetune(pm, x, y, epochs=opts["epochs"], batch_size=opts["batch_size"], learning_rate=opts["learning_rate"],
             callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=opts["verbose"])
    return tfmot.sparsity.keras.strip_pruning(pm).get_weights()


def prune_m_by_n(posterior, data=None, **options):
    """Every member of an ensemble to 2:4 sparsity (one-shot, or TF-MOT fine-tuning with ``data``)."""
    from tflbayes.compress._common import check_options
    from tflbayes.posterior import EnsemblePosterior

    opts = check_options("2:4", options, DEFAULTS)
    every = kernel_slots(posterior.model)
    slots = [sl for sl in every if sl.layer_type in _M_BY_N_TYPES]
    skipped = unpruned_layers(posterior.model)
    skipped.update({sl.key: f"{sl.layer_type}: TF-MOT's m-by-n pattern covers Dense and Conv2D kernels only"
                    for sl in every if sl.layer_type not in _M_BY_N_TYPES})
    members = []
    for i, ws in enumerate(posterior.members):
        if data is not None:
            seed_all(None if opts["seed"] is None else opts["seed"] + 1000 * i)
            ws = _finetuned(posterior.model, ws, *data, opts)
        members.append(_mask_weights(ws, slots))
    entry = {"method": "2:4", "m_by_n": list(M_BY_N), "fine_tuned": data is not None,
             **({"skipped": skipped} if skipped else {}),
             **({k: opts[k] for k in ("epochs", "learning_rate")} if data is not None else {})}
    return EnsemblePosterior(copy_model(posterior.model, members[0]), members, posterior.method,
                             record(posterior, entry), posterior.class_names)
