"""SG-MCMC samplers as Keras optimizers: plug them into ``model.compile`` and train with ``model.fit``.

Both samplers target the (tempered) posterior ``p(θ | D)^(1/T) ∝ exp(-U(θ) / T)`` with the
potential summed over the whole training set of ``N`` examples,

    U(θ) = -Σ_{i=1..N} log p(y_i | x_i, θ) - log p(θ),     p(θ) = N(0, prior_std² I),

estimated on a mini-batch B as ``Ũ(θ) = -(N/|B|) Σ_{i∈B} log p(y_i | x_i, θ) - log p(θ)``. Keras
minimises the batch *mean* ``L̄ = -(1/|B|) Σ_{i∈B} log p(y_i|x_i,θ)`` (plus ``model.losses``), so its
gradient ``g = ∇L̄`` gives ``∇Ũ = N (g + θ / (N prior_std²))``.

The step size ``α`` (``learning_rate``) is a learning rate on that mean loss, as for SGD; the
Langevin step on ``U`` is ``ε = α / N``. This keeps step sizes comparable across data-set sizes
and with the SGD learning rates people already know.

Noise is drawn with stateless Philox keys folded from ``(seed, variable index, iteration)``, so
a run is reproducible and every replica of a ``MirroredStrategy`` draws the same noise (mirrored
variables stay identical).
"""
from __future__ import annotations

import numbers
from typing import Optional

from tflbayes._keras import keras, register, tf
from tflbayes.errors import InvalidInputError

__all__ = ["SGLD", "SGHMC"]


def _check(name, value, ok, expected):
    if isinstance(value, bool) or not ok:
        raise InvalidInputError(f"Invalid value received for argument `{name}`. Expected {expected}. Received: {name}={value!r}")


def _plain(value):
    return float(value) if isinstance(value, numbers.Real) else value


class _Langevin(keras.optimizers.Optimizer):
    """Shared parts: the scaled gradient of ``U``, the prior, the noise and its key."""

    def __init__(self, learning_rate, data_size, prior_std: Optional[float] = 1.0, temperature: float = 1.0,
                 noise_schedule=None, seed: int = 0, name: str = "Langevin", jit_compile: bool = False, **kwargs):
        super().__init__(name=name, jit_compile=jit_compile, **kwargs)
        if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            _check("learning_rate", learning_rate, isinstance(learning_rate, numbers.Real) and learning_rate > 0,
                   "a number > 0 or a LearningRateSchedule")
        _check("data_size", data_size, isinstance(data_size, numbers.Integral) and data_size >= 1, "an integer >= 1")
        if prior_std is not None:
            _check("prior_std", prior_std, isinstance(prior_std, numbers.Real) and prior_std > 0,
                   "a number > 0 (or None: a flat prior)")
        _check("temperature", temperature, isinstance(temperature, numbers.Real) and temperature >= 0,
               "a number >= 0 (0: no noise, plain SGD)")
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.data_size = int(data_size)
        self.prior_std = None if prior_std is None else float(prior_std)
        self.temperature = float(temperature)
        self.noise_schedule = noise_schedule
        self.seed = int(seed)

    # -- pieces the update steps share --------------------------------------------------------
    def _drift(self, gradient, variable):
        """``∇Ũ / N = g + θ / (N σ²)`` (dense)."""
        g = tf.convert_to_tensor(gradient)
        if self.prior_std is not None:
            g = g + variable / tf.cast(self.data_size * self.prior_std ** 2, variable.dtype)
        return g

    def _noise(self, variable, variance):
        """``sqrt(variance) · ξ`` with ``ξ ~ N(0, I)``, gated by ``noise_schedule`` (None when T = 0)."""
        if self.temperature == 0:
            return None
        idx = self._index_dict[self._var_key(variable)]
        key = tf.random.experimental.stateless_fold_in(
            tf.constant([self.seed, idx], tf.int64), tf.cast(self.iterations, tf.int64))
        xi = tf.random.stateless_normal(tf.shape(variable), seed=key, dtype=variable.dtype)
        scale = tf.sqrt(tf.cast(variance, variable.dtype))
        if self.noise_schedule is not None:
            scale = scale * tf.cast(self.noise_schedule(self.iterations), variable.dtype)
        return scale * xi

    def get_config(self):
        return {
            **super().get_config(),
            "learning_rate": _plain(self._serialize_hyperparameter(self._learning_rate)),
            "data_size": self.data_size,
            "prior_std": self.prior_std,
            "temperature": self.temperature,
            "noise_schedule": (None if self.noise_schedule is None
                               else keras.optimizers.schedules.serialize(self.noise_schedule)),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("noise_schedule"), dict):
            config["noise_schedule"] = keras.optimizers.schedules.deserialize(
                config["noise_schedule"], custom_objects=custom_objects)
        config.pop("is_legacy_optimizer", None)
        return super().from_config(config, custom_objects=custom_objects)


