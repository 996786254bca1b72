"""Mode ``dirichlet``: the EnD² student and its Dirichlet uncertainty head in one LiteRT graph.

The head computes, from the student's alpha logits ``z [B, C]`` (see
:mod:`tflbayes.posterior.dirichlet` for the parametrisation)::

    alpha     = exp(clip(z, ln 1e-3, ln 1e4))                      [B, C]
    probs     = alpha / alpha_0                                    [B, C]
    total     = H[probs] = ln alpha_0 - sum_c probs_c * ln alpha_c [B]
    aleatoric = psi(alpha_0 + 1) - sum_c probs_c psi(alpha_c + 1)  [B]   (Malinin & Gales 2018)
    epistemic = max(total - aleatoric, 0)                          [B]   (mutual information)

which is :func:`tflbayes.uncertainty.dirichlet_decompose` rewritten with ``sum_c probs_c = 1``.
LiteRT has no digamma builtin, so :func:`digamma` builds it from builtin ops: the recurrence
``psi(x) = psi(x + k) - sum_{i<k} 1 / (x + i)`` (k = 32) moves the argument to ``y = x + k >= 32``,
where the first two terms of the asymptotic series

    psi(y) = ln y - 1/(2y) - 1/(12 y^2) + 1/(120 y^4) - ...

are taken as the single fraction ``1 / (2 (y - 1/6)) = 1/(2y) + 1/(12y^2) + 1/(72y^3) + ...``
(truncation error ``1/(72 y^3) <= 4.3e-7`` for ``y >= 32``). The shift terms and that fraction
are one weighted sum of reciprocals, so the whole function is seven ops (RESHAPE, ADD, DIV,
SUM, ADD, LOG, SUB) whatever ``k`` is:

    psi(x) ~= ln(x + k) - sum_j w_j / (x + c_j),   c = [0, 1, ..., k-1, k - 1/6],  w = [1, ..., 1, 1/2].

In float32 the error against ``scipy.special.digamma`` is ``<= 1e-5 * max(1, |psi(x)|)``
(absolute where ``|psi| <= 1``, i.e. around its root ``x ~ 1.46``, relative elsewhere) for ``x``
in ``[1e-3, 1e4]``; measured: 1.3e-6 (checked in ``tests/test_dirichlet_graph.py``).

The head evaluates ``psi(alpha_c + 1)`` and ``psi(alpha_0 + 1)`` together on the concatenation
``[alpha, alpha_0]`` (the ``+ 1`` folded into the constants; see :func:`dirichlet_head`).

A Dirichlet student has no posterior samples: the graph outputs no ``member_probs``; it outputs
``alpha`` instead.

Example:
    >>> fn = build_dirichlet(student, batch_size=1)                   # doctest: +SKIP
    >>> conv = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [fn.get_concrete_function()], student.model)               # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from tflbayes._keras import tf
from tflbayes.converters.graphs.chain import check_batch_size
from tflbayes.errors import ConversionError

__all__ = ["digamma", "dirichlet_head", "build_dirichlet", "dirichlet_head_fn", "frozen_logits",
           "DIRICHLET_OUTPUTS", "DIGAMMA_SHIFT"]

DIRICHLET_OUTPUTS = {
    "probs": "expected class probabilities alpha / alpha_0 [B, C]",
    "total": "total uncertainty: entropy of probs, nats [B]",
    "aleatoric": "expected data uncertainty E_{p~Dir(alpha)} H[p], nats [B]",
    "epistemic": "knowledge uncertainty: mutual information = total - aleatoric, nats [B]",
    "alpha": "Dirichlet concentrations [B, C]",
    "alpha_logits": "the student's raw outputs z, alpha = exp(clip(z, ln 1e-3, ln 1e4)) [B, C] (input of the head)",
}

#: The recurrence moves every argument up by this much before the asymptotic series.
DIGAMMA_SHIFT = 32


def _log_alpha_range():
    from tflbayes.posterior.dirichlet import LOG_ALPHA_MAX, LOG_ALPHA_MIN

    return LOG_ALPHA_MIN, LOG_ALPHA_MAX


def _digamma_constants(offset: float):
    k = DIGAMMA_SHIFT
    c = np.concatenate([np.arange(k, dtype=np.float64), [k - 1.0 / 6.0]]) + offset
    w = np.concatenate([np.ones(k), [0.5]])
    return c.astype(np.float32), w.astype(np.float32), np.float32(k + offset)


def _reciprocal_sum(x, offset: float):
    """``sum_j w_j / (x + offset + c_j)``: the recurrence terms plus the series fraction."""
    c, w, _ = _digamma_constants(offset)
    return tf.reduce_sum(tf.constant(w) / (tf.expand_dims(x, -1) + tf.constant(c)), axis=-1)


def digamma(x, offset: float = 0.0):
    """``psi(x + offset)`` for float32 ``x + offset > 0`` from LiteRT builtin ops (module docstring)."""
    x = tf.convert_to_tensor(x, tf.float32)
    _, _, shift = _digamma_constants(offset)
    return tf.math.log(x + shift) - _reciprocal_sum(x, offset)


def dirichlet_head(alpha_logits) -> dict:
    """``alpha_logits [B, C]`` -> probs, total, aleatoric, epistemic, alpha (module docstring).

    With ``V = [alpha_1..alpha_C, alpha_0]`` and ``q = [-probs_1..-probs_C, 1]`` (``q = V * sign / alpha_0``)::

        total     = sum_j q_j ln V_j                    = ln alpha_0 - sum_c probs_c ln alpha_c
        epistemic = sum_j q_j (ln V_j - psi(V_j + 1))   = total - aleatoric
        aleatoric = total - epistemic                   = psi(alpha_0 + 1) - sum_c probs_c psi(alpha_c + 1)

    where ``ln V - psi(V + 1) = ln(V / (V + 1 + k)) + sum_j w_j / (V + 1 + c_j)`` (the digamma of
    :func:`digamma` with its logarithm merged into one LOG). Written this way the head is 23
    LiteRT ops with no slicing; one member's softmax/entropy head costs about the same.
    """
    lo, hi = _log_alpha_range()
    z = tf.clip_by_value(alpha_logits, lo, hi)
    c = int(z.shape[-1])
    alpha = tf.exp(z)
    a0 = tf.reduce_sum(alpha, axis=-1, keepdims=True)
    probs = alpha / a0
    v = tf.concat([alpha, a0], axis=-1)
    q = v * tf.constant(np.r_[-np.ones(c), 1.0].astype(np.float32)) / a0
    _, _, shift = _digamma_constants(1.0)
    log_v_minus_psi = tf.math.log(v / (v + shift)) + _reciprocal_sum(v, 1.0)
    total = tf.reduce_sum(q * tf.math.log(v), axis=-1)
    mutual_information = tf.reduce_sum(q * log_v_minus_psi, axis=-1)
    return {
        "probs": probs,
        "total": total,
        "aleatoric": total - mutual_information,
        "epistemic": tf.maximum(mutual_information, 0.0),
        "alpha": alpha,
    }


def frozen_logits(model, batch_size: int, input_shape):
    """The Keras ``model`` traced for inputs ``[batch_size, *input_shape]`` with its weights frozen
    into constants (so the function converts on its own): a concrete function ``x -> [outputs]``."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from tflbayes.converters.graphs.recurrent import unroll_recurrent

    model = unroll_recurrent(model)  # GRU / LSTM loops written out: they quantize (and int8 does not crash)
    spec = tf.TensorSpec([batch_size, *input_shape], tf.float32, name="x")
    keras_fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return convert_variables_to_constants_v2(keras_fn.get_concrete_function())


