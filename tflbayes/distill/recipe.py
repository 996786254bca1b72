"""What a distillation method is: a :class:`Recipe` (targets, loss, student head, posterior type).

:func:`tflbayes.distill.distill` and the student search (:mod:`tflbayes.distill.search`) run every
method the same way: the teacher's samples on the transfer pool become targets
(:meth:`Recipe.targets`), the student is trained on :meth:`Recipe.loss` with Keras ``fit``
(:func:`fit_student`), and the trained network is wrapped in :meth:`Recipe.posterior`.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Sequence

import numpy as np

from tflbayes._keras import keras, tf
from tflbayes.errors import DivergenceError, InvalidInputError
from tflbayes.methods import training
from tflbayes.methods.budget import AutoBudget, ceiling_warning, is_auto, repeated_dataset, stopping
from tflbayes.methods.registry import TrainConfig

__all__ = ["Recipe", "RECIPES", "register_recipe", "fit_student", "heldout_loss", "DISTILL_BUDGET"]

RECIPES: dict = {}


def register_recipe(cls):
    RECIPES[cls.name] = cls
    return cls


class Recipe:
    """One distillation method. Subclasses set ``name``, ``defaults``, ``min_teacher_samples``.

    Args:
        options: the method's options (defaults already merged in).
        num_classes: C.
        num_samples: S, the number of teacher samples per input in the targets.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}
    min_teacher_samples: ClassVar[int] = 1
    summary: ClassVar[str] = ""

    def __init__(self, options: dict, num_classes: int, num_samples: int):
        self.options = dict(options)
        self.num_classes = int(num_classes)
        self.num_samples = int(num_samples)

    def student(self, model):
        """The network to train, made from the checked C-logit student (default: itself)."""
        return model

    def targets(self, samples: np.ndarray) -> np.ndarray:
        """``[N, S, C]`` teacher sample probabilities -> the 2-D ``y`` of :meth:`loss`."""
        raise NotImplementedError

    def loss(self):
        """The Keras loss (a fresh object: its temperature variable belongs to one training run)."""
        raise NotImplementedError

    def callbacks(self, loss, epochs: int) -> list:
        """Callbacks for one training run with ``loss`` (e.g. temperature annealing)."""
        return []

    def posterior(self, model, options: dict, class_names: Sequence[str]):
        """Wrap the trained network as a Posterior."""
        raise NotImplementedError


#: ``epochs="auto"`` for distillation: optimizer steps between a floor and a ceiling, early stopping
#: on the recipe's loss on held-out transfer inputs (the temperature is annealed over the floor).
DISTILL_BUDGET = AutoBudget(min_steps=1000, max_steps=20000, patience_steps=500, min_patience_evals=5,
                            eval_steps=50, holdout=0.15, min_improvement=0.005)


def fit_student(model, x: np.ndarray, y: np.ndarray, recipe: Recipe, *, epochs, batch_size: int,
                learning_rate: float, verbose: int = 0, callbacks: Sequence = (), what: Optional[str] = None,
                anneal: bool = True, validation: Optional[tuple] = None, seed: Optional[int] = 0,
                budget: AutoBudget = DISTILL_BUDGET):
    """Compile ``model`` with the recipe's loss and train it on ``(x, y)``; returns ``(loss, record)``.

    Integer ``epochs``: Adam with a cosine learning-rate decay from ``learning_rate`` to 2 % of it over
    the run (distillation targets are soft: a decaying rate lets the student settle on them);
    ``record`` is None. ``epochs="auto"``: Adam at ``learning_rate``, the recipe's loss on
    ``validation = (x_val, y_val)`` (held-out transfer inputs and their targets) measured every
    ``max(steps per epoch, 50)`` steps, early stopping between ``budget.min_steps`` and
    ``budget.max_steps`` with the best weights restored; ``record`` says what ran (``steps_run``,
    ``epochs_run``, ``stopped_by``, ``heldout_loss``).

    ``anneal=False`` leaves out the recipe's own callbacks (temperature annealing): fine-tuning
    runs at T = 1. A NaN/inf loss raises :class:`~tflbayes.errors.DivergenceError`.
    """
    loss = recipe.loss()
    what = what or f"{recipe.name} student"
    if not is_auto(epochs):
        steps = epochs * int(np.ceil(len(x) / batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.02)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, verbose=verbose)
        own = recipe.callbacks(loss, epochs) if anneal else []
        training.train(model, x, y, cfg, callbacks=[*own, *callbacks], what=what)
        return loss, None
    if validation is None or not len(validation[0]):
        raise InvalidInputError("fit_student(epochs='auto') needs held-out transfer inputs (`validation`).")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    data, per_epoch = repeated_dataset(x, y, batch_size, seed)
    chunk = max(per_epoch, budget.eval_steps)
    x_val, y_val = validation
    stop = stopping(budget, chunk, lambda m: heldout_loss(m, loss, x_val, y_val), log_name="distillation loss")
    own = recipe.callbacks(loss, stop.min_evals) if anneal else []  # T reaches 1 within the floor
    nan = training.StopOnNaN()
    start = int(model.optimizer.iterations.numpy())
    model.fit(data, epochs=stop.max_evals, steps_per_epoch=chunk, callbacks=[*own, stop, *callbacks, nan],
              verbose=verbose)
    if hasattr(nan, "bad_batch"):
        raise DivergenceError(training.diverged_message(what, nan))
    steps = int(model.optimizer.iterations.numpy()) - start
    if stop.stopped_by != "early_stopping" and len(stop.history) < stop.max_evals:
        stop.stopped_by = "callback"
    stop.restore()
    ceiling_warning(stop, steps, per_epoch, chunk, what, {}, option="epochs")
    record = {"steps_run": steps, "epochs_run": round(steps / per_epoch, 2), "stopped_by": stop.stopped_by,
              "best_step": int(stop.best_eval * chunk) if stop.best_eval > 0 else 0,
              "heldout_loss": round(float(stop.best), 6) if np.isfinite(stop.best) else None}
    return loss, record


def heldout_loss(model, loss, x, y, batch: int = 1024) -> float:
    """Mean of the (per-input) distillation ``loss`` of ``model`` on ``(x, y)``."""
    total = 0.0
    for i in range(0, len(x), batch):
        out = model(x[i:i + batch], training=False)
        total += float(tf.reduce_sum(loss.call(tf.constant(y[i:i + batch]), out)).numpy())
    return total / len(x)
