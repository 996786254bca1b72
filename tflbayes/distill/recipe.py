"""What a distillation method is: a :class:`Recipe` (targets, loss, student head, posterior type).

:func:`tflbayes.distill.distill` and the student search (:mod:`tflbayes.distill.search`) run every
method the same way: the teacher's samples on the transfer pool become targets
(:meth:`Recipe.targets`), the student is trained on :meth:`Recipe.loss` with Keras ``fit``
(:func:`fit_student`), and the trained network is wrapped in :meth:`Recipe.posterior`.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Sequence

import numpy as np

from tflbayes._keras import keras
from tflbayes.methods import _train
from tflbayes.methods.registry import TrainConfig

__all__ = ["Recipe", "RECIPES", "register_recipe", "fit_student"]

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


def fit_student(model, x: np.ndarray, y: np.ndarray, recipe: Recipe, *, epochs: int, batch_size: int,
                learning_rate: float, verbose: int = 0, callbacks: Sequence = (), what: Optional[str] = None,
                anneal: bool = True):
    """Compile ``model`` with the recipe's loss and train it on ``(x, y)``; returns the loss object.

    Adam with a cosine learning-rate decay from ``learning_rate`` to 2 % of it over the run
    (distillation targets are soft: a decaying rate lets the student settle on them).

    ``anneal=False`` leaves out the recipe's own callbacks (temperature annealing): fine-tuning
    runs at T = 1. A NaN/inf loss raises :class:`~tflbayes.errors.DivergenceError`.
    """
    loss = recipe.loss()
    steps = epochs * int(np.ceil(len(x) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, verbose=verbose)
    own = recipe.callbacks(loss, epochs) if anneal else []
    _train.train(model, x, y, cfg, callbacks=[*own, *callbacks],
                 what=what or f"{recipe.name} student")
    return loss
