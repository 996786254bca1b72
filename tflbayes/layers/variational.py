"""Mean-field Gaussian variational twins of ``Dense`` and ``Conv2D`` that convert to LiteRT.

Each kernel weight has its own Gaussian posterior ``N(mu, sigma^2)`` with
``sigma = softplus(rho)`` (Blundell et al. 2015, "Weight Uncertainty in Neural Networks");
the bias is a point estimate, like TFP's default bias posterior. Every call (training or not)
draws one sample of the posterior with one of three gradient estimators:

- ``"reparameterization"`` (Blundell et al. 2015): one weight draw per call,
  ``W = mu + sigma * eps``, shared by the whole batch.
- ``"local_reparameterization"`` (Kingma, Salimans & Welling 2015, "Variational Dropout and
  the Local Reparameterization Trick"): sample the pre-activations instead of the weights,
  ``b = x mu + sqrt(x^2 sigma^2) * eps``, independent per example. Cheapest on a device: two
  matmuls and one ``RANDOM_STANDARD_NORMAL`` of the output's size.
- ``"flipout"`` (Wen et al. 2018, "Flipout: Efficient Pseudo-Independent Weight
  Perturbations on Mini-Batches"): one weight perturbation per call, decorrelated across the
  batch by random signs, ``b = x mu + ((x * s_in) (sigma * eps)) * s_out``.

All three give every output unit the same marginal distribution,
``N(x mu + bias, x^2 sigma^2)``; they differ in the correlations across examples (and so in
the variance of the gradients). Random numbers come only from ``tf.random.normal`` and
``tf.random.uniform``, stateful ops that convert to the LiteRT builtins
``RANDOM_STANDARD_NORMAL`` and ``RANDOM_UNIFORM`` (TFP's ``DenseFlipout`` draws its signs
with ``RandomUniformInt`` and stateless ops, which need Flex).

The KL divergence to the prior ``N(0, prior_std^2)``, summed over kernel weights and times
``kl_weight``, is added with ``add_loss`` in every call, so ``model.losses`` holds it.
Set ``kl_weight = 1 / N_train`` for the per-example ELBO (``tflbayes.fit`` does).

The variables are ``kernel_loc``, ``kernel_rho`` and ``bias``, the same for every estimator:
a model rebuilt from its config with another ``estimator`` takes the same weights.
"""
from __future__ import annotations

import math
import numbers

from tflbayes._keras import keras, register, tf
from tflbayes.errors import InvalidInputError

__all__ = ["ESTIMATORS", "VariationalDense", "VariationalConv2D"]

ESTIMATORS = ("flipout", "reparameterization", "local_reparameterization")

# Added to the pre-activation variance before the square root (local reparameterization):
# keeps sqrt's gradient finite where an input is exactly zero (ReLU, zero padding).
_VARIANCE_FLOOR = 1e-12


def _softplus_inverse(y: float) -> float:
    # log(exp(y) - 1) without overflow for large y: y + log(1 - exp(-y)).
    return y + math.log(-math.expm1(-y))


def _rademacher(shape, dtype):
    """Random signs +-1 from ``tf.random.uniform`` (LiteRT builtin RANDOM_UNIFORM)."""
    u = tf.random.uniform(shape, dtype=dtype)  # [0, 1)
    return 2.0 * tf.floor(2.0 * u) - 1.0


def _invalid(name: str, expected: str, value) -> InvalidInputError:
    return InvalidInputError(
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise _invalid(name, "a positive integer", value)
    return int(value)


def _check_pair(name: str, value) -> tuple:
    """An int or a pair of positive ints, returned as a tuple of two Python ints."""
    expected = "a positive integer or a tuple of 2 positive integers"
    items = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        items = tuple(items)
    except TypeError:
        raise _invalid(name, expected, value) from None
    if len(items) != 2 or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0 for v in items
    ):
        raise _invalid(name, expected, value)
    return tuple(int(v) for v in items)


