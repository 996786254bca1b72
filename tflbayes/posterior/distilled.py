"""A student that predicts chosen posterior expectations: Bayesian Dark Knowledge and GPED.

The network outputs ``C + E`` values: ``C`` logits of the posterior predictive and one value per
extra distilled expectation. Supported expectations (``options["expectations"]``):

- ``"predictive"`` (always first): ``E_theta[p(y | x, theta)]`` as ``softmax(z[:C])``.
- ``"expected_entropy"``: ``E_theta[H[p(y | x, theta)]]`` (aleatoric), and
- ``"mutual_information"``: ``E_theta[KL(p(y | x, theta) || pbar(y | x))]`` (epistemic), each as
  ``ln(C) * sigmoid(z_j)`` on its own output unit, which keeps it in ``[0, ln C]``.

What :meth:`DistilledPosterior.predict` returns:

- Bayesian Dark Knowledge (``expectations=["predictive"]``, Korattikara et al. 2015): ``probs`` and
  ``total = H[probs]`` only; ``aleatoric`` and ``epistemic`` are ``None``. One network that
  matches the predictive distribution carries no knowledge uncertainty, and its total cannot be
  split without a second expectation: tflbayes does not invent one.
- GPED (``["predictive", "expected_entropy"]``, Vadera, Jalaian & Marlin 2020): ``probs``,
  ``total = H[probs]``, ``aleatoric`` = the distilled expected entropy and
  ``epistemic = max(total - aleatoric, 0)``. With a ``"mutual_information"`` head too,
  ``epistemic`` is that head's value (distilled directly rather than as a difference of two
  fitted quantities; it ranks out-of-distribution inputs far better, see the GPED recipe).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError, InvalidTypeError
from tflbayes.posterior.base import SingleNetworkPosterior, forward, softmax
from tflbayes.uncertainty import Prediction, entropy

__all__ = ["DistilledPosterior", "EXPECTATIONS"]

#: The posterior expectations a distilled student can predict, in output order.
EXPECTATIONS = ("predictive", "expected_entropy", "mutual_information")


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))


class DistilledPosterior(SingleNetworkPosterior):
    """One network that predicts posterior expectations (BDK / GPED students).

    Args:
        model: Keras model with ``C + len(expectations) - 1`` outputs (module docstring).
        method: ``"bdk"`` or ``"gped"``.
        options: hyper-parameters; ``expectations`` lists what the outputs mean
            (default ``["predictive"]``).
        class_names: one name per class (``C`` names).

    A distilled student has no posterior samples: :meth:`sample_probs` returns its predictive
    distribution as one sample (``S = 1``), and the uncertainty comes from :meth:`predict`.

    Example:
        >>> student = tb.distill(ensemble, ds.x_train, method="gped")   # doctest: +SKIP
        >>> student.predict(ds.x_test).aleatoric                         # doctest: +SKIP
    """

    kind = "distilled"

    def __init__(self, model, method: str, options: Optional[dict] = None,
                 class_names: Optional[Sequence[str]] = None):
        if not isinstance(model, keras.Model):
            raise InvalidTypeError(f"`model` must be a Keras model. Received: {type(model).__name__}")
        options = dict(options or {})
        exps = list(options.setdefault("expectations", ["predictive"]))
        if (not exps or exps[0] != "predictive" or any(e not in EXPECTATIONS for e in exps)
                or len(set(exps)) != len(exps)):
            raise InvalidInputError(
                "Invalid value received for option `expectations`. Expected 'predictive' first, then any of "
                f"{', '.join(repr(e) for e in EXPECTATIONS[1:])}. Received: expectations={exps!r}")
        n_out = int(model.output_shape[-1])
        c = n_out - (len(exps) - 1)
        names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
        if c < 2 or len(names) != c:
            raise InvalidInputError(
                f"Invalid value received for argument `class_names`: the model has {n_out} outputs, i.e. "
                f"{c} classes plus {len(exps) - 1} distilled expectation(s), but {len(names)} class names were given.")
        self.model = model
        self.method = str(method)
        self.options = options
        self.class_names = [str(n) for n in names]

    @property
    def expectations(self) -> list:
        return list(self.options["expectations"])

    @property
    def num_samples(self) -> int:
        return 1

    def outputs(self, x) -> dict:
        """The distilled expectations on ``x``: ``{"probs": [N, C], "expected_entropy": [N], ...}``."""
        z = forward(self.model, self._check_x(x))
        c = self.num_classes
        out = {"probs": softmax(z[:, :c])}
        for j, name in enumerate(self.expectations[1:]):
            out[name] = math.log(c) * _sigmoid(z[:, c + j])
        return out

    def sample_probs(self, x, num_samples: Optional[int] = None) -> np.ndarray:
        """``[1, N, C]``: the student's predictive distribution as a single sample (it has no others)."""
        if num_samples not in (None, 1):
            raise InvalidInputError(
                f"A distilled {self.method} student has no posterior samples; num_samples must be 1 or None. "
                f"Received: num_samples={num_samples!r}")
        return self.outputs(x)["probs"][None]

    def predict(self, x, num_samples: Optional[int] = None) -> Prediction:
        """probs and total; aleatoric/epistemic from the distilled heads (``None`` for BDK).

        aleatoric = the expected-entropy head (else ``max(total - MI head, 0)``); epistemic = the
        mutual-information head (else ``max(total - expected entropy head, 0)``).
        """
        out = self.outputs(x)
        probs = out["probs"]
        total = entropy(probs)
        ee, mi = out.get("expected_entropy"), out.get("mutual_information")
        if ee is None and mi is None:
            return Prediction(probs=probs, total=total, aleatoric=None, epistemic=None)
        aleatoric = ee if ee is not None else np.maximum(total - mi, 0.0)
        epistemic = mi if mi is not None else np.maximum(total - ee, 0.0)
        return Prediction(probs=probs, total=total, aleatoric=aleatoric, epistemic=epistemic)
