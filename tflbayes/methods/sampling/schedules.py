"""Step-size schedules of the samplers, as Keras ``LearningRateSchedule`` objects.

All schedules are in the samplers' step-size unit: the learning rate ``α`` on the Keras
(batch-mean) loss. :class:`~tflbayes.methods.sampling.SGLD` turns it into the Langevin step
``ε = α / N`` on the summed potential ``U`` (see there).

* :class:`PolynomialStepSize`: ``α_t = α_0 (1 + t / τ)^(-γ)`` (Welling & Teh 2011, §3: ``Σ α_t = ∞``,
  ``Σ α_t² < ∞`` for ``0.5 < γ ≤ 1``).
* :class:`CyclicalCosine`: ``α_t = α_0 / 2 · (cos(π · mod(t, L) / L) + 1)`` with cycle length ``L``
  (Zhang et al. 2020, eq. 1; the same curve drives snapshot ensembles, Huang et al. 2017, eq. 2).
* :class:`SamplingPhase`: 0 in the first ``exploration`` fraction of each cycle, 1 after it. The
  samplers multiply their injected noise by it: cyclical SG-MCMC's exploration phase is plain
  (momentum) SGD, its sampling phase is SGLD / SGHMC.
"""
from __future__ import annotations

import math

from tflbayes._keras import keras, register, tf
from tflbayes.errors import InvalidInputError

__all__ = ["PolynomialStepSize", "CyclicalCosine", "SamplingPhase"]


@register
class PolynomialStepSize(keras.optimizers.schedules.LearningRateSchedule):
    """``α_t = initial · (1 + t / decay_steps)^(-power)`` (Welling & Teh 2011).

    Example:
        >>> s = PolynomialStepSize(0.1, decay_steps=100, power=0.55)
        >>> round(float(s(100)), 4)
        0.0683
    """

    def __init__(self, initial: float, decay_steps: float, power: float = 0.55):
        if not initial > 0:
            raise InvalidInputError(f"Invalid value received for argument `initial`. Expected > 0. Received: initial={initial!r}")
        if not decay_steps > 0:
            raise InvalidInputError(
                f"Invalid value received for argument `decay_steps`. Expected > 0. Received: decay_steps={decay_steps!r}"
            )
        if not 0 <= power <= 1:
            raise InvalidInputError(f"Invalid value received for argument `power`. Expected in [0, 1]. Received: power={power!r}")
        self.initial, self.decay_steps, self.power = float(initial), float(decay_steps), float(power)

    def __call__(self, step):
        t = tf.cast(step, tf.float32)
        return self.initial * tf.pow(1.0 + t / self.decay_steps, -self.power)

    def get_config(self):
        return {"initial": self.initial, "decay_steps": self.decay_steps, "power": self.power}


@register
class CyclicalCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclical cosine step size: ``α_t = initial/2 · (cos(π · mod(t, L) / L) + 1)``, ``L = cycle_length``.

    Each cycle starts at ``initial`` and anneals to (nearly) 0 at its last step (Zhang et al. 2020,
    "Cyclical Stochastic Gradient MCMC for Bayesian Deep Learning"; Huang et al. 2017,
    "Snapshot Ensembles: Train 1, get M for free").

    Example:
        >>> s = CyclicalCosine(0.2, cycle_length=10)
        >>> [round(float(s(t)), 3) for t in (0, 5, 10)]
        [0.2, 0.1, 0.2]
    """

    def __init__(self, initial: float, cycle_length: int):
        if not initial > 0:
            raise InvalidInputError(f"Invalid value received for argument `initial`. Expected > 0. Received: initial={initial!r}")
        if not int(cycle_length) >= 1:
            raise InvalidInputError(
                f"Invalid value received for argument `cycle_length`. Expected >= 1. Received: cycle_length={cycle_length!r}"
            )
        self.initial, self.cycle_length = float(initial), int(cycle_length)

    def __call__(self, step):
        r = tf.cast(tf.math.floormod(tf.cast(step, tf.int64), self.cycle_length), tf.float32) / self.cycle_length
        return self.initial * 0.5 * (tf.cos(math.pi * r) + 1.0)

    def get_config(self):
        return {"initial": self.initial, "cycle_length": self.cycle_length}


@register
class SamplingPhase(keras.optimizers.schedules.LearningRateSchedule):
    """Noise gate of cyclical SG-MCMC: 0 while ``mod(t, L) / L < exploration``, else 1.

    Example:
        >>> g = SamplingPhase(cycle_length=10, exploration=0.8)
        >>> [int(g(t)) for t in (0, 7, 8, 9, 10)]
        [0, 0, 1, 1, 0]
    """

    def __init__(self, cycle_length: int, exploration: float):
        if not int(cycle_length) >= 1:
            raise InvalidInputError(
                f"Invalid value received for argument `cycle_length`. Expected >= 1. Received: cycle_length={cycle_length!r}"
            )
        if not 0 <= exploration < 1:
            raise InvalidInputError(
                f"Invalid value received for argument `exploration`. Expected in [0, 1). Received: exploration={exploration!r}"
            )
        self.cycle_length, self.exploration = int(cycle_length), float(exploration)

    def first_sampling_step(self) -> int:
        """Index (within a cycle) of the first step with noise."""
        return int(math.ceil(self.exploration * self.cycle_length - 1e-9))

    def __call__(self, step):
        pos = tf.math.floormod(tf.cast(step, tf.int64), self.cycle_length)
        return tf.cast(pos >= self.first_sampling_step(), tf.float32)

    def get_config(self):
        return {"cycle_length": self.cycle_length, "exploration": self.exploration}
