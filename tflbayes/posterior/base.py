"""The one type every stage passes on: :class:`Posterior`."""
from __future__ import annotations

import abc
from typing import ClassVar, Optional, Sequence

import numpy as np

from tflbayes._checks import check_classification, check_inputs
from tflbayes._keras import keras, tf
from tflbayes.uncertainty import Prediction, prediction_from_samples
from tflbayes.errors import InvalidInputError, InvalidTypeError

__all__ = ["Posterior", "SingleNetworkPosterior", "softmax", "forward"]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def forward(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of ``model`` on ``x`` in batches, as float64 numpy (no Keras progress bar)."""
    out = [model(tf.constant(x[i : i + batch_size]), training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out, axis=0).astype(np.float64)


class Posterior(abc.ABC):
    """An approximate posterior over the weights of one Keras architecture.

    Subclasses say how a posterior *sample* is drawn: :class:`EnsemblePosterior` (S fixed
    weight sets), :class:`StochasticPosterior` (a forward pass that samples). The network
    always outputs logits; probabilities are the softmax of each sample.

    Attributes:
        model: the Keras model (architecture; for ensembles, holding some member's weights).
        method: the method that made it (``"deep_ensemble"``, ``"mc_dropout"``, ...).
        options: the method's hyper-parameters (plain JSON data).
        class_names: one name per output class.
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        """Every subclass that names its ``kind`` registers itself for storage (``tb.load``)."""
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            from tflbayes.posterior.storage import register_kind

            register_kind(cls)

    def __init__(self, model, method: str, options: Optional[dict] = None,
                 class_names: Optional[Sequence[str]] = None):
        if not isinstance(model, keras.Model):
            raise InvalidTypeError(f"`model` must be a Keras model. Received: {type(model).__name__}")
        self.model = model
        self.method = str(method)
        self.options = dict(options or {})
        n_out = int(model.output_shape[-1])
        names = list(class_names) if class_names is not None else [str(i) for i in range(n_out)]
        if len(names) != n_out:
            raise InvalidInputError(
                f"Invalid value received for argument `class_names`: the model has {n_out} outputs "
                f"but {len(names)} class names were given."
            )
        self.class_names = [str(c) for c in names]

    # -- shapes ---------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple:
        return tuple(self.model.input_shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _check_x(self, x) -> np.ndarray:
        return check_inputs(x, self.input_shape, "x")

    # -- prediction -----------------------------------------------------------------------
    @abc.abstractmethod
    def sample_probs(self, x, num_samples: Optional[int] = None) -> np.ndarray:
        """``[S, N, C]`` class probabilities, one slice per posterior sample."""

    def predict(self, x, num_samples: Optional[int] = None) -> Prediction:
        """Posterior predictive probabilities and the uncertainty decomposition (nats)."""
        check_classification(self, "predict")
        return prediction_from_samples(self.sample_probs(x, num_samples))

    # -- persistence ----------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def num_samples(self) -> int:
        """Default S: ensemble members, or the default number of stochastic passes."""

    @abc.abstractmethod
    def weight_sets(self) -> list:
        """The stored weight sets: ``[S_stored][layer weights]`` numpy arrays."""

    def save(self, path) -> None:
        """Write the posterior folder atomically (architecture JSON, weights .npz, posterior.json)."""
        from tflbayes.posterior.storage import save

        save(self, path)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(method={self.method!r}, S={self.num_samples}, "
                f"input_shape={self.input_shape}, classes={self.num_classes})")


class SingleNetworkPosterior(Posterior):
    """A posterior held in one network's weights (stochastic passes, Dirichlet or distilled students)."""

    def weight_sets(self) -> list:
        return [[np.asarray(w, dtype=np.float32) for w in self.model.get_weights()]]

    @classmethod
    def _from_storage(cls, model, sets, meta):
        model.set_weights(sets[0])
        return cls(model, meta["method"], meta.get("options"), meta.get("class_names"))
