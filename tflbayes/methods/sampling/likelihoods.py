"""The likelihoods the samplers support, as Keras losses (training) and numpy (diagnostics).

* ``"classification"``: categorical, ``log p(y | x, θ) = log softmax(f(x; θ))_y`` (the model outputs logits).
* ``"regression"``: Gaussian with known noise, ``log p(y | x, θ) = log N(y; f(x; θ), noise_std²)``;
  the model outputs the mean ``f`` (shape ``[N, 1]`` or ``[N, D]``) and ``y`` has the same shape
  (``[N]`` is read as ``[N, 1]``).

The Keras losses are batch means of ``-log p`` (constants dropped); the samplers scale them by
the training-set size (see :mod:`tflbayes.methods.sampling.optimizers`).
"""
from __future__ import annotations

import numpy as np

from tflbayes._checks import check_inputs
from tflbayes._keras import keras, register, tf
from tflbayes.errors import InvalidInputError

__all__ = ["LIKELIHOODS", "GaussianNLL", "keras_loss", "log_likelihood", "check_targets", "regression_predictive"]

LIKELIHOODS = ("classification", "regression")


@register
class GaussianNLL(keras.losses.Loss):
    """``0.5 · Σ_d (y_d - f_d)² / noise_std²`` per example: ``-log N(y; f, noise_std²)`` up to a constant.

    Example:
        >>> float(GaussianNLL(noise_std=2.0)(np.array([[1.0]]), np.array([[3.0]])))
        0.5
    """

    def __init__(self, noise_std: float = 1.0, name: str = "gaussian_nll", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not noise_std > 0:
            raise InvalidInputError(
                f"Invalid value received for argument `noise_std`. Expected a number > 0. Received: noise_std={noise_std!r}"
            )
        self.noise_std = float(noise_std)

    def call(self, y_true, y_pred):
        y_true = tf.reshape(tf.cast(y_true, y_pred.dtype), tf.shape(y_pred))
        return 0.5 * tf.reduce_sum(tf.square(y_true - y_pred), axis=-1) / self.noise_std ** 2

    def get_config(self):
        return {**super().get_config(), "noise_std": self.noise_std}


def keras_loss(likelihood: str, noise_std: float = 1.0, reduction: str = "auto"):
    """The batch-mean negative log-likelihood Keras minimises for ``likelihood``
    (``reduction="none"``: per example, for custom loops under a distribution strategy)."""
    if likelihood == "regression":
        return GaussianNLL(noise_std, reduction=reduction)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)


def log_likelihood(outputs: np.ndarray, y: np.ndarray, likelihood: str = "classification",
                   noise_std: float = 1.0) -> np.ndarray:
    """Per-example ``log p(y_i | x_i, θ)`` (float64 ``[N]``) from the model's ``outputs``."""
    out = np.asarray(outputs, dtype=np.float64)
    if likelihood == "regression":
        y = np.asarray(y, dtype=np.float64).reshape(out.shape)
        d = out.shape[-1]
        return (-0.5 * np.sum((y - out) ** 2, axis=-1) / noise_std ** 2
                - d * (np.log(noise_std) + 0.5 * np.log(2 * np.pi)))
    z = out - out.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return logp[np.arange(len(out)), np.asarray(y, dtype=np.int64).reshape(-1)]


def check_targets(y, num: int, name: str = "y") -> np.ndarray:
    """Regression targets: finite numbers, ``[num]`` or ``[num, D]``, as float32."""
    try:
        arr = np.asarray(y, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must hold numbers for likelihood='regression'.") from None
    if arr.ndim not in (1, 2) or arr.shape[0] != num:
        raise InvalidInputError(
            f"`{name}` must hold {num} regression targets ([N] or [N, D]). Received: shape={list(arr.shape)}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"`{name}` contains NaN or inf targets.")
    return arr


def regression_predictive(posterior, x) -> tuple:
    """Posterior predictive of a ``likelihood="regression"`` posterior: ``(mean, std)``, each ``[N, D]``.

    The predictive is the mixture ``1/S Σ_s N(f(x; θ_s), noise_std²)``: its mean is the average
    of the members' outputs and its variance their variance (epistemic) plus ``noise_std²``
    (aleatoric). (``posterior.predict`` is for classifiers: it applies a softmax.)
    """
    from tflbayes.posterior.base import forward

    x = check_inputs(x, posterior.input_shape, "x")
    noise = float(posterior.options.get("noise_std", 1.0))
    saved = posterior.model.get_weights()
    try:
        outs = []
        for ws in posterior.members:
            posterior.model.set_weights(ws)
            outs.append(forward(posterior.model, x))
    finally:
        posterior.model.set_weights(saved)
    outs = np.stack(outs)
    return outs.mean(0), np.sqrt(outs.var(0) + noise ** 2)
