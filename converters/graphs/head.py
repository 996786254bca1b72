"""The uncertainty head as TF ops that convert to LiteRT builtins (SOFTMAX, LOG_SOFTMAX, MEAN, SUM, ...).

Mirrors :func:`tflbayes.uncertainty.decompose` (the numpy reference) from logits, so that no
entropy is ever computed from quantized probabilities.
"""
from __future__ import annotations

from tflbayes._keras import tf

__all__ = ["head_from_logits", "HEAD_OUTPUTS"]

HEAD_OUTPUTS = {
    "probs": "posterior predictive probabilities, mean over the S samples [B, C]",
    "total": "total uncertainty: entropy of probs, nats [B]",
    "aleatoric": "expected data uncertainty: mean entropy of the samples, nats [B]",
    "epistemic": "knowledge uncertainty: mutual information = total - aleatoric, nats [B]",
    "member_probs": "per-sample probabilities [S, B, C]",
}

_TINY = 1e-30


def head_from_logits(logits, member_probs: bool = False) -> dict:
    """``logits [S, B, C]`` -> probs, total, aleatoric, epistemic (and optionally member_probs).

    total = H[mean_s softmax(l_s)], aleatoric = mean_s H[softmax(l_s)] with
    H[softmax(l)] = -sum_c p_c log_softmax(l)_c (exact even where p_c underflows to 0),
    epistemic = max(total - aleatoric, 0).
    """
    p = tf.nn.softmax(logits, axis=-1)
    logp = tf.nn.log_softmax(logits, axis=-1)
    aleatoric = tf.reduce_mean(-tf.reduce_sum(p * logp, axis=-1), axis=0)
    mean = tf.reduce_mean(p, axis=0)
    total = -tf.reduce_sum(mean * tf.math.log(tf.maximum(mean, _TINY)), axis=-1)
    out = {
        "probs": mean,
        "total": total,
        "aleatoric": aleatoric,
        "epistemic": tf.maximum(total - aleatoric, 0.0),
    }
    if member_probs:
        out["member_probs"] = p
    return out