def _check_float(name: str, value, *, positive: bool) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not ok:
        raise _invalid(name, "a finite float > 0" if positive else "a finite float >= 0", value)
    return float(value)


class _MeanFieldGaussian(keras.layers.Layer):
    """What the variational layers share: arguments, kernel posterior, KL, config."""

    def __init__(
        self,
        activation=None,
        use_bias=True,
        estimator="flipout",
        prior_std=1.0,
        kl_weight=1.0,
        init_std=1e-3,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if estimator not in ESTIMATORS:
            raise _invalid("estimator", f"one of {ESTIMATORS}", estimator)
        self.estimator = estimator
        self.prior_std = _check_float("prior_std", prior_std, positive=True)
        self.init_std = _check_float("init_std", init_std, positive=True)
        self.kl_weight = kl_weight
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    @property
    def kl_weight(self) -> float:
        """Factor of the KL term in ``model.losses``: ``1 / N_train`` for the per-example ELBO.

        A Python float, read when ``call`` runs or is traced: set it before ``fit`` builds its
        training function (a change afterwards needs ``model.compile`` again).
        """
        return self._kl_weight

    @kl_weight.setter
    def kl_weight(self, value):
        self._kl_weight = _check_float("kl_weight", value, positive=False)

    def _add_posterior_weights(self, kernel_shape, bias_size):
        self.kernel_loc = self.add_weight(
            name="kernel_loc",
            shape=kernel_shape,
            initializer=self.kernel_initializer,
            trainable=True,
        )
        self.kernel_rho = self.add_weight(
            name="kernel_rho",
            shape=kernel_shape,
            initializer=keras.initializers.Constant(_softplus_inverse(self.init_std)),
            trainable=True,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(bias_size,), initializer=self.bias_initializer, trainable=True
            )

    def kernel_std(self):
        """The posterior standard deviations of the kernel, ``softplus(kernel_rho)``."""
        return tf.nn.softplus(self.kernel_rho)

    def kl_divergence(self):
        """``sum KL(N(mu, sigma^2) || N(0, prior_std^2))`` over kernel weights (no ``kl_weight``).

        .. math::

            \\mathrm{KL} = \\sum_{ij} \\log\\frac{\\sigma_p}{\\sigma_{ij}}
            + \\frac{\\sigma_{ij}^2 + \\mu_{ij}^2}{2 \\sigma_p^2} - \\frac{1}{2}
        """
        std = self.kernel_std()
        prior_var = self.prior_std**2
        return tf.reduce_sum(
            math.log(self.prior_std)
            - tf.math.log(std)
            + (tf.square(std) + tf.square(self.kernel_loc)) / (2.0 * prior_var)
            - 0.5
        )

    def _sample(self, inputs, linear):
        """One posterior sample of ``linear(inputs, W) + bias`` with the chosen estimator.

        ``linear(x, w)`` is the layer's deterministic map (matmul or convolution).
        """
        dtype = inputs.dtype
        loc = tf.cast(self.kernel_loc, dtype)
        std = tf.cast(self.kernel_std(), dtype)
        if self.estimator == "reparameterization":
            eps = tf.random.normal(std.shape, dtype=dtype)
            outputs = linear(inputs, loc + std * eps)
        elif self.estimator == "local_reparameterization":
            mean = linear(inputs, loc)
            var = linear(tf.square(inputs), tf.square(std))
            eps = tf.random.normal(tf.shape(mean), dtype=dtype)
            outputs = mean + tf.sqrt(var + _VARIANCE_FLOOR) * eps
        else:  # flipout
            eps = tf.random.normal(std.shape, dtype=dtype)
            sign_in = _rademacher(self._sign_shape(inputs, std.shape[-2]), dtype)
            perturbation = linear(inputs * sign_in, std * eps)
            sign_out = _rademacher(self._sign_shape(inputs, self._out_channels(std.shape)), dtype)
            outputs = linear(inputs, loc) + perturbation * sign_out
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, dtype))
        # Always one loss term, even at kl_weight == 0: Keras falls back to stale symbolic
        # losses (from functional construction) for a layer that added none in its last call.
        self.add_loss(self.kl_weight * self.kl_divergence())
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _sign_shape(self, inputs, channels):
        raise NotImplementedError

    def _out_channels(self, kernel_shape) -> int:
        return int(kernel_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "estimator": self.estimator,
            "prior_std": self.prior_std,
            "kl_weight": self.kl_weight,
            "init_std": self.init_std,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@register
class VariationalDense(_MeanFieldGaussian):
    """Mean-field Gaussian variational twin of ``keras.layers.Dense``.

    Posterior ``q(W) = prod_ij N(mu_ij, sigma_ij^2)``, ``sigma = softplus(rho)``, prior
    ``N(0, prior_std^2)`` (Blundell et al. 2015). For an input row ``x`` every estimator gives

    .. math::

        y_j \\sim \\mathcal{N}\\Big(\\sum_i x_i \\mu_{ij} + b_j,\\;
        \\sum_i x_i^2 \\sigma_{ij}^2\\Big)

    sampled as (``eps ~ N(0, 1)``, ``s`` random signs):

    - ``"reparameterization"``: ``y = x (mu + sigma * eps) + b``, one ``eps`` per call.
    - ``"local_reparameterization"`` (Kingma et al. 2015):
      ``y = x mu + sqrt(x^2 sigma^2) * eps + b``, one ``eps`` per example and unit.
    - ``"flipout"`` (Wen et al. 2018): ``y = x mu + ((x * s_in)(sigma * eps)) * s_out + b``,
      one ``eps`` per call, signs per example.

    Sampling happens in every call, training or not; ``kl_weight * KL(q || p)`` goes to
    ``self.losses`` each call.

    Args:
        units: Positive integer, the output size.
        activation: Activation name or function, as in ``Dense``; ``None`` is linear.
        use_bias: Whether to add a (point-estimate) bias.
        estimator: One of :data:`ESTIMATORS`. Defaults to ``"flipout"``.
        prior_std: Standard deviation of the zero-mean Gaussian prior, ``> 0``.
        kl_weight: Factor of the KL term, ``>= 0``; ``1 / N_train`` for the per-example ELBO.
        init_std: Initial posterior standard deviation, ``> 0``
            (``kernel_rho`` starts at ``softplus^{-1}(init_std)``).
        kernel_initializer: Initializer of ``kernel_loc``.
        bias_initializer: Initializer of ``bias``.
        **kwargs: Base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(batch, ..., input_dim)``. Output shape: ``(batch, ..., units)``.

    Example:
        >>> layer = VariationalDense(10, estimator="local_reparameterization", kl_weight=1 / 60000)
        >>> y1, y2 = layer(x), layer(x)  # two posterior samples
        >>> layer.losses                 # [kl_weight * KL(q || p)]
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        estimator="flipout",
        prior_std=1.0,
        kl_weight=1.0,
        init_std=1e-3,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(
            activation=activation,
            use_bias=use_bias,
            estimator=estimator,
            prior_std=prior_std,
            kl_weight=kl_weight,
            init_std=init_std,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            **kwargs,
        )
        self.units = _check_positive_int("units", units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        last_dim = tf.compat.dimension_value(input_shape[-1])
        if last_dim is None:
            raise InvalidInputError(
                "The last dimension of the inputs to `VariationalDense` should be defined. "
                f"Received: input_shape={input_shape}"
            )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: last_dim})
        self._add_posterior_weights((last_dim, self.units), self.units)
        super().build(input_shape)

    @staticmethod
    def _linear(x, w):
        if x.shape.rank == 2:
            return tf.matmul(x, w)
        return tf.tensordot(x, w, [[x.shape.rank - 1], [0]])

    def _sign_shape(self, inputs, channels):
        return tf.concat([tf.shape(inputs)[:-1], [channels]], axis=0)

    def call(self, inputs):
        """One posterior sample of ``activation(inputs W + b)``."""
        return self._sample(inputs, self._linear)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@register
class VariationalConv2D(_MeanFieldGaussian):
    """Mean-field Gaussian variational twin of ``keras.layers.Conv2D`` (channels last).

    Posterior ``q(K) = prod N(mu, sigma^2)`` over the ``(kh, kw, c_in, filters)`` kernel,
    ``sigma = softplus(rho)``, prior ``N(0, prior_std^2)`` (Blundell et al. 2015). Every
    estimator gives each output pixel the marginal

    .. math::

        y \\sim \\mathcal{N}\\big(x \\ast \\mu + b,\\; x^2 \\ast \\sigma^2\\big)

    (``*`` is the convolution), sampled as:

    - ``"reparameterization"``: ``y = x * (mu + sigma * eps) + b``, one kernel per call.
    - ``"local_reparameterization"`` (Kingma et al. 2015):
      ``y = x * mu + sqrt(x^2 * sigma^2) * eps + b``, ``eps`` per example and output pixel.
    - ``"flipout"`` (Wen et al. 2018):
      ``y = x * mu + ((x . s_in) * (sigma . eps)) . s_out + b`` with sign vectors per example
      and channel (shared over pixels, as in TFP's ``Convolution2DFlipout``).

    Args:
        filters: Positive integer, the number of output channels.
        kernel_size: An integer or a pair of integers, the window's height and width.
        strides: An integer or a pair of integers. Defaults to ``(1, 1)``.
        padding: ``"valid"`` or ``"same"`` (case-insensitive).
        activation: Activation name or function; ``None`` is linear.
        use_bias: Whether to add a (point-estimate) bias.
        estimator: One of :data:`ESTIMATORS`. Defaults to ``"flipout"``.
        prior_std: Standard deviation of the zero-mean Gaussian prior, ``> 0``.
        kl_weight: Factor of the KL term, ``>= 0``; ``1 / N_train`` for the per-example ELBO.
        init_std: Initial posterior standard deviation, ``> 0``.
        kernel_initializer: Initializer of ``kernel_loc``.
        bias_initializer: Initializer of ``bias``.
        **kwargs: Base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(batch, rows, cols, channels)`` (channels last; no dilation).

    Example:
        >>> layer = VariationalConv2D(16, 3, padding="same", activation="relu")
        >>> y = layer(images)  # one posterior sample, [batch, rows, cols, 16]
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        activation=None,
        use_bias=True,
        estimator="flipout",
        prior_std=1.0,
        kl_weight=1.0,
        init_std=1e-3,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(
            activation=activation,
            use_bias=use_bias,
            estimator=estimator,
            prior_std=prior_std,
            kl_weight=kl_weight,
            init_std=init_std,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            **kwargs,
        )
        self.filters = _check_positive_int("filters", filters)
        self.kernel_size = _check_pair("kernel_size", kernel_size)
        self.strides = _check_pair("strides", strides)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise _invalid("padding", "'valid' or 'same'", padding)
        self.padding = padding.lower()
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        channels = tf.compat.dimension_value(input_shape[-1])
        if channels is None:
            raise InvalidInputError(
                "The channel dimension of the inputs to `VariationalConv2D` should be defined. "
                f"Received: input_shape={input_shape}"
            )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})
        self._add_posterior_weights((*self.kernel_size, channels, self.filters), self.filters)
        super().build(input_shape)

    def _linear(self, x, w):
        return tf.nn.conv2d(x, w, strides=self.strides, padding=self.padding.upper())

    def _sign_shape(self, inputs, channels):
        return tf.stack([tf.shape(inputs)[0], 1, 1, channels])

    def call(self, inputs):
        """One posterior sample of ``activation(conv2d(inputs, K) + b)``."""
        return self._sample(inputs, self._linear)

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape).as_list()
        spatial = []
        for size, k, s in zip(input_shape[1:3], self.kernel_size, self.strides):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-size // s))
            else:
                spatial.append((size - k) // s + 1)
        return tf.TensorShape([input_shape[0], *spatial, self.filters])

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
        }
