"""The training loop every method shares (public: methods, distillation and compression reuse it).

``train`` runs ``model.fit`` with the NaN stop (:class:`StopOnNaN`, raising a DivergenceError that
names the step) and the adaptive ``epochs="auto"`` budget of :mod:`tflbayes.methods.budget`.
"""
from __future__ import annotations

import contextlib

import numpy as np

from tflbayes._keras import keras
from tflbayes.errors import DivergenceError, InvalidInputError

__all__ = ["scope", "build", "compile_classifier", "train", "set_seed", "StopOnNaN", "diverged_message"]


def set_seed(seed):
    if seed is not None:
        keras.utils.set_random_seed(int(seed))


def scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def build(build_model, x_shape, y=None):
    """Call ``build_model`` and check what it returned against the data (shape, classes)."""
    model = build_model()
    if not isinstance(model, keras.Model):
        raise InvalidInputError(f"`build_model` must return a Keras model. It returned {type(model).__name__}.")
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise InvalidInputError(
            f"`build_model` returned a subclassed model ({type(model).__name__}); tflbayes needs a Sequential or "
            "functional model so it can rewrite layers and convert them to LiteRT."
        )
    want = tuple(model.input_shape[1:])
    if len(want) != len(x_shape) or any(w is not None and w != s for w, s in zip(want, x_shape)):
        raise InvalidInputError(
            f"The model built by `build_model` takes inputs of shape {list(want)}, the data has {list(x_shape)}."
        )
    if y is not None:
        n_out = model.output_shape[-1]
        if int(y.max()) >= n_out:
            raise InvalidInputError(
                f"The labels go up to {int(y.max())} but the model has {n_out} outputs (classes 0..{n_out - 1})."
            )
    return model


def compile_classifier(model, learning_rate, optimizer=None):
    model.compile(
        optimizer=optimizer if optimizer is not None else keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


class StopOnNaN(keras.callbacks.Callback):
    """Stop ``model.fit`` at the first batch whose loss is NaN/inf (``bad_batch``, ``bad_epoch`` are set)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.model.stop_training = True
            self.bad_batch = batch
            self.bad_epoch = getattr(self, "_epoch", 0)


def diverged_message(what, nan: StopOnNaN) -> str:
    return (f"Training of the {what} diverged (loss became NaN/inf at batch {nan.bad_batch} of epoch "
            f"{nan.bad_epoch + 1}); try a smaller learning rate.")


def train(model, x, y, cfg, *, epochs=None, callbacks=(), what="model"):
    """``model.fit`` with the config's options; raises DivergenceError on a NaN/inf loss.

    ``cfg.epochs == "auto"`` (and no ``epochs`` here) trains with the adaptive budget of
    :mod:`tflbayes.methods.budget` (early stopping on a held-out NLL between a floor and a ceiling in
    optimizer steps); what ran is appended to ``cfg.runs`` (``tb.fit`` records it in the options).
    """
    from tflbayes.methods import budget

    nan = StopOnNaN()
    if epochs is None and budget.is_auto(cfg.epochs):
        hist, record = budget.fit_auto(model, x, y, cfg, callbacks=[*callbacks, nan], what=what,
                                       warn_state=cfg.warn_state)
        if hasattr(nan, "bad_batch"):
            raise DivergenceError(diverged_message(what, nan))
        cfg.runs.append(record)
        return hist
    hist = model.fit(
        x, y,
        epochs=cfg.epochs if epochs is None else epochs,
        batch_size=cfg.batch_size,
        validation_data=cfg.validation_data,
        callbacks=[*cfg.callbacks, *callbacks, nan],
        verbose=cfg.verbose,
        shuffle=True,
    )
    if hasattr(nan, "bad_batch"):
        raise DivergenceError(diverged_message(what, nan))
    return hist
