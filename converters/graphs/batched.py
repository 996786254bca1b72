"""Mode ``batched``: all S ensemble members in one graph, one invoke runs every member.

"Batch the models, not the inputs": instead of S invokes of one member, the members' weights are
stacked into constants and every layer runs all members at once:

- the first layer sees the same input for every member, so it is one ordinary op with the
  members' kernels concatenated along the output axis (one FULLY_CONNECTED or CONV_2D);
- the members then sit on the channel axis (member-major: channel ``s * C + c``) through the
  convolutional part, so each later Conv2D is one *grouped* convolution (``groups = S``, LiteRT
  CONV_2D with ``filter in-channels = input channels / S``) and pooling needs no change;
- ``Flatten -> Dense`` becomes one grouped VALID convolution whose kernel is the Dense kernel
  reshaped to ``[H, W, C, D]`` (exactly Keras's row-major (H, W, C) Flatten order), so no
  TRANSPOSE is needed; the result ``[B, S*D]`` is reshaped to ``[S, B, D]``;
- later Dense layers are one batched matmul over members (LiteRT BATCH_MATMUL ``[S,B,K] x [S,K,D]``).

The graph ends with the logits ``[S, B, C]`` and, unless ``head=False``, the uncertainty head
(:func:`~tflbayes.converters.graphs.head.head_from_logits`).

Sparse ensembles (``sparse_layout="shared_mask"``): a kernel whose members share one sparsity
pattern (prune-then-sample, ``tb.compress.prune(..., method="shared_mask")``) is stored as the
flat indices of the pattern once (int32 ``[nnz, 1]``) and the members' values there (float32
``[nnz, S]``), and densified in the graph before use with builtin ops: SCATTER_ND into
``[N, S]`` then TRANSPOSE/RESHAPE into the layout above (the values pass through an ADD of a
zero computed from the input, which stops the converter from folding the densification back
into a dense constant). Storage is ``N + NS`` numbers instead
of ``S * size``; the price is the densification on every invoke (and the kernels are no longer
constants, so delegates that need constant weights leave those ops on the CPU kernels). A
kernel is densified only where that stores fewer bytes; the pattern is the union of the
members' non-zeros, so any ensemble converts and the outputs equal the dense layout's.

Example:
    >>> fn = build_batched(post, batch_size=1)                       # doctest: +SKIP
    >>> conv = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [fn.get_concrete_function()], post.model)                 # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from tflbayes._keras import tf
from tflbayes.converters.graphs.chain import Step, apply_activation, check_batch_size, plan
from tflbayes.converters.graphs.head import head_from_logits
from tflbayes.errors import ConversionError, InvalidInputError

__all__ = ["build_batched", "batched_logits", "SPARSE_LAYOUTS"]

SPARSE_LAYOUTS = ("dense", "shared_mask")

# The layouts an activation can be in while the graph is built.
_SHARED = "shared"      # [B, ...]: still the same for every member (before any weights)
_CHANNELS = "channels"  # [B, (H, W,) S*C]: members on the last axis, member-major
_STACK = "stack"        # [S, B, K]: members on the leading axis (the Dense chain)


@dataclass(frozen=True)
class Layout:
    """How the graph lays the members out; the defaults are the fastest measured on LiteRT CPU
    (``benchmarks/batched_latency.py``). The alternatives are kept for that benchmark.

    Attributes:
        first_dense: ``"concat"`` one FULLY_CONNECTED with the kernels concatenated along the
            output axis; ``"broadcast"`` one BATCH_MATMUL of the shared input against ``[S, K, D]``.
        flatten_dense: ``"conv"`` Flatten -> Dense as one grouped VALID CONV_2D;
            ``"transpose"`` TRANSPOSE to ``[S, B, H*W*C]`` then BATCH_MATMUL.
        dense: ``"matmul"`` later Dense layers as BATCH_MATMUL ``[S, B, K] x [S, K, D]`` (+ ADD);
            ``"conv"`` as grouped 1x1 CONV_2D on ``[B, 1, 1, S*K]`` (bias and activation fused).
    """

    first_dense: str = "concat"
    flatten_dense: str = "conv"
    dense: str = "matmul"


@dataclass
class _State:
    t: object
    mode: str
    pending_flatten: bool = False  # channels rank 4 that a Keras Flatten has (logically) flattened


# -- layout changes --------------------------------------------------------------------------------
def _concat_out(kernel: np.ndarray) -> np.ndarray:
    """``[S, ..., Cin, Cout] -> [..., Cin, S*Cout]``: the members side by side on the output axis."""
    s = kernel.shape[0]
    k = np.moveaxis(kernel, 0, -2)  # [..., Cin, S, Cout]
    return np.ascontiguousarray(k.reshape(*k.shape[:-2], s * kernel.shape[-1]))


def _channels_to_stack(st: _State, s: int, batch: int):
    """Channels ``[B, (H, W,) S*C]`` -> ``[S, B, features]`` in each member's own Flatten order."""
    t = st.t
    shape = t.shape.as_list()
    c = shape[-1] // s
    spatial = shape[1:-1]
    if len(spatial) and (not st.pending_flatten):
        raise ConversionError("Internal error: a spatial map reached a Dense layer without Flatten.")
    n_sp = int(np.prod(spatial)) if spatial else 1
    if n_sp == 1 and batch == 1:
        return tf.reshape(t, [s, 1, c])  # same memory order: no data movement
    if n_sp == 1:
        return tf.transpose(tf.reshape(t, [batch, s, c]), [1, 0, 2])
    t = tf.reshape(t, [batch, n_sp, s, c])
    t = tf.transpose(t, [2, 0, 1, 3])  # [S, B, H*W, C]: Keras flattens (H, W, C) row-major
    return tf.reshape(t, [s, batch, n_sp * c])


