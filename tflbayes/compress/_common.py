"""Pieces the compression methods share: argument checks, model copies, fine-tuning, mask keeping."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from tflbayes._checks import check_inputs, check_labels, check_positive_float, check_positive_int
from tflbayes._checks import check_options as _check_options
from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError

__all__ = ["check_data", "check_options", "copy_model", "compile_for_finetune", "finetune", "KeepMask",
           "slot_pairs", "record", "steps_per_epoch", "seed_all"]


def check_data(posterior, data, what: str):
    """``data=(x, y)`` checked against the posterior (shape, finite, labels in range); required."""
    if data is None:
        raise InvalidInputError(f"{what} trains, so it needs the training data: pass data=(x_train, y_train).")
    try:
        x, y = data
    except (TypeError, ValueError):
        raise InvalidInputError("Invalid value received for argument `data`. Expected a tuple (x, y).") from None
    x = check_inputs(x, posterior.input_shape, "data[0]")
    y = check_labels(y, len(x), posterior.num_classes, "data[1]")
    return x, y


def check_options(method: str, options: dict, defaults: dict) -> dict:
    """The method's options with defaults filled in; unknown names raise, listing the valid ones."""
    _check_options(options, defaults, f"method {method!r}")
    out = {**defaults, **options}
    for name in ("epochs", "batch_size", "finetune_epochs", "prune_epochs", "sample_epochs", "members"):
        if name in out and out[name] is not None:
            out[name] = check_positive_int(name, out[name], minimum=0 if name.endswith("epochs") else 1)
    if "learning_rate" in out:
        out["learning_rate"] = check_positive_float("learning_rate", out["learning_rate"])
    return out


def copy_model(model, weights=None):
    """A fresh copy of ``model`` (same architecture and names) holding ``weights`` (default: its own)."""
    import tflbayes.layers  # noqa: F401  (registers the custom layers)

    m = keras.models.clone_model(model)
    m.set_weights(model.get_weights() if weights is None else weights)
    return m


def compile_for_finetune(model, learning_rate: float):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


class KeepMask(keras.callbacks.Callback):
    """Re-zero the pruned weights after every optimizer step, so training stays inside a mask.

    Args:
        pairs: a function ``model -> [(variable, keep_mask)]`` (called when training starts, so
            it can find the variables of whatever model ``fit`` trains).
    """

    def __init__(self, pairs):
        super().__init__()
        self._pairs_fn = pairs
        self._pairs = []

    def on_train_begin(self, logs=None):
        self._pairs = [(v, keras.backend.constant(m.astype(np.float32))) for v, m in self._pairs_fn(self.model)]
        self.apply()

    def apply(self):
        for v, m in self._pairs:
            v.assign(v * m)

    def on_train_batch_end(self, batch, logs=None):
        self.apply()


def slot_pairs(slots, masks):
    """``KeepMask`` pairs for a model with the architecture the ``slots`` came from."""

    def pairs(model):
        ws = model.weights
        return [(ws[sl.index], m) for sl, m in zip(slots, masks) if m is not None and not m.all()]

    return pairs


def finetune(model, x, y, *, epochs: int, batch_size: int, learning_rate: float, callbacks=(), verbose: int = 0,
             compiled: bool = False):
    """A few epochs of Adam on the cross-entropy; a NaN/inf loss raises DivergenceError."""
    from tflbayes.errors import DivergenceError

    if epochs == 0:
        return
    if not compiled:
        compile_for_finetune(model, learning_rate)
    hist = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose, shuffle=True,
                     callbacks=list(callbacks))
    losses = hist.history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise DivergenceError("Fine-tuning diverged (the loss became NaN/inf); try a smaller learning_rate.")


def record(posterior, entry: dict, key: str = "pruning") -> dict:
    """The posterior's options plus a record of this compression step (chained steps append)."""
    options = dict(posterior.options)
    prev = options.get("compression", [])
    options["compression"] = [*prev, {"step": key, **entry}]
    return options


def steps_per_epoch(n: int, batch_size: int) -> int:
    return int(math.ceil(n / batch_size))


def seed_all(seed: Optional[int]):
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
