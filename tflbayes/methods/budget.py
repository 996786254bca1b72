"""``epochs="auto"``: a training budget that adapts to the data (early stopping on a held-out NLL).

A budget in epochs tuned on 1,400 digits gives a handful of optimizer steps on a data set of
80 rows. The automatic budget counts optimizer steps instead:

- a held-out set: ``validation_data`` when given, else a stratified ``holdout`` fraction of the
  training rows (at least one row per class that has two or more; the rest are trained on);
- the held-out NLL of the model's predictive (the mean of a few forward passes when the model is
  stochastic: MC dropout, variational layers) is measured every ``max(steps per epoch, eval_steps)``
  optimizer steps;
- training stops when it has not improved by ``min_improvement`` (relative) and ``min_delta``
  (absolute: on separable data the NLL keeps shrinking towards 0 by meaningless amounts) for ``patience_steps``,
  but never before ``min_steps`` (the floor) and always at ``max_steps`` (the ceiling); the weights
  with the best held-out NLL after the floor are restored;
- a Python warning, once per run, when the ceiling is reached while the held-out NLL was still
  falling, naming the option to change (an integer ``epochs``).

Keras's progress bar (``verbose=1``) shows one evaluation period as an "epoch".

What ran is returned as plain data (``steps_run``, ``epochs_run``, ``stopped_by``, ``heldout_rows``,
``heldout_nll``) and recorded by :func:`tflbayes.fit` in ``posterior.options``.

Example:
    >>> post = tb.fit(build, (x, y), method="mc_dropout")           # epochs="auto"  # doctest: +SKIP
    >>> post.options["steps_run"], post.options["stopped_by"]       # doctest: +SKIP
    (1450, 'early_stopping')
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tflbayes._keras import keras, tf
from tflbayes.errors import InvalidInputError

__all__ = ["AUTO", "AutoBudget", "DEFAULT_BUDGET", "check_epochs", "holdout_split", "HeldOutStopping",
           "heldout_nll", "is_auto", "stopping", "repeated_dataset", "fit_auto", "ceiling_warning"]

AUTO = "auto"


@dataclass(frozen=True)
class AutoBudget:
    """The knobs of ``epochs="auto"`` (optimizer steps; ``holdout`` a fraction of the rows)."""

    min_steps: int = 500
    max_steps: int = 20000
    patience_steps: int = 300
    min_patience_evals: int = 5
    eval_steps: int = 25
    holdout: float = 0.15
    min_improvement: float = 0.01
    min_delta: float = 1e-3  # improvements smaller than this (absolute; nats) do not count either
    min_rows: int = 8  # fewer training rows: no held-out set, train for min_steps


DEFAULT_BUDGET = AutoBudget()


def is_auto(epochs) -> bool:
    return isinstance(epochs, str) and epochs == AUTO


def check_epochs(epochs, name: str = "epochs"):
    """``"auto"`` or a positive integer; anything else raises InvalidInputError naming ``name``."""
    if is_auto(epochs):
        return AUTO
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or int(epochs) < 1:
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected 'auto' or an integer >= 1. "
            f"Received: {name}={epochs!r}")
    return int(epochs)


def holdout_split(y, fraction: float, seed: Optional[int] = 0):
    """Stratified ``(train_idx, heldout_idx)``: ``round(fraction · n_c)`` rows of every class ``c``
    with ``n_c >= 2`` (at least 1, at most ``n_c - 1``); classes with one row stay in training."""
    y = np.asarray(y)
    rng = np.random.default_rng(0 if seed is None else int(seed))
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        held.append(rng.choice(idx, size=k, replace=False))
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(len(y)), held)
    return train, held


def _probs(model, x, batch=1024):
    out = [tf.nn.softmax(model(x[i:i + batch], training=False)).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.float64)


def heldout_nll(model, x, y, passes: int = 4) -> float:
    """NLL of the model's predictive on ``(x, y)``; a stochastic model (two passes differ) averages
    ``passes`` forward passes' probabilities first."""
    p = _probs(model, x)
    q = _probs(model, x)
    if not np.allclose(p, q, atol=1e-6):
        p = (p + q + sum(_probs(model, x) for _ in range(max(0, passes - 2)))) / max(2, passes)
    y = np.asarray(y, dtype=np.int64)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


class HeldOutStopping(keras.callbacks.Callback):
    """Early stopping on a held-out score, evaluated at the end of every Keras epoch.

    Evaluations before the floor (``min_evals``) are recorded but do not count: the best weights
    and the patience window start at the floor.

    Args:
        score: ``score(model) -> float``, lower is better (e.g. :func:`heldout_nll` on held-out rows).
        min_evals, max_evals: the floor and the ceiling in evaluations.
        patience: evaluations without a relative improvement of ``min_improvement`` before stopping.
    """

    def __init__(self, score, *, min_evals: int, max_evals: int, patience: int, min_improvement: float,
                 min_delta: float = 0.0, log_name: str = "heldout_nll"):
        super().__init__()
        self.score, self.log_name = score, log_name
        self.min_evals, self.max_evals, self.patience = int(min_evals), int(max_evals), int(patience)
        self.min_improvement, self.min_delta = float(min_improvement), float(min_delta)
        self.history: list = []
        self.best, self.best_eval, self.best_weights = math.inf, -1, None
        self._anchor, self._anchor_eval = math.inf, -1
        self.stopped_by = "ceiling"

    def on_epoch_end(self, epoch, logs=None):
        value = float(self.score(self.model))
        if logs is not None:
            logs[self.log_name] = value
        self.history.append(value)
        n = len(self.history)
        if not np.isfinite(value) or n < self.min_evals:
            return  # before the floor; a NaN loss is the NaN stop's business
        if value < self.best:
            self.best, self.best_eval, self.best_weights = value, n, self.model.get_weights()
        if self._anchor_eval < 0 or value < self._anchor - self._needed(self._anchor):
            self._anchor, self._anchor_eval = value, n
        if n - self._anchor_eval >= self.patience:
            self.stopped_by = "early_stopping"
            self.model.stop_training = True

    def _needed(self, reference: float, factor: float = 1.0) -> float:
        return factor * max(self.min_improvement * abs(reference), self.min_delta)

    def restore(self):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def still_falling(self) -> Optional[tuple]:
        """At the ceiling: ``(nll before, best)`` when the last ``patience`` evaluations improved
        the best held-out score by more than twice the needed improvement, else None."""
        h = self.history[max(0, self.min_evals - 1):]
        if self.stopped_by != "ceiling" or len(h) <= self.patience:
            return None
        before = min(h[:-self.patience])
        recent = min(h[-self.patience:])
        if recent < before - self._needed(before, 2.0):
            return before, recent
        return None


