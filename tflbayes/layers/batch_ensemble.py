"""BatchEnsemble layers (Wen, Tran & Ba 2020, "BatchEnsemble: an Alternative Approach to Efficient
Ensemble and Lifelong Learning").

Member ``s`` of an ensemble of S uses the weight ``W_s = W ⊙ (r_s s_sᵀ)``: one shared ("slow")
kernel ``W`` and two rank-1 ("fast") vectors per member, ``r_s`` over the input features and
``s_s`` over the outputs, plus a bias ``b_s`` per member. Because

    x W_s = ((x ⊙ r_s) W) ⊙ s_s,

all members run as one matmul / convolution of the shared kernel on an input batch that holds
each member's rows: the layers take ``[S*B, ...]`` member-major (rows ``s*B .. s*B + B - 1``
belong to member ``s``; see :class:`~tflbayes.layers.single_pass.TileMembers`) and scale the rows
of each member by its fast weights. The extra parameters are ``S (K + 2D)`` per layer against
``K D`` shared.

The fast weights start at ``N(1, 0.5²)`` (a random-sign-free variant of the paper's random
initialisation, so members differ from the first step).

Both layers are drop-ins for their deterministic twins (same ``units`` / ``filters``, activation,
initialisers) and convert to LiteRT builtins (RESHAPE, MUL, ADD, FULLY_CONNECTED / CONV_2D).
"""
from __future__ import annotations

from tflbayes._keras import keras, register, tf
from tflbayes._checks import check_positive_int
from tflbayes.errors import InvalidInputError

__all__ = ["DenseBatchEnsemble", "Conv2DBatchEnsemble", "BATCH_ENSEMBLE_LAYERS"]


def _fast_init():
    return keras.initializers.RandomNormal(mean=1.0, stddev=0.5)


class _BatchEnsembleMixin:
    """Fast weights ``r [S, K]``, ``s [S, D]``, member biases ``b [S, D]`` around a shared kernel."""

    def _init_members(self, num_members, activation, use_bias, kernel_initializer, kernel_regularizer):
        """The arguments Dense and Conv2D BatchEnsembles share, validated."""
        self.num_members = check_positive_int("num_members", num_members)
        self.member_activation = keras.activations.get(activation)
        self.use_member_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _add_fast(self, k: int, d: int):
        s = self.num_members
        self.alpha = self.add_weight(name="alpha", shape=(s, k), initializer=_fast_init(), trainable=True)
        self.gamma = self.add_weight(name="gamma", shape=(s, d), initializer=_fast_init(), trainable=True)
        self.member_bias = (self.add_weight(name="member_bias", shape=(s, d), initializer="zeros", trainable=True)
                            if self.use_member_bias else None)

    def _scale_rows(self, x, v):
        """``x [S*B, ..., K] * v[member of the row] [S, K]`` via a member-major reshape."""
        k = x.shape[-1]
        y = tf.reshape(x, [self.num_members, -1, k]) * tf.expand_dims(v, 1)
        return tf.reshape(y, tf.shape(x))

    def _finish(self, y):
        y = self._scale_rows(y, self.gamma)
        if self.member_bias is not None:
            d = y.shape[-1]
            y = tf.reshape(tf.reshape(y, [self.num_members, -1, d]) + tf.expand_dims(self.member_bias, 1), tf.shape(y))
        return self.member_activation(y)

    def temperature_weights(self):
        """``[(variable, power)]``: scaling these by ``(1/T)**power`` divides the logits by ``T``."""
        return [(self.gamma, 1)] + ([(self.member_bias, 1)] if self.member_bias is not None else [])


@register
class DenseBatchEnsemble(_BatchEnsembleMixin, keras.layers.Layer):
    """A BatchEnsemble ``Dense``: ``y_s = act(((x ⊙ r_s) W) ⊙ s_s + b_s)`` for each member's rows.

    Args:
        units: output features D.
        num_members: S; the input batch is ``S*B`` rows, member-major.
        activation: as ``Dense``.
        use_bias: a bias per member (default True).
        kernel_initializer, kernel_regularizer: of the shared kernel, as ``Dense``.

    Example:
        >>> h = TileMembers(4)(x); y = DenseBatchEnsemble(10, num_members=4)(h)   # doctest: +SKIP
    """

    def __init__(self, units: int, num_members: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self._init_members(num_members, activation, use_bias, kernel_initializer, kernel_regularizer)

    def build(self, input_shape):
        k = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(k, self.units), initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, trainable=True)
        self._add_fast(k, self.units)
        super().build(input_shape)

    def call(self, inputs):
        return self._finish(tf.matmul(self._scale_rows(inputs, self.alpha), self.kernel))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_members": self.num_members,
                "activation": keras.activations.serialize(self.member_activation), "use_bias": self.use_member_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


@register
class Conv2DBatchEnsemble(_BatchEnsembleMixin, keras.layers.Layer):
    """A BatchEnsemble ``Conv2D``: ``y_s = act(conv(x ⊙ r_s, W) ⊙ s_s + b_s)`` (r over input channels,
    s over filters) for each member's rows.

    Args:
        filters, kernel_size, strides, padding: as ``Conv2D`` (channels_last, no dilation).
        num_members: S; the input batch is ``S*B`` rows, member-major.
        activation, use_bias, kernel_initializer, kernel_regularizer: as ``Conv2D``.
    """

    def __init__(self, filters: int, kernel_size, num_members: int, strides=(1, 1), padding: str = "valid",
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        pad = str(padding).lower()
        if pad not in ("valid", "same"):
            raise InvalidInputError(f"Invalid value received for argument `padding`. Expected 'valid' or 'same'. Received: padding={padding!r}")
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = tuple(int(k) for k in ((kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size))
        self.strides = tuple(int(k) for k in ((strides, strides) if isinstance(strides, int) else strides))
        self.padding = pad
        self._init_members(num_members, activation, use_bias, kernel_initializer, kernel_regularizer)

    def build(self, input_shape):
        k = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, k, self.filters),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
                                      trainable=True)
        self._add_fast(k, self.filters)
        super().build(input_shape)

    def call(self, inputs):
        y = tf.nn.conv2d(self._scale_rows(inputs, self.alpha), self.kernel, strides=[1, *self.strides, 1],
                         padding=self.padding.upper())
        return self._finish(y)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        out = []
        for n, k, s in zip(shape[1:3], self.kernel_size, self.strides):
            if n is None:
                out.append(None)
            else:
                out.append(-(-n // s) if self.padding == "same" else (n - k) // s + 1)
        return tf.TensorShape([shape[0], *out, self.filters])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "num_members": self.num_members, "strides": list(self.strides), "padding": self.padding,
                "activation": keras.activations.serialize(self.member_activation), "use_bias": self.use_member_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


BATCH_ENSEMBLE_LAYERS = (DenseBatchEnsemble, Conv2DBatchEnsemble)
