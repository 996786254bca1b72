"""Mode ``single_pass``: posteriors whose uncertainty needs one forward pass, head in the graph.

- MIMO / BatchEnsemble (:class:`~tflbayes.posterior.SinglePassPosterior`): the Keras model itself
  (MIMO's input repeated into every slot, BatchEnsemble's batch tiled over members — both inside
  the model) frozen into constants, its logits ``[B, S, C]`` transposed to ``[S, B, C]`` and fed to
  the ensemble head (:func:`~tflbayes.converters.graphs.head.head_from_logits`): probs, total,
  aleatoric, epistemic, member_probs. One invoke gives S predictions.
- Last-layer Laplace (:class:`~tflbayes.posterior.LaplacePosterior`): the network with its
  :class:`~tflbayes.layers.LaplaceHead` gives mean logits ``mu`` and variances ``var``; then

  - ``link="probit"``: ``probs = softmax(mu / sqrt(1 + pi/8 var))``, ``total = H[probs]`` (from
    LOG_SOFTMAX, exact where a probability underflows); no aleatoric / epistemic;
  - ``link="bridge"``: ``ln alpha = ln(1 - 2/C + exp(mu_k + logsumexp(-mu)) / C²) - ln var`` and the
    Dirichlet head of :mod:`~tflbayes.converters.graphs.dirichlet` (digamma from builtin ops).

  Both are closed forms from builtin ops: no random op. ``link="mc"`` has no closed form and is
  refused (convert ``post.with_link("probit")`` or ``"bridge"``).

For int8 the body is integer-only and the head runs in float on the CPU (``head.tflite``):
MIMO / BatchEnsemble bodies output ``logits [S, B, C]``; a Laplace body outputs the ``features``
entering the Laplace head, whose variances (tiny numbers next to the logits) are computed in float.
"""
from __future__ import annotations

import math

from tflbayes._keras import keras, tf
from tflbayes.converters.graphs.chain import check_batch_size
from tflbayes.converters.graphs.dirichlet import dirichlet_head, frozen_logits
from tflbayes.converters.graphs.head import head_from_logits
from tflbayes.errors import ConversionError

__all__ = ["SINGLE_PASS_KINDS", "build_single_pass", "single_pass_head_fn", "single_pass_outputs",
           "probit_head", "bridge_log_alpha"]

#: Posterior kinds mode ``single_pass`` converts.
SINGLE_PASS_KINDS = ("single_pass", "laplace")
_ENSEMBLE_OUTPUTS = ["probs", "total", "aleatoric", "epistemic", "member_probs"]


def _check(posterior):
    kind = getattr(posterior, "kind", None)
    if kind not in SINGLE_PASS_KINDS:
        raise ConversionError(
            f"mode='single_pass' needs a MIMO, BatchEnsemble or last-layer Laplace posterior; received "
            f"{type(posterior).__name__}.")
    if kind == "laplace" and posterior.link not in ("probit", "bridge"):
        raise ConversionError(
            f"A Laplace posterior with link={posterior.link!r} samples its predictive; the single-pass bundle has "
            "closed-form heads only: convert post.with_link('probit') or post.with_link('bridge').")
    return kind


def single_pass_outputs(posterior):
    """``(outputs, body_outputs)``: what the pipeline outputs and what an int8 body hands its head."""
    if _check(posterior) == "single_pass":
        return list(_ENSEMBLE_OUTPUTS), ["logits"]
    if posterior.link == "probit":
        return ["probs", "total"], ["features"]
    return ["probs", "total", "aleatoric", "epistemic"], ["features"]


def probit_head(mu, var) -> dict:
    """``softmax(mu / sqrt(1 + pi/8 var))`` and its entropy."""
    z = mu * tf.math.rsqrt(1.0 + (math.pi / 8.0) * tf.maximum(var, 0.0))
    p = tf.nn.softmax(z, axis=-1)
    return {"probs": p, "total": -tf.reduce_sum(p * tf.nn.log_softmax(z, axis=-1), axis=-1)}