def build_dirichlet(posterior, batch_size: int = 1, head: bool = True):
    """The LiteRT graph of a :class:`~tflbayes.posterior.DirichletPosterior`.

    Args:
        posterior: the EnD² student.
        batch_size: the static batch ``B`` of the input ``x``.
        head: with the Dirichlet head in the graph (float precisions); ``False`` gives the body
            for int8 / Edge TPU, whose head runs as :func:`dirichlet_head_fn` on the CPU.

    Returns:
        A ``tf.function`` with ``input_signature=[TensorSpec([B, *input_shape], float32, name="x")]``
        returning ``{"probs", "total", "aleatoric", "epistemic", "alpha"}`` (``head=True``) or
        ``{"alpha_logits": [B, C]}`` (``head=False``).

    Raises:
        ConversionError: the posterior is not a Dirichlet student.
    """
    batch_size = check_batch_size(batch_size)
    if getattr(posterior, "kind", None) != "dirichlet":
        raise ConversionError(
            "mode='dirichlet' needs a DirichletPosterior (an EnD² student from "
            f"tb.distill(teacher, x, method='end2')); received {type(posterior).__name__}.")
    frozen = frozen_logits(posterior.model, batch_size, posterior.input_shape)
    spec = tf.TensorSpec([batch_size, *posterior.input_shape], tf.float32, name="x")

    @tf.function(input_signature=[spec])
    def dirichlet(x):
        z = frozen(x)[0]
        return dirichlet_head(z) if head else {"alpha_logits": z}

    return dirichlet


def dirichlet_head_fn(batch_size: int, num_classes: int):
    """The float Dirichlet head alone, on input ``alpha_logits [B, C]`` (the CPU stage after an int8 body)."""
    batch_size = check_batch_size(batch_size)

    @tf.function(input_signature=[tf.TensorSpec([batch_size, int(num_classes)], tf.float32, name="alpha_logits")])
    def head(alpha_logits):
        return dirichlet_head(alpha_logits)

    return head