def _to_stack(st: _State, s: int, batch: int) -> _State:
    if st.mode == _STACK:
        return st
    if st.mode == _SHARED:
        t = tf.reshape(st.t, [1, batch, -1])
        return _State(tf.tile(t, [s, 1, 1]), _STACK)
    return _State(_channels_to_stack(st, s, batch), _STACK)


def _to_channels(st: _State, s: int) -> _State:
    """Shared ``[B, ..., C]`` -> ``[B, ..., S*C]`` (S copies; only for a per-member op on the input)."""
    if st.mode == _SHARED:
        return _State(tf.tile(st.t, [1] * (st.t.shape.rank - 1) + [s]), _CHANNELS)
    return st


# -- kernels: constants, or a shared mask densified in the graph -----------------------------------
def _check_sparse_layout(sparse_layout) -> None:
    if sparse_layout not in SPARSE_LAYOUTS:
        raise InvalidInputError(
            f"Invalid value received for argument `sparse_layout`. Expected one of "
            f"{', '.join(repr(c) for c in SPARSE_LAYOUTS)}. Received: sparse_layout={sparse_layout!r}")


def _shared_pattern(kernel: np.ndarray):
    """``(flat indices [nnz] int32, values [nnz, S])`` of the union of the members' non-zeros, or
    ``None`` where storing them is not smaller than the dense ``[S, ...]`` constant."""
    s = kernel.shape[0]
    flat = kernel.reshape(s, -1)
    idx = np.flatnonzero(np.any(flat != 0, axis=0)).astype(np.int32)
    if idx.size == 0 or idx.size * (s + 1) >= flat.size:
        return None
    return idx, np.ascontiguousarray(flat[:, idx].T)


def _runtime_zero(x):
    """A float 0 the converter cannot evaluate ahead of time (it depends on the input; ``min(|x|, 0)``
    is 0 for every x, NaN included on LiteRT's MINIMUM). Adding it to the packed values keeps the
    converter's constant folding from densifying them back into a ``[S, ...]`` constant."""
    return tf.minimum(tf.abs(tf.reshape(x, [-1])[0]), 0.0)


def _densify(kernel: np.ndarray, zero):
    """Members-minor dense ``[size, S]`` from SCATTER_ND of the shared pattern, or None (store dense)."""
    pattern = _shared_pattern(kernel) if zero is not None else None
    if pattern is None:
        return None
    idx, vals = pattern
    size = int(np.prod(kernel.shape[1:]))
    return tf.scatter_nd(tf.constant(idx[:, None]), tf.constant(vals) + zero, [size, kernel.shape[0]])


def _concat_kernel(kernel: np.ndarray, zero):
    """:func:`_concat_out` as a graph tensor: a constant, or densified from the shared mask
    (``zero``: the runtime zero of the shared-mask layout, ``None`` for the dense layout)."""
    d = _densify(kernel, zero)
    if d is None:
        return tf.constant(_concat_out(kernel))
    s, shape = kernel.shape[0], kernel.shape[1:]
    cout = shape[-1]
    t = tf.transpose(tf.reshape(d, [-1, cout, s]), [0, 2, 1])  # [P, S, Cout]: member-major output axis
    return tf.reshape(t, [*shape[:-1], s * cout])


