"""Monte Carlo dropout: dropout that stays on at prediction time."""
from __future__ import annotations

import numbers

from tflbayes._keras import keras, register
from tflbayes.errors import InvalidInputError

__all__ = ["MCDropout"]

# The only random-number backend whose ops convert to the LiteRT builtin RANDOM_UNIFORM.
# Keras's other two ("stateful": tf.random.Generator, "stateless") need Flex ops.
_LEGACY_RNG = "legacy_stateful"


@register
class MCDropout(keras.layers.Dropout):
    """Dropout that is always on: every forward pass is one sample of the MC-dropout posterior.

    Gal & Ghahramani (2016), "Dropout as a Bayesian Approximation: Representing Model
    Uncertainty in Deep Learning", read a network trained with dropout as a variational
    posterior over its weights. Keeping dropout on at test time and averaging ``S`` forward
    passes approximates the posterior predictive:

    .. math::

        y = \\frac{m \\odot x}{1 - p}, \\quad m_i \\sim \\mathrm{Bernoulli}(1 - p),
        \\qquad p(y^* \\mid x^*) \\approx \\frac{1}{S} \\sum_{s=1}^{S} f_{\\hat W_s}(x^*).

    The layer ignores the ``training`` flag (``model.predict`` samples too), and its mask
    comes from ``tf.random.uniform`` whatever Keras's random-generator setting is, so a model
    converted to LiteRT keeps its sampling as the builtin ``RANDOM_UNIFORM`` (no Flex ops).

    Args:
        rate: Fraction of the input units to drop, a float in ``[0, 1)``.
        noise_shape: Shape of the binary mask, broadcast against the input (as in
            ``keras.layers.Dropout``), e.g. ``(None, 1, features)`` to share the mask
            over time steps.
        seed: Optional Python integer; with it the sequence of masks is reproducible.
        **kwargs: Base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Example:
        >>> model = keras.Sequential([keras.layers.Dense(64, activation="relu"),
        ...                           MCDropout(0.1), keras.layers.Dense(10)])
        >>> samples = tf.stack([model(x) for _ in range(30)])  # [S, N, 10], all different
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise InvalidInputError(
                "Invalid value received for argument `rate`. Expected a float between 0 "
                f"(inclusive) and 1 (exclusive). Received: rate={rate!r}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise InvalidInputError(
                "Invalid value received for argument `seed`. Expected an integer or None. "
                f"Received: seed={seed!r}"
            )
        rng_type = kwargs.pop("rng_type", None)
        if kwargs.pop("force_generator", False) or rng_type not in (None, _LEGACY_RNG):
            raise InvalidInputError(
                "Invalid value received for argument `rng_type`. MCDropout always uses "
                f"'{_LEGACY_RNG}' (tf.random.uniform, the LiteRT builtin RANDOM_UNIFORM). "
                f"Received: rng_type={rng_type!r}"
            )
        super().__init__(
            float(rate), noise_shape=noise_shape, seed=seed, rng_type=_LEGACY_RNG, **kwargs
        )

    def call(self, inputs, training=None):
        """Drops units whatever ``training`` says."""
        del training  # always on: this is a posterior sample, not a regularizer
        return super().call(inputs, training=True)
