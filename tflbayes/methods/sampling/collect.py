"""The callback that turns a ``model.fit`` run into posterior samples."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError

__all__ = ["SampleCollector", "collection_steps"]


def collection_steps(num_samples: int, burn_in: int, thinning: int) -> list:
    """The optimizer steps after which samples are taken: ``burn_in + thinning · j``, ``j = 1..num_samples``."""
    return [int(burn_in + thinning * (j + 1)) for j in range(int(num_samples))]


class SampleCollector(keras.callbacks.Callback):
    """Copy the model's weights at scheduled optimizer steps; stop the run on a NaN/inf loss.

    A step ``t`` counts optimizer updates since the start (``model.optimizer.iterations``);
    the weights "at step t" are those after ``t`` updates. With Keras's
    ``steps_per_execution = k`` the callback sees every k-th step and takes a due sample at
    the first step it sees at or after the scheduled one.

    Progress (steps, and samples collected / total) is shown with tqdm when ``verbose``.

    Attributes:
        samples: the collected weight sets (``model.get_weights()`` lists).
        sample_steps: the step each sample was taken at.
        diverged_at: ``None``, or ``{"step", "epoch", "batch"}`` of the first non-finite loss / weights.

    Example:
        >>> col = SampleCollector(collection_steps(10, burn_in=500, thinning=50))  # doctest: +SKIP
        >>> model.fit(x, y, epochs=..., callbacks=[col, *my_callbacks])  # doctest: +SKIP
        >>> len(col.samples)  # doctest: +SKIP
        10
    """

    def __init__(self, steps: Sequence[int], total_steps: Optional[int] = None, description: str = "sampling",
                 verbose: int = 0):
        super().__init__()
        steps = sorted(int(s) for s in steps)
        if not steps or steps[0] < 1 or len(set(steps)) != len(steps):
            raise InvalidInputError(
                "Invalid value received for argument `steps`. Expected distinct optimizer steps >= 1. "
                f"Received: steps={list(steps)[:5]}{'...' if len(steps) > 5 else ''}"
            )
        self.steps = steps
        self.total_steps = total_steps
        self.description = description
        self.verbose = int(verbose)
        self.samples: list = []
        self.sample_steps: list = []
        self.diverged_at: Optional[dict] = None
        self._bar = None

    @property
    def num_samples(self) -> int:
        return len(self.steps)

    @property
    def step(self) -> int:
        """Optimizer steps done so far (as seen by the callback)."""
        return getattr(self, "_offset", 0) + getattr(self, "_seen", 0)

    @property
    def done(self) -> bool:
        return len(self.samples) == len(self.steps)

    # -- Keras hooks ------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._offset = int(self.model.optimizer.iterations.numpy())
        self._seen = 0  # steps run in this fit call
        self._epoch_base = 0
        self._epoch = 0
        if self.verbose and self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total_steps, desc=self.description, unit="step", leave=True,
                             bar_format="{l_bar}{bar}| step {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
            self._bar.update(self._offset)
            self._show()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_base = self._seen

    def on_train_batch_end(self, batch, logs=None):
        seen = self._epoch_base + int(batch) + 1
        if self._bar is not None:
            self._bar.update(seen - self._seen)
        self._seen = seen
        step = self._offset + seen
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self._diverge(step, batch)
            return
        while not self.done and self.steps[len(self.samples)] <= step:
            weights = self.model.get_weights()
            if not all(np.all(np.isfinite(w)) for w in weights):
                self._diverge(step, batch)
                return
            self.samples.append(weights)
            self.sample_steps.append(step)
            self._show()

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None and logs and "loss" in logs:
            self._show(loss=logs["loss"])

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- helpers ------------------------------------------------------------------------------
    def _diverge(self, step, batch):
        if self.diverged_at is None:
            self.diverged_at = {"step": int(step), "epoch": int(self._epoch), "batch": int(batch)}
        self.model.stop_training = True

    def _show(self, loss=None):
        if self._bar is None:
            return
        text = f"samples {len(self.samples)}/{self.num_samples}"
        if loss is not None:
            text += f", loss {loss:.4g}"
        self._bar.set_postfix_str(text, refresh=False)