def _stack_kernel(kernel: np.ndarray, zero):
    """The ``[S, K, D]`` kernel as a graph tensor: a constant, or densified from the shared mask."""
    d = _densify(kernel, zero)
    if d is None:
        return tf.constant(kernel)
    return tf.reshape(tf.transpose(d), kernel.shape)


# -- the steps -------------------------------------------------------------------------------------
def _dense(st: _State, step: Step, s: int, batch: int, layout: Layout, sparse=None) -> _State:
    kernel, bias = step.params["kernel"], step.params["bias"]
    if st.mode == _SHARED and st.t.shape.rank == 2 and layout.first_dense == "concat":
        y = tf.matmul(st.t, _concat_kernel(kernel, sparse)) + tf.constant(bias.reshape(-1))
        return _State(apply_activation(y, step.activation), _CHANNELS)
    if st.mode == _SHARED and st.t.shape.rank == 2:  # "broadcast": [1, B, K] x [S, K, D]
        y = tf.matmul(st.t[None], _stack_kernel(kernel, sparse)) + tf.constant(bias[:, None, :])
        return _State(apply_activation(y, step.activation), _STACK)
    if st.mode == _CHANNELS and st.pending_flatten and layout.flatten_dense == "conv":
        _, h, w, sc = st.t.shape.as_list()
        c = sc // s
        k = _concat_kernel(kernel.reshape(s, h, w, c, kernel.shape[-1]), sparse)  # [H, W, C, S*D]
        y = tf.nn.conv2d(st.t, k, 1, "VALID") + tf.constant(bias.reshape(-1))
        y = apply_activation(y, step.activation)
        return _State(tf.reshape(y, [batch, s * kernel.shape[-1]]), _CHANNELS)
    if layout.dense == "conv" and st.mode == _CHANNELS and not st.pending_flatten:
        k = _concat_kernel(kernel[:, None, None], sparse)  # [1, 1, K, S*D]
        y = tf.nn.conv2d(tf.reshape(st.t, [batch, 1, 1, -1]), k, 1, "VALID")
        y = apply_activation(y + tf.constant(bias.reshape(-1)), step.activation)
        return _State(tf.reshape(y, [batch, -1]), _CHANNELS)
    st = _to_stack(st, s, batch)
    y = tf.matmul(st.t, _stack_kernel(kernel, sparse)) + tf.constant(bias[:, None, :])
    return _State(apply_activation(y, step.activation), _STACK)


def _conv(st: _State, step: Step, s: int, sparse=None) -> _State:
    cfg = step.config
    if st.mode == _STACK or st.t.shape.rank != 4 or st.pending_flatten:
        raise ConversionError(f"Cannot convert layer {step.layer!r} (Conv2D): its input is not an image "
                              "[B, H, W, C] (a Conv2D after Flatten or Dense is not supported).")
    if st.mode == _SHARED and cfg["groups"] > 1:
        st = _to_channels(st, s)  # per-member groups need per-member copies of the input channels
    # Shared input: one CONV_2D, kernels concatenated on the output axis. Channels: the same
    # kernel is a grouped conv (filter in-channels = input channels / (S * groups)).
    k = _concat_kernel(step.params["kernel"], sparse)
    y = tf.nn.conv2d(st.t, k, list(cfg["strides"]), cfg["padding"], dilations=list(cfg["dilations"]))
    y = y + tf.constant(step.params["bias"].reshape(-1))
    return _State(apply_activation(y, step.activation), _CHANNELS)


def _image_op(st: _State, step: Step, fn) -> _State:
    if st.mode == _STACK or st.t.shape.rank != 4 or st.pending_flatten:
        raise ConversionError(f"Cannot convert layer {step.layer!r}: pooling needs an image input [B, H, W, C].")
    return _State(fn(st.t), st.mode)


def _affine(st: _State, step: Step, s: int, batch: int) -> _State:
    scale, shift = step.params["scale"], step.params["shift"]
    if st.mode == _CHANNELS and st.pending_flatten:
        st = _to_stack(st, s, batch)
    if st.mode == _STACK:
        y = st.t * tf.constant(scale[:, None, :]) + tf.constant(shift[:, None, :])
    else:
        st = _to_channels(st, s)
        y = st.t * tf.constant(scale.reshape(-1)) + tf.constant(shift.reshape(-1))
    return _State(apply_activation(y, step.activation), st.mode)


