"""LiteRT graphs of BDK / GPED students (:class:`~tflbayes.posterior.DistilledPosterior`).

A distilled student is one deterministic network; its graph is the network (weights frozen into
constants, :func:`~tflbayes.converters.graphs.dirichlet.frozen_logits`) plus a small head that
mirrors :meth:`DistilledPosterior.predict`:

- ``probs = softmax(z[:, :C])``, ``total = -sum_c probs_c log_softmax(z)_c`` (exact where a
  probability underflows);
- GPED only: each distilled expectation is ``ln(C) * sigmoid(z[:, C + j])``; ``aleatoric`` = the
  expected entropy (else ``max(total - MI, 0)``), ``epistemic`` = the mutual-information head
  (else ``max(total - aleatoric, 0)``). A BDK student outputs no aleatoric/epistemic tensors
  (the runtime reports them as ``None``).

Builtin ops only (SOFTMAX, LOG_SOFTMAX, LOGISTIC, MUL, SUM, SUB, MAXIMUM, STRIDED_SLICE).
"""
from __future__ import annotations

import math

from tflbayes._keras import tf
from tflbayes.converters.graphs.chain import check_batch_size
from tflbayes.errors import ConversionError

__all__ = ["build_gped", "gped_head_fn", "distilled_head", "DISTILLED_OUTPUTS"]

DISTILLED_OUTPUTS = {
    "probs": "the student's posterior predictive probabilities [B, C]",
    "total": "total uncertainty: entropy of probs, nats [B]",
    "aleatoric": "GPED: distilled expected entropy E_theta H[p(y|x,theta)], nats [B]",
    "epistemic": "GPED: max(total - aleatoric, 0), nats [B]",
    "student_outputs": "the student's raw outputs [B, C (+1 for GPED)] (input of the head)",
}


def distilled_head(z, num_classes: int, expectations=("predictive",)) -> dict:
    """Student outputs ``z [B, C + E]`` -> probs, total (and aleatoric, epistemic for GPED)."""
    c = int(num_classes)
    logits = z[:, :c] if int(z.shape[-1]) != c else z
    probs = tf.nn.softmax(logits, axis=-1)
    total = -tf.reduce_sum(probs * tf.nn.log_softmax(logits, axis=-1), axis=-1)
    out = {"probs": probs, "total": total}
    heads = {name: math.log(c) * tf.sigmoid(z[:, c + j]) for j, name in enumerate(list(expectations)[1:])}
    ee, mi = heads.get("expected_entropy"), heads.get("mutual_information")
    if ee is None and mi is None:
        return out
    out["aleatoric"] = ee if ee is not None else tf.maximum(total - mi, 0.0)
    out["epistemic"] = mi if mi is not None else tf.maximum(total - ee, 0.0)
    return out


def _check(student):
    if getattr(student, "kind", None) != "distilled":
        raise ConversionError(
            "build_gped needs a distilled BDK/GPED student (DistilledPosterior from tb.distill(..., "
            f"method='bdk' or 'gped')); received {type(student).__name__}.")
    return list(student.expectations)


def build_gped(student, batch_size: int = 1, head: bool = True):
    """The LiteRT graph of a BDK or GPED student.

    Args:
        student: a :class:`~tflbayes.posterior.DistilledPosterior`.
        batch_size: the static batch ``B`` of the input ``x``.
        head: with the head in the graph; ``False`` gives the body (int8 / Edge TPU) returning
            ``{"student_outputs": [B, C (+1)]}``, whose head is :func:`gped_head_fn`.

    Returns:
        A ``tf.function`` with ``input_signature=[TensorSpec([B, *input_shape], float32, name="x")]``
        returning ``{"probs", "total"}`` (BDK) or ``{"probs", "total", "aleatoric", "epistemic"}``
        (GPED), or ``{"student_outputs": [B, C + E]}`` with ``head=False``.
    """
    from tflbayes.converters.graphs.dirichlet import frozen_logits

    batch_size = check_batch_size(batch_size)
    expectations = _check(student)
    frozen = frozen_logits(student.model, batch_size, student.input_shape)
    spec = tf.TensorSpec([batch_size, *student.input_shape], tf.float32, name="x")
    c = student.num_classes

    @tf.function(input_signature=[spec])
    def distilled(x):
        z = frozen(x)[0]
        return distilled_head(z, c, expectations) if head else {"student_outputs": z}

    return distilled


def gped_head_fn(student, batch_size: int = 1):
    """The float head alone, on input ``student_outputs [B, C (+1)]`` (the CPU stage after an int8 body)."""
    batch_size = check_batch_size(batch_size)
    expectations = _check(student)
    c = student.num_classes
    width = c + len(expectations) - 1

    @tf.function(input_signature=[tf.TensorSpec([batch_size, width], tf.float32, name="student_outputs")])
    def head(student_outputs):
        return distilled_head(student_outputs, c, expectations)

    return head