@register
class SGLD(_Langevin):
    """Stochastic gradient Langevin dynamics (Welling & Teh 2011, "Bayesian Learning via
    Stochastic Gradient Langevin Dynamics", eq. 4).

    With ``ε_t = α_t / N`` the Euler–Maruyama step of the Langevin diffusion on ``U`` is

        θ ← θ - ε_t ∇Ũ(θ) + sqrt(2 ε_t T) ξ,   ξ ~ N(0, I)
          = θ - α_t (g + θ / (N σ²)) + sqrt(2 α_t T / N) ξ,

    where ``g`` is the gradient of the Keras batch-mean loss (see the module docstring). For small
    ``α`` its samples follow ``p(θ | D)^(1/T)``; ``temperature = 0`` is SGD on the MAP objective.

    Args:
        learning_rate: ``α`` (a float or a ``LearningRateSchedule``), the step size on the mean loss.
        data_size: ``N``, the number of training examples (the likelihood is scaled to it).
        prior_std: ``σ`` of the Gaussian prior on every trainable weight (None: flat prior).
        temperature: ``T``; 1 samples the posterior, < 1 a "cold" one (spread ∝ sqrt(T)).
        noise_schedule: optional schedule in [0, 1] multiplying the noise (cyclical SG-MCMC's
            exploration phase has none), evaluated at the optimizer's iteration.
        seed: seed of the noise (stateless: same seed, same noise).

    Example:
        >>> model.compile(SGLD(0.05, data_size=len(x)), loss=...)  # doctest: +SKIP
        >>> model.fit(x, y, epochs=10, callbacks=[SampleCollector(...)])  # doctest: +SKIP
    """

    def __init__(self, learning_rate=0.05, data_size=1, prior_std=1.0, temperature=1.0, noise_schedule=None,
                 seed=0, name="SGLD", **kwargs):
        super().__init__(learning_rate, data_size, prior_std, temperature, noise_schedule, seed, name, **kwargs)

    def build(self, var_list):
        super().build(var_list)
        self._built = True

    def update_step(self, gradient, variable):
        lr = tf.cast(self.learning_rate, variable.dtype)
        step = lr * self._drift(gradient, variable)
        noise = self._noise(variable, 2.0 * lr * self.temperature / self.data_size)
        variable.assign_sub(step if noise is None else step - noise)


@register
class SGHMC(_Langevin):
    """Stochastic gradient Hamiltonian Monte Carlo with friction (Chen, Fox & Guestrin 2014,
    "Stochastic Gradient Hamiltonian Monte Carlo", eq. 15, the "SGD with momentum" form).

    With ``η_t = α_t / N`` and friction ``a`` (``= 1 - momentum``):

        v ← (1 - a) v - η_t ∇Ũ(θ) + N(0, 2 a η_t T)
          = (1 - a) v - α_t (g + θ / (N σ²)) + sqrt(2 a α_t T / N) ξ
        θ ← θ + v

    The gradient-noise estimate ``β̂`` of the paper is taken as 0 (its recommended default for
    small step sizes). ``v`` is the momentum times ``sqrt(η)``, so when the step size changes
    (schedules) ``v`` is rescaled by ``sqrt(α_t / α_{t-1})``; without it a decaying step size
    leaves too much kinetic energy and over-disperses the samples (by ~30 % in variance at the end
    of a cosine cycle). ``temperature = 0`` is SGD with heavy-ball momentum ``1 - a`` on the MAP
    objective (snapshot ensembles and subspace inference use it for their SGD phases).

    Args:
        learning_rate, data_size, prior_std, temperature, noise_schedule, seed: as :class:`SGLD`.
        friction: ``a`` in (0, 1] (default 0.1, i.e. momentum 0.9).

    Example:
        >>> model.compile(SGHMC(0.01, data_size=len(x), friction=0.1), loss=...)  # doctest: +SKIP
    """

    def __init__(self, learning_rate=0.01, data_size=1, prior_std=1.0, temperature=1.0, friction=0.1,
                 noise_schedule=None, seed=0, name="SGHMC", **kwargs):
        super().__init__(learning_rate, data_size, prior_std, temperature, noise_schedule, seed, name, **kwargs)
        _check("friction", friction, isinstance(friction, numbers.Real) and 0 < friction <= 1, "a number in (0, 1]")
        self.friction = float(friction)

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self.velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]
        self.previous_lr = [self.add_variable_from_reference(v, "previous_lr", shape=[]) for v in var_list]
        self._built = True

    def update_step(self, gradient, variable):
        lr = tf.cast(self.learning_rate, variable.dtype)
        a = tf.cast(self.friction, variable.dtype)
        i = self._index_dict[self._var_key(variable)]
        v, prev = self.velocities[i], self.previous_lr[i]
        # v = ε r with ε = sqrt(η): keep the momentum r when the step size changes
        rescale = tf.where(prev > 0, tf.sqrt(tf.math.divide_no_nan(lr, prev)), tf.ones_like(lr))
        prev.assign(lr)
        new_v = (1.0 - a) * rescale * v - lr * self._drift(gradient, variable)
        noise = self._noise(variable, 2.0 * self.friction * lr * self.temperature / self.data_size)
        if noise is not None:
            new_v = new_v + noise
        v.assign(new_v)
        variable.assign_add(new_v)

    def get_config(self):
        return {**super().get_config(), "friction": self.friction}