def batched_logits(x, steps: list, s: int, layout: Optional[Layout] = None, sparse_layout: str = "dense"):
    """The ``[S, B, C]`` logits of the S members described by ``steps`` (from ``chain.plan``) on ``x``.

    ``sparse_layout``: ``"dense"`` (kernels as constants) or ``"shared_mask"`` (kernels densified
    in the graph from the members' shared sparsity pattern; see the module docstring).
    """
    layout = layout or Layout()
    _check_sparse_layout(sparse_layout)
    sparse = _runtime_zero(x) if sparse_layout == "shared_mask" else None
    batch = int(x.shape[0])
    st = _State(x, _SHARED)
    for step in steps:
        kind, cfg = step.kind, step.config
        if kind == "dense":
            st = _dense(st, step, s, batch, layout, sparse)
        elif kind == "conv2d":
            st = _conv(st, step, s, sparse)
        elif kind == "pool":
            pool = tf.nn.max_pool2d if cfg["op"] == "max" else tf.nn.avg_pool2d
            st = _image_op(st, step, lambda t: pool(t, list(cfg["pool_size"]), list(cfg["strides"]), cfg["padding"]))
        elif kind == "global_avg_pool":
            st = _image_op(st, step, lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=cfg["keepdims"]))
        elif kind == "flatten":
            if st.mode == _SHARED:
                st = _State(tf.reshape(st.t, [batch, -1]), _SHARED)
            elif st.mode == _CHANNELS and st.t.shape.rank > 2:
                if int(np.prod(st.t.shape.as_list()[1:-1])) == 1:  # 1x1 map: flattening is a reshape
                    st = _State(tf.reshape(st.t, [batch, -1]), _CHANNELS)
                else:
                    st = _State(st.t, _CHANNELS, pending_flatten=True)
        elif kind == "activation":
            st = _State(apply_activation(st.t, step.activation), st.mode, st.pending_flatten)
        elif kind == "affine":
            st = _affine(st, step, s, batch)
        else:  # pragma: no cover - plan() only emits the kinds above
            raise ConversionError(f"Internal error: unknown step kind {kind!r} ({step.layer!r}).")
    if st.mode != _STACK and st.t.shape.rank > 2 and not st.pending_flatten:
        raise ConversionError(f"Cannot convert: the model's output has rank {st.t.shape.rank}; "
                              "expected logits [B, classes].")
    return _to_stack(st, s, batch).t


def build_batched(posterior, batch_size: int = 1, head: bool = True, member_probs: bool = False,
                  layout: Optional[Layout] = None, sparse_layout: str = "dense"):
    """A ``tf.function`` running every member of an ensemble posterior in one graph.

    Args:
        posterior: a :class:`~tflbayes.posterior.EnsemblePosterior` (its model a chain of the
            layers in ``chain.SUPPORTED_LAYERS``).
        batch_size: the static batch dimension ``B`` of the input ``x``.
        head: append the uncertainty head; else return the raw logits.
        member_probs: with the head, also return the per-member probabilities ``[S, B, C]``.
        layout: how members are laid out (benchmarking only; the default is the fastest).
        sparse_layout: ``"dense"`` (every kernel a constant ``[S, ...]``) or ``"shared_mask"``
            (the members' shared sparsity pattern stored once, values per member, densified in
            the graph with SCATTER_ND; for prune-then-sample ensembles). The outputs are the same.

    Returns:
        A ``tf.function`` with ``input_signature=[TensorSpec([B, *input_shape], float32, name="x")]``
        returning ``{"probs" [B, C], "total", "aleatoric", "epistemic" [B](, "member_probs" [S, B, C])}``
        with the head, or ``{"logits": [S, B, C]}`` without.

    Raises:
        ConversionError: an unsupported layer (named, with its class and the supported list),
            a non-chain model, or a softmax output.
        InvalidInputError: an unknown ``sparse_layout``.
    """
    batch_size = check_batch_size(batch_size)
    _check_sparse_layout(sparse_layout)
    members = getattr(posterior, "members", None)
    if members is None:
        raise ConversionError(
            f"Mode 'batched' needs an ensemble posterior (S fixed weight sets); received "
            f"{type(posterior).__name__}. Use mode 'stochastic' for MC dropout / variational posteriors."
        )
    s = len(members)
    steps = plan(posterior.model, members)
    spec = tf.TensorSpec([batch_size, *posterior.input_shape], tf.float32, name="x")

    @tf.function(input_signature=[spec])
    def batched(x):
        logits = batched_logits(x, steps, s, layout, sparse_layout)
        if not head:
            return {"logits": logits}
        return head_from_logits(logits, member_probs=member_probs)

    return batched
