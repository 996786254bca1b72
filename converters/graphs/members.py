"""Mode ``members``: one graph per ensemble member (for runtimes that stream members through memory).

Each member is the Keras model with that member's weights, traced as-is and frozen (its weights
become constants, so the function owns no variables and converts on its own); the host (or the runtime)
runs the S files one after another and combines their logits with the uncertainty head.

Example:
    >>> fns = [build_member(post, i) for i in range(post.num_samples)]   # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from tflbayes._keras import tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # noqa: E402
from tflbayes.converters.graphs.chain import check_batch_size
from tflbayes.errors import ConversionError, InvalidInputError

__all__ = ["build_member"]


def build_member(posterior, i: int, batch_size: int = 1):
    """A ``tf.function`` computing member ``i``'s logits.

    Args:
        posterior: an :class:`~tflbayes.posterior.EnsemblePosterior`.
        i: the member, ``0 <= i < S``.
        batch_size: the static batch dimension ``B`` of the input ``x``.

    Returns:
        A ``tf.function`` with ``input_signature=[TensorSpec([B, *input_shape], float32, name="x")]``
        returning ``{"logits": [B, C]}``.
    """
    batch_size = check_batch_size(batch_size)
    if not hasattr(posterior, "member_model"):
        raise ConversionError(
            f"Mode 'members' needs an ensemble posterior (S fixed weight sets); received {type(posterior).__name__}."
        )
    s = posterior.num_samples
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < s:
        raise InvalidInputError(
            f"Invalid value received for argument `i`. Expected a member index in [0, {s - 1}]. Received: i={i!r}"
        )
    from tflbayes.converters.graphs.recurrent import unroll_recurrent

    model = unroll_recurrent(posterior.member_model(int(i)))  # recurrent loops unrolled (see recurrent.py)
    spec = tf.TensorSpec([batch_size, *posterior.input_shape], tf.float32, name="x")
    keras_fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    # Freeze the member's variables into constants: the converter only writes a signature when its
    # trackable object owns the captured variables, and the driver passes ``posterior.model``.
    frozen = convert_variables_to_constants_v2(keras_fn.get_concrete_function())

    @tf.function(input_signature=[spec])
    def member(x):
        return {"logits": frozen(x)[0]}

    return member
