"""Mean-field Gaussian variational twins of ``Conv1D`` and ``DepthwiseConv2D`` (LiteRT builtins only).

The same posterior, prior, KL and estimators as :class:`~tflbayes.layers.VariationalConv2D`
(see :mod:`tflbayes.layers.variational`): ``q(K) = prod N(mu, sigma^2)``, ``sigma = softplus(rho)``
(Blundell et al. 2015), sampled by Flipout (Wen et al. 2018; random signs per example and
channel), the reparameterization of the kernel, or local reparameterization (Kingma et al. 2015:
``y = x * mu + sqrt(x^2 * sigma^2) * eps``). ``conv1d`` converts to LiteRT's CONV_2D (with
EXPAND_DIMS/RESHAPE), ``depthwise_conv2d`` to DEPTHWISE_CONV_2D.
"""
from __future__ import annotations

from tflbayes._keras import keras, register, tf
from tflbayes.layers.variational import _check_pair, _check_positive_int, _invalid, _MeanFieldGaussian
from tflbayes.errors import InvalidInputError

__all__ = ["VariationalConv1D", "VariationalDepthwiseConv2D"]


def _check_padding(padding) -> str:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise _invalid("padding", "'valid' or 'same'", padding)
    return padding.lower()


def _out_size(size, k, s, padding):
    if size is None:
        return None
    return -(-size // s) if padding == "same" else (size - k) // s + 1


def _positive_or_first(name, value) -> int:
    """An int, or a 1-tuple/list of one int (as Keras configs store 1-D sizes)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return _check_positive_int(name, value)


@register
class VariationalConv1D(_MeanFieldGaussian):
    """Mean-field Gaussian variational twin of ``keras.layers.Conv1D`` (channels last, no dilation).

    Posterior over the ``(k, c_in, filters)`` kernel; each output position has the marginal
    ``y ~ N(x * mu + b, x^2 * sigma^2)`` (``*``: the 1-D convolution).

    Args:
        filters: Positive integer, the number of output channels.
        kernel_size: A positive integer, the window length.
        strides: A positive integer. Defaults to 1.
        padding: ``"valid"`` or ``"same"``.
        activation, use_bias, estimator, prior_std, kl_weight, init_std, kernel_initializer,
        bias_initializer, **kwargs: as in :class:`~tflbayes.layers.VariationalConv2D`.

    Input shape:
        ``(batch, steps, channels)``.

    Example:
        >>> layer = VariationalConv1D(16, 3, padding="same", activation="relu")
        >>> y = layer(windows)  # one posterior sample, [batch, steps, 16]
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None, use_bias=True,
                 estimator="flipout", prior_std=1.0, kl_weight=1.0, init_std=1e-3,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(activation=activation, use_bias=use_bias, estimator=estimator, prior_std=prior_std,
                         kl_weight=kl_weight, init_std=init_std, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.filters = _check_positive_int("filters", filters)
        self.kernel_size = _positive_or_first("kernel_size", kernel_size)
        self.strides = _positive_or_first("strides", strides)
        self.padding = _check_padding(padding)
        self.input_spec = keras.layers.InputSpec(ndim=3)

    def build(self, input_shape):
        channels = tf.compat.dimension_value(tf.TensorShape(input_shape)[-1])
        if channels is None:
            raise InvalidInputError("The channel dimension of the inputs to `VariationalConv1D` should be defined. "
                             f"Received: input_shape={input_shape}")
        self.input_spec = keras.layers.InputSpec(ndim=3, axes={-1: channels})
        self._add_posterior_weights((self.kernel_size, channels, self.filters), self.filters)
        super().build(input_shape)

    def _linear(self, x, w):
        return tf.nn.conv1d(x, w, stride=self.strides, padding=self.padding.upper())

    def _sign_shape(self, inputs, channels):
        return tf.stack([tf.shape(inputs)[0], 1, channels])

    def call(self, inputs):
        """One posterior sample of ``activation(conv1d(inputs, K) + b)``."""
        return self._sample(inputs, self._linear)

    def compute_output_shape(self, input_shape):
        s = tf.TensorShape(input_shape).as_list()
        return tf.TensorShape([s[0], _out_size(s[1], self.kernel_size, self.strides, self.padding), self.filters])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding}


@register
class VariationalDepthwiseConv2D(_MeanFieldGaussian):
    """Mean-field Gaussian variational twin of ``keras.layers.DepthwiseConv2D`` (channels last).

    Posterior over the ``(kh, kw, c_in, depth_multiplier)`` depthwise kernel; output channel
    ``c * depth_multiplier + m`` sees input channel ``c`` only, with the marginal
    ``y ~ N(x_c * mu_{c,m} + b, x_c^2 * sigma_{c,m}^2)``. Flipout's input signs are per input
    channel, its output signs per output channel.

    Args:
        kernel_size: An integer or a pair of integers.
        strides: An integer or a pair of integers (equal, as ``tf.nn.depthwise_conv2d`` needs).
        padding: ``"valid"`` or ``"same"``.
        depth_multiplier: Positive integer, output channels per input channel.
        activation, use_bias, estimator, prior_std, kl_weight, init_std, kernel_initializer,
        bias_initializer, **kwargs: as in :class:`~tflbayes.layers.VariationalConv2D`.

    Example:
        >>> layer = VariationalDepthwiseConv2D(3, padding="same")
        >>> y = layer(features)  # one posterior sample, same channels as the input
    """

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, activation=None,
                 use_bias=True, estimator="flipout", prior_std=1.0, kl_weight=1.0, init_std=1e-3,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(activation=activation, use_bias=use_bias, estimator=estimator, prior_std=prior_std,
                         kl_weight=kl_weight, init_std=init_std, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.kernel_size = _check_pair("kernel_size", kernel_size)
        self.strides = _check_pair("strides", strides)
        if self.strides[0] != self.strides[1]:
            raise _invalid("strides", "equal strides (tf.nn.depthwise_conv2d)", strides)
        self.padding = _check_padding(padding)
        self.depth_multiplier = _check_positive_int("depth_multiplier", depth_multiplier)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = tf.compat.dimension_value(tf.TensorShape(input_shape)[-1])
        if channels is None:
            raise InvalidInputError("The channel dimension of the inputs to `VariationalDepthwiseConv2D` should be "
                             f"defined. Received: input_shape={input_shape}")
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})
        self._add_posterior_weights((*self.kernel_size, channels, self.depth_multiplier),
                                    channels * self.depth_multiplier)
        super().build(input_shape)

    def _linear(self, x, w):
        return tf.nn.depthwise_conv2d(x, w, strides=(1, *self.strides, 1), padding=self.padding.upper())

    def _out_channels(self, kernel_shape) -> int:
        return int(kernel_shape[-2]) * int(kernel_shape[-1])

    def _sign_shape(self, inputs, channels):
        return tf.stack([tf.shape(inputs)[0], 1, 1, channels])

    def call(self, inputs):
        """One posterior sample of ``activation(depthwise_conv2d(inputs, K) + b)``."""
        return self._sample(inputs, self._linear)

    def compute_output_shape(self, input_shape):
        s = tf.TensorShape(input_shape).as_list()
        spatial = [_out_size(n, k, st, self.padding) for n, k, st in zip(s[1:3], self.kernel_size, self.strides)]
        c = None if s[3] is None else s[3] * self.depth_multiplier
        return tf.TensorShape([s[0], *spatial, c])

    def get_config(self):
        return {**super().get_config(), "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "depth_multiplier": self.depth_multiplier}
