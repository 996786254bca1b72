"""Plumbing layers of the single-pass posteriors (MIMO, BatchEnsemble) and of calibration.

Each is a deterministic, weightless Keras layer that converts to LiteRT builtins:

- :class:`RepeatChannels`: MIMO's prediction-time input, ``x [B, ..., c] -> [B, ..., S*c]`` (the
  same input in every one of the S input slots; CONCATENATION).
- :class:`TileMembers`: BatchEnsemble's vectorisation, ``x [B, ...] -> [S*B, ...]`` member-major
  (rows ``s*B .. s*B + B - 1`` belong to member ``s``; CONCATENATION, as int8 TILE is missing from
  some kernels).
- :class:`UntileMembers`: ``[S*B, C] -> [B, S, C]`` (RESHAPE + TRANSPOSE), the single-pass output.
- :class:`TemperatureScale`: ``logits / T`` (MUL by the constant ``1/T``), what ``tb.calibrate``
  appends when the model's last layer cannot absorb the temperature.
"""
from __future__ import annotations

from tflbayes._keras import keras, register, tf
from tflbayes._checks import check_positive_float, check_positive_int

__all__ = ["RepeatChannels", "TileMembers", "UntileMembers", "TemperatureScale"]


def _check_members(value) -> int:
    return check_positive_int("num_members", value)


class _MembersLayer(keras.layers.Layer):
    """A weightless layer configured by S (``num_members``)."""

    def __init__(self, num_members: int, **kwargs):
        super().__init__(**kwargs)
        self.num_members = _check_members(num_members)

    def get_config(self):
        return {**super().get_config(), "num_members": self.num_members}


class _Repeat(_MembersLayer):
    """``concat([x] * S, axis=self.axis)`` (CONCATENATION: int8 TILE is missing from some kernels)."""

    axis = -1

    def call(self, inputs):
        return tf.concat([inputs] * self.num_members, axis=self.axis)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        shape[self.axis] = None if shape[self.axis] is None else shape[self.axis] * self.num_members
        return tf.TensorShape(shape)


@register
class RepeatChannels(_Repeat):
    """``x [B, ..., c] -> concat([x] * S, axis=-1) [B, ..., S*c]``: MIMO's S input slots, one input.

    Args:
        num_members: S, the number of input slots.
    """

    axis = -1


@register
class TileMembers(_Repeat):
    """``x [B, ...] -> [S*B, ...]``: every BatchEnsemble member gets the whole batch (member-major).

    Args:
        num_members: S.
    """

    axis = 0


@register
class UntileMembers(_MembersLayer):
    """``[S*B, C] (member-major) -> [B, S, C]``: the S members' logits side by side per input.

    Args:
        num_members: S.
    """

    def call(self, inputs):
        c = inputs.shape[-1]
        return tf.transpose(tf.reshape(inputs, [self.num_members, -1, c]), [1, 0, 2])

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        b = None if shape[0] is None else shape[0] // self.num_members
        return tf.TensorShape([b, self.num_members, shape[-1]])


@register
class TemperatureScale(keras.layers.Layer):
    """``logits -> logits / T`` (temperature scaling, Guo et al. 2017), as a MUL by ``1/T``.

    Args:
        temperature: T > 0.
    """

    def __init__(self, temperature: float, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_positive_float("temperature", temperature)

    def call(self, inputs):
        return inputs * tf.constant(1.0 / self.temperature, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
