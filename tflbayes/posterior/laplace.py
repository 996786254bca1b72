"""A last-layer Laplace posterior (Daxberger et al. 2021, "Laplace Redux") and its predictives.

The model outputs ``[B, 2, C]``: the mean logits ``mu`` and the logit variances ``var`` (the
diagonal of ``Sigma_f``) of the Gaussian over the logits that the Laplace approximation of the
last layer induces (see :class:`tflbayes.layers.LaplaceHead`). The predictive (``link``):

- ``"probit"`` (MacKay 1992; the multi-class form of laplace-torch):
  ``p = softmax(mu / sqrt(1 + pi/8 var))``. Closed form; it gives the predictive and its entropy
  (``total``) only: ``aleatoric`` and ``epistemic`` are ``None`` (the probit approximation has no
  expected-entropy term).
- ``"bridge"`` (the Laplace bridge, Hobbhahn, Kristiadi & Hennig 2022): a Dirichlet with
  ``alpha_k = (1 - 2/C + e^{mu_k} sum_l e^{-mu_l} / C²) / var_k``; the decomposition is the
  Dirichlet's closed form (:func:`tflbayes.uncertainty.dirichlet_decompose`) on
  ``alpha = exp(clip(ln alpha, ln 1e-3, ln 1e4))``, the same clip as the EnD² head.
- ``"mc"``: ``S`` logit draws ``f ~ N(mu, Sigma_f)`` (the full ``Sigma_f`` for KFAC) and the
  sample decomposition.

:meth:`LaplacePosterior.sample_probs` always returns the Gaussian's samples (the posterior itself);
:meth:`~LaplacePosterior.predict` applies the link.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from tflbayes._keras import keras
from tflbayes._checks import check_positive_int
from tflbayes.errors import InvalidInputError
from tflbayes.posterior.base import SingleNetworkPosterior, forward, softmax
from tflbayes.posterior.dirichlet import alpha_from_logits
from tflbayes.uncertainty import Prediction, dirichlet_decompose, entropy, prediction_from_samples

__all__ = ["LaplacePosterior", "LINKS", "probit_probs", "bridge_log_alpha"]

LINKS = ("probit", "bridge", "mc")
_DEFAULT_SAMPLES = 100


def probit_probs(mu, var) -> np.ndarray:
    """``softmax(mu / sqrt(1 + pi/8 var))`` (float64)."""
    mu, var = np.asarray(mu, np.float64), np.asarray(var, np.float64)
    return softmax(mu / np.sqrt(1.0 + math.pi / 8.0 * var))


def bridge_log_alpha(mu, var) -> np.ndarray:
    """``ln alpha`` of the Laplace bridge (module docstring), computed stably in log space:
    ``ln(1 - 2/C + e^t / C²) - ln var`` with ``t = mu_k + logsumexp(-mu) >= 0``."""
    mu, var = np.asarray(mu, np.float64), np.asarray(var, np.float64)
    c = mu.shape[-1]
    neg = -mu
    m = neg.max(axis=-1, keepdims=True)
    t = mu + m + np.log(np.exp(neg - m).sum(axis=-1, keepdims=True))
    u = t - 2.0 * math.log(c)
    a = 1.0 - 2.0 / c
    log_num = u if a <= 0 else np.logaddexp(math.log(a), u)
    return log_num - np.log(np.maximum(var, 1e-30))


class LaplacePosterior(SingleNetworkPosterior):
    """A network whose last layer is a :class:`~tflbayes.layers.LaplaceHead` (module docstring).

    Args:
        model: Keras model ``x -> [B, 2, C]`` ending in a ``LaplaceHead``.
        method: ``"laplace"``.
        options: ``link`` (``"probit"``), ``structure``, ``prior_precision``, ``num_samples``
            (S of the MC predictive and of :meth:`sample_probs`, 100), ...
        class_names: one name per class.

    Example:
        >>> post = tb.fit(build, ds, method="laplace", structure="kron", link="probit")   # doctest: +SKIP
        >>> post.with_link("bridge").predict(ds.x_test).epistemic                         # doctest: +SKIP
    """

    kind = "laplace"

    def __init__(self, model, method: str = "laplace", options: Optional[dict] = None,
                 class_names: Optional[Sequence[str]] = None):
        super().__init__(model, method, options, class_names)
        from tflbayes.layers.laplace import LaplaceHead

        self.options.setdefault("link", "probit")
        self.options.setdefault("num_samples", _DEFAULT_SAMPLES)
        if self.options["link"] not in LINKS:
            raise InvalidInputError(
                f"Invalid value received for option `link`. Expected one of {LINKS}. Received: link={self.options['link']!r}")
        head = model.layers[-1]
        if not isinstance(head, LaplaceHead):
            raise InvalidInputError(f"Invalid value received for argument `model`: its last layer must be a LaplaceHead, "
                             f"found {type(head).__name__}.")
        self.head = head
        self.options["structure"] = head.structure
        self._features = None

    @classmethod
    def check_stored_options(cls, options, where) -> None:
        """A stored Laplace posterior's ``link`` and ``structure`` must be known ones."""
        from tflbayes.errors import PosteriorFormatError
        from tflbayes.layers.laplace import STRUCTURES

        for key, allowed in (("link", LINKS), ("structure", STRUCTURES)):
            if key in options and options[key] not in allowed:
                raise PosteriorFormatError(
                    f"{where}: field `options.{key}` is {options[key]!r:.80}; expected one of {list(allowed)}.")

    @property
    def link(self) -> str:
        return self.options["link"]

    @property
    def num_samples(self) -> int:
        return int(self.options["num_samples"])

    def with_link(self, link: str) -> "LaplacePosterior":
        """The same posterior (sharing the model) with another predictive link."""
        return LaplacePosterior(self.model, self.method, {**self.options, "link": link}, self.class_names)

    # -- the Gaussian over the logits ------------------------------------------------------
    def moments(self, x):
        """``(mu, var)``: mean logits and logit variances ``[N, C]`` (float64)."""
        out = forward(self.model, self._check_x(x))
        return out[:, 0], np.maximum(out[:, 1], 0.0)

    def features(self, x) -> np.ndarray:
        """``phi [N, D]``: the input of the Laplace head."""
        if self._features is None:
            self._features = keras.Model(self.model.inputs, self.head.input)
        return forward(self._features, self._check_x(x))

    def sample_logits(self, x, num_samples: Optional[int] = None, seed: Optional[int] = None) -> np.ndarray:
        """``[S, N, C]`` draws ``f ~ N(mu, Sigma_f)`` (full ``Sigma_f`` for KFAC; numpy, ``seed`` repeatable)."""
        s = check_positive_int("num_samples", self.num_samples if num_samples is None else num_samples)
        rng = np.random.default_rng(seed)
        mu, var = self.moments(x)
        eps = rng.standard_normal((int(s), *mu.shape))
        if self.head.structure == "diag":
            return mu + np.sqrt(var) * eps
        phi = self.features(x)
        u_a = self.head.eigvec_a.numpy().astype(np.float64)
        k = self.head.inv_eig.numpy().astype(np.float64)
        u_g = self.head.eigvec_g.numpy().astype(np.float64)
        proj = phi @ u_a[:-1] + u_a[-1]
        m = np.maximum((proj ** 2) @ k, 0.0)  # [N, C]: Sigma_f = U_G diag(m) U_Gᵀ
        return mu + np.einsum("cj,snj->snc", u_g, np.sqrt(m) * eps)

    def sample_probs(self, x, num_samples: Optional[int] = None, seed: Optional[int] = None) -> np.ndarray:
        """``[S, N, C]`` softmax of Gaussian logit draws (the posterior's samples, whatever the link)."""
        return softmax(self.sample_logits(x, num_samples, seed))

    # -- predictives -------------------------------------------------------------------------
    def predict(self, x, num_samples: Optional[int] = None, seed: Optional[int] = 0) -> Prediction:
        """The link's predictive (module docstring); ``mc`` draws ``num_samples`` (seeded: repeatable)."""
        if self.link == "mc":
            return prediction_from_samples(self.sample_probs(x, num_samples, seed))
        mu, var = self.moments(x)
        if self.link == "probit":
            probs = probit_probs(mu, var)
            return Prediction(probs=probs, total=entropy(probs), aleatoric=None, epistemic=None)
        alpha = alpha_from_logits(bridge_log_alpha(mu, var))
        total, aleatoric, epistemic = dirichlet_decompose(alpha)
        return Prediction(probs=alpha / alpha.sum(-1, keepdims=True), total=total, aleatoric=aleatoric,
                          epistemic=epistemic)
