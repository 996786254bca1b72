"""Mode ``batched``, general layout: S member networks side by side in one graph, any architecture.

The packed layout (:mod:`~tflbayes.converters.graphs.batched`) rewrites a chain of Dense /
Conv2D / pooling layers into grouped convolutions and BATCH_MATMULs; it cannot take a residual
``Add``, a DepthwiseConv2D or a GRU. This layout takes any Sequential or functional model that
the LiteRT converter can convert:

1. each member is the posterior's Keras model cloned with that member's weights
   (:meth:`EnsemblePosterior.member_model`), traced with ``training=False`` (BatchNormalization
   uses its moving statistics, so the converter folds it into the convolution before it; Dropout
   is the identity) and frozen into constants;
2. the graph runs the S frozen networks on the same input ``x`` (S parallel branches sharing the
   input), reshapes each member's logits ``[B, C]`` to ``[1, B, C]`` and concatenates them into
   ``[S, B, C]`` (RESHAPE + CONCATENATION: no grouped CONV_2D, no BATCH_MATMUL, which is why the
   Edge TPU path always uses this layout);
3. the uncertainty head (:func:`~tflbayes.converters.graphs.head.head_from_logits`) follows.

The graph is S times one member's ops: one invoke instead of S, the interpreter's per-invoke
overhead and the head paid once (``benchmarks/architectures_latency.py`` measures it).

:func:`choose_layout` decides between the two: ``"packed"`` when the model is a chain the packed
builder supports (and the precision is not ``edgetpu``), else ``"general"``.

Example:
    >>> fn = build_batched_general(post, batch_size=1)                # doctest: +SKIP
"""
from __future__ import annotations

from tflbayes._keras import tf
from tflbayes.converters.graphs.chain import check_batch_size
from tflbayes.converters.graphs.head import head_from_logits
from tflbayes.errors import ConversionError, InvalidInputError

__all__ = ["build_batched_general", "choose_layout", "packed_fits", "LAYOUTS"]

LAYOUTS = ("auto", "packed", "general")


def packed_fits(posterior) -> bool:
    """Whether the packed (grouped-conv / BATCH_MATMUL) builder takes this ensemble's model."""
    from tflbayes.converters.graphs.chain import plan

    try:
        plan(posterior.model, posterior.members[:1])
    except ConversionError:
        return False
    return True


def choose_layout(posterior, layout: str = "auto", precision: str = "float32") -> str:
    """``"packed"`` or ``"general"`` for a batched ensemble graph.

    ``auto``: packed where the model is a supported chain and the precision is not ``edgetpu``
    (the Edge TPU compiler rejects grouped CONV_2D), else general. An explicit ``"packed"`` on a
    model the packed builder cannot take raises the builder's ``ConversionError`` (naming the layer).
    """
    if layout not in LAYOUTS:
        raise InvalidInputError(
            f"Invalid value received for argument `layout`. Expected one of {', '.join(map(repr, LAYOUTS))}. "
            f"Received: layout={layout!r}")
    if precision == "edgetpu":
        if layout == "packed":
            raise ConversionError(
                "layout='packed' cannot target the Edge TPU: its compiler rejects grouped CONV_2D and "
                "BATCH_MATMUL; use layout='general' (the default for precision='edgetpu').")
        return "general"
    if layout == "packed":
        from tflbayes.converters.graphs.chain import plan

        try:
            plan(posterior.model, posterior.members[:1])
        except ConversionError as e:
            raise ConversionError(f"{e} layout='packed' takes only such chains; layout='general' (or 'auto') "
                                  "converts this model.") from None
        return layout
    if layout == "general":
        return layout
    return "packed" if packed_fits(posterior) else "general"


def _frozen_member(posterior, i: int, batch_size: int):
    from tflbayes.converters.graphs.dirichlet import frozen_logits

    return frozen_logits(posterior.member_model(i), batch_size, posterior.input_shape)  # recurrent: unrolled


def build_batched_general(posterior, batch_size: int = 1, head: bool = True, member_probs: bool = False):
    """A ``tf.function`` running every member of an ensemble, each its own network, in one graph.

    Args:
        posterior: an :class:`~tflbayes.posterior.EnsemblePosterior` whose model is a Sequential
            or functional model outputting logits ``[B, C]``.
        batch_size: the static batch ``B`` of the input ``x``.
        head: append the uncertainty head; else return ``{"logits": [S, B, C]}``.
        member_probs: with the head, also return the per-member probabilities ``[S, B, C]``.

    Returns:
        A ``tf.function`` with ``input_signature=[TensorSpec([B, *input_shape], float32, name="x")]``
        returning the head's outputs or the logits (the contract of :mod:`tflbayes.converters.graphs`).

    Raises:
        ConversionError: not an ensemble, or the model's output is not ``[B, C]`` logits.
    """
    batch_size = check_batch_size(batch_size)
    if getattr(posterior, "members", None) is None or not hasattr(posterior, "member_model"):
        raise ConversionError(
            f"Mode 'batched' needs an ensemble posterior (S fixed weight sets); received "
            f"{type(posterior).__name__}. Use mode 'stochastic' for MC dropout / variational posteriors.")
    c = int(posterior.num_classes)
    out_shape = list(posterior.model.outputs[0].shape)[1:] if hasattr(posterior.model, "outputs") else None
    if out_shape is not None and out_shape != [c]:
        raise ConversionError(
            f"Cannot convert model {posterior.model.name!r}: its output has shape [B, {', '.join(map(str, out_shape))}]; "
            "the batched graph needs logits [B, classes].")
    frozen = [_frozen_member(posterior, i, batch_size) for i in range(posterior.num_samples)]
    spec = tf.TensorSpec([batch_size, *posterior.input_shape], tf.float32, name="x")

    @tf.function(input_signature=[spec])
    def general(x):
        logits = tf.concat([tf.reshape(f(x)[0], [1, batch_size, c]) for f in frozen], axis=0)
        if not head:
            return {"logits": logits}
        return head_from_logits(logits, member_probs=member_probs)

    return general