def stopping(budget: AutoBudget, chunk: int, score, log_name: str = "heldout_nll") -> HeldOutStopping:
    """The :class:`HeldOutStopping` of ``budget`` for evaluations every ``chunk`` optimizer steps."""
    floor = max(1, math.ceil(budget.min_steps / chunk))
    return HeldOutStopping(score, min_evals=floor, max_evals=max(floor, budget.max_steps // chunk),
                           patience=max(budget.min_patience_evals, math.ceil(budget.patience_steps / chunk)),
                           min_improvement=budget.min_improvement, min_delta=budget.min_delta, log_name=log_name)


def repeated_dataset(x, y, batch_size, seed):
    """Shuffled every pass, batched (last batch partial) and repeated; ``(dataset, steps_per_epoch)``."""
    n = len(x)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        n, seed=None if seed is None else int(seed), reshuffle_each_iteration=True)
    return data.batch(batch_size).repeat().prefetch(2), int(math.ceil(n / batch_size))


def fit_auto(model, x, y, cfg, *, callbacks=(), budget: AutoBudget = DEFAULT_BUDGET, what="model",
             warn_state: Optional[dict] = None) -> tuple:
    """Train ``model`` (compiled) with the automatic budget; returns ``(history, record)``.

    ``callbacks`` are the user's and tflbayes's own (e.g. the NaN stop, which must come last).
    """
    if cfg.validation_data is not None:
        x_fit, y_fit = x, y
        x_val, y_val = cfg.validation_data
        held = "validation_data"
    elif len(x) >= budget.min_rows:
        tr, he = holdout_split(y, budget.holdout, cfg.seed)
        x_fit, y_fit, x_val, y_val = x[tr], y[tr], x[he], y[he]
        held = int(len(he))
    else:
        x_fit, y_fit, x_val, y_val, held = x, y, None, None, 0
    data, per_epoch = repeated_dataset(x_fit, y_fit, cfg.batch_size, cfg.seed)
    chunk = max(per_epoch, budget.eval_steps)
    own = []
    if x_val is not None and len(x_val):
        stop = stopping(budget, chunk, lambda m: heldout_nll(m, x_val, y_val))
        evals = stop.max_evals
        own.append(stop)
    else:
        stop, evals = None, math.ceil(budget.min_steps / chunk)
    start = int(model.optimizer.iterations.numpy())
    hist = model.fit(data, epochs=evals, steps_per_epoch=chunk, validation_data=cfg.validation_data,
                     callbacks=[*cfg.callbacks, *own, *callbacks], verbose=cfg.verbose)
    steps = int(model.optimizer.iterations.numpy()) - start
    record = {"steps_run": steps, "epochs_run": round(steps / per_epoch, 2), "heldout_rows": held}
    if stop is None:
        record["stopped_by"] = "floor"
        return hist, record
    stopped_early = stop.stopped_by == "early_stopping"
    if not stopped_early and len(stop.history) < stop.max_evals:
        stop.stopped_by = "callback"  # a user callback (or the NaN stop) ended the run
    record["stopped_by"] = stop.stopped_by
    stop.restore()
    record["best_step"] = int(stop.best_eval * chunk) if stop.best_eval > 0 else 0
    record["heldout_nll"] = round(float(stop.best), 6) if np.isfinite(stop.best) else None
    ceiling_warning(stop, steps, per_epoch, chunk, what, warn_state, option="epochs")
    return hist, record


def ceiling_warning(stop: HeldOutStopping, steps: int, per_epoch: int, chunk: int, what: str,
                    warn_state: Optional[dict], option: str = "epochs"):
    """Warn (once per ``warn_state``) when ``stop`` hit the ceiling with the held-out score still falling."""
    falling = stop.still_falling()
    if falling is None or (warn_state or {}).get("warned"):
        return
    if warn_state is not None:
        warn_state["warned"] = True
    epochs_now = math.ceil(steps / per_epoch)
    warnings.warn(
        f"Training of the {what} stopped at the ceiling of {option}='auto' ({steps} optimizer steps, "
        f"{epochs_now} epochs) while the held-out {stop.log_name} was still falling ({falling[0]:.4g} -> "
        f"{falling[1]:.4g} over the last {stop.patience * chunk} steps). Pass an integer `{option}` larger than "
        f"{epochs_now} (e.g. {option}={2 * epochs_now}) to train longer.", stacklevel=5)