def bridge_log_alpha(mu, var):
    """The Laplace bridge's ``ln alpha`` (:func:`tflbayes.posterior.laplace.bridge_log_alpha`) in builtin ops."""
    c = int(mu.shape[-1])
    neg = -mu
    m = tf.reduce_max(neg, axis=-1, keepdims=True)
    lse = m + tf.math.log(tf.reduce_sum(tf.exp(neg - m), axis=-1, keepdims=True))
    u = mu + lse - 2.0 * math.log(c)  # >= -2 ln C
    a = 1.0 - 2.0 / c
    if a <= 0:
        log_num = u
    else:  # logaddexp(ln a, u) = max + ln(1 + exp(-|diff|))
        la = math.log(a)
        hi = tf.maximum(u, la)
        log_num = hi + tf.math.log(1.0 + tf.exp(-tf.abs(u - la)))
    return log_num - tf.math.log(tf.maximum(var, 1e-30))


def _laplace_head(moments, link):
    mu, var = moments[:, 0], moments[:, 1]
    if link == "probit":
        return probit_head(mu, var)
    out = dirichlet_head(bridge_log_alpha(mu, var))
    out.pop("alpha")  # the manifest reserves `alpha` for mode dirichlet; probs and the decomposition suffice
    return out


def _feature_model(posterior):
    return keras.Model(posterior.model.inputs, posterior.head.input)


def build_single_pass(posterior, batch_size: int = 1, head: bool = True):
    """The LiteRT graph of a single-pass posterior (module docstring).

    Returns:
        A ``tf.function`` on ``x [B, *input_shape]`` (float32) returning the head's outputs
        (:func:`single_pass_outputs`), or with ``head=False`` the int8 body's ``logits`` / ``features``.

    Raises:
        ConversionError: not a single-pass / Laplace posterior, or a Laplace posterior with ``link="mc"``.
    """
    batch_size = check_batch_size(batch_size)
    kind = _check(posterior)
    spec = tf.TensorSpec([batch_size, *posterior.input_shape], tf.float32, name="x")
    if kind == "laplace" and not head:
        feats = frozen_logits(_feature_model(posterior), batch_size, posterior.input_shape)

        @tf.function(input_signature=[spec])
        def laplace_body(x):
            return {"features": feats(x)[0]}

        return laplace_body
    frozen = frozen_logits(posterior.model, batch_size, posterior.input_shape)
    link = posterior.link if kind == "laplace" else None

    @tf.function(input_signature=[spec])
    def single_pass(x):
        out = frozen(x)[0]
        if kind == "laplace":
            return _laplace_head(out, link)
        logits = tf.transpose(out, [1, 0, 2])  # [S, B, C]
        return head_from_logits(logits, member_probs=True) if head else {"logits": logits}

    return single_pass


def single_pass_head_fn(posterior, batch_size: int = 1):
    """The float head after an int8 body: ``logits [S, B, C]`` (MIMO / BatchEnsemble) or ``features
    [B, D]`` -> Laplace head -> link (Laplace)."""
    batch_size = check_batch_size(batch_size)
    if _check(posterior) == "single_pass":
        s, c = posterior.num_samples, posterior.num_classes

        @tf.function(input_signature=[tf.TensorSpec([s, batch_size, c], tf.float32, name="logits")])
        def ensemble_head(logits):
            return head_from_logits(logits, member_probs=True)

        return ensemble_head
    layer, link = posterior.head, posterior.link
    d = int(layer.input_shape[-1])

    # layer.call, not layer(...): a second call would give the posterior's head two inbound nodes;
    # the converter freezes its variables (posterior.model, the trackable, owns them)
    @tf.function(input_signature=[tf.TensorSpec([batch_size, d], tf.float32, name="features")])
    def laplace_head(features):
        return _laplace_head(layer.call(features), link)

    return laplace_head
