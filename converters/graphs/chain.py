"""Read a deterministic Keras chain into plain per-layer steps with the members' weights stacked.

Used by the packed batched layout (:mod:`~tflbayes.converters.graphs.batched`). The API:

- :func:`~tflbayes.converters.graphs.walk.chain_layers` (re-exported here) ``(model) -> [layer, ...]``:
  the layers in call order; a non-chain graph raises ``ConversionError``.
- :func:`plan` ``(model, weight_sets) -> [Step, ...]``: every supported layer as a :class:`Step`
  whose arrays are stacked over the ``S`` weight sets (leading axis ``S``); identity layers
  (Dropout at inference) are dropped and BatchNormalization is folded into the Dense/Conv2D before
  it (else kept as a per-channel ``affine`` step). Unsupported layers raise ``ConversionError``.
- :func:`apply_activation` ``(x, Activation) -> tensor``: the activation as LiteRT-builtin TF ops.
- :func:`check_batch_size` ``(batch_size) -> int``: the builders' shared argument check.

Example:
    >>> steps = plan(post.model, post.members)          # doctest: +SKIP
    >>> [s.kind for s in steps]                          # doctest: +SKIP
    ['conv2d', 'pool', 'conv2d', 'pool', 'flatten', 'dense', 'dense']
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from tflbayes._keras import keras, tf
from tflbayes.converters.graphs.walk import chain_layers, describe as _describe
from tflbayes.errors import ConversionError, InvalidInputError

__all__ = [
    "SUPPORTED_LAYERS",
    "SUPPORTED_ACTIVATIONS",
    "Activation",
    "Step",
    "chain_layers",
    "plan",
    "apply_activation",
    "check_batch_size",
]

L = keras.layers

# Exact classes (subclasses such as MCDropout or variational layers change the maths: refused).
_IDENTITY = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.GaussianDropout, L.GaussianNoise,
             L.AlphaDropout)
SUPPORTED_LAYERS = (
    "InputLayer", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
    "Flatten", "Activation", "ReLU", "LeakyReLU", "BatchNormalization",
    *(c.__name__ for c in _IDENTITY),
)
SUPPORTED_ACTIVATIONS = ("linear", "relu", "relu6", "tanh", "sigmoid", "elu", "swish", "silu")


@dataclass(frozen=True)
class Activation:
    """An elementwise activation: ``name`` in SUPPORTED_ACTIVATIONS, or ``"relu"`` with Keras
    ``ReLU`` layer options (``max_value`` clips, ``negative_slope`` leaks)."""

    name: str = "linear"
    max_value: Optional[float] = None
    negative_slope: float = 0.0

    @property
    def is_linear(self) -> bool:
        return self.name == "linear"


LINEAR = Activation()


@dataclass
class Step:
    """One layer of the chain, weights stacked over the S weight sets.

    ``kind`` and its fields:

    - ``"dense"``: ``kernel [S, K, D]``, ``bias [S, D]``, ``activation``.
    - ``"conv2d"``: ``kernel [S, kh, kw, Cin/groups, Cout]``, ``bias [S, Cout]``, config
      ``strides (sh, sw)``, ``padding "SAME"|"VALID"``, ``dilations (dh, dw)``, ``groups``;
      ``activation``.
    - ``"pool"``: config ``op "max"|"avg"``, ``pool_size``, ``strides``, ``padding``.
    - ``"global_avg_pool"``: config ``keepdims``.
    - ``"flatten"``: Keras's row-major (H, W, C) order.
    - ``"activation"``: ``activation``.
    - ``"affine"``: ``scale [S, C]``, ``shift [S, C]`` on the last axis (an unfolded BatchNorm).

    ``layer`` names the Keras layer it came from (for error messages).
    """

    kind: str
    layer: str
    params: dict = field(default_factory=dict)  # name -> np.ndarray [S, ...] float32
    config: dict = field(default_factory=dict)
    activation: Activation = LINEAR


def check_batch_size(batch_size) -> int:
    """``batch_size`` as an int, or ``InvalidInputError`` unless it is a positive integer."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidInputError(
            "Invalid value received for argument `batch_size`. Expected a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    return int(batch_size)


def _unsupported(layer, why: str = "") -> ConversionError:
    why = f" {why}" if why else ""
    return ConversionError(
        f"Cannot convert {_describe(layer)}:{why or ' this layer type is not supported'}. "
        f"Supported layers: {', '.join(SUPPORTED_LAYERS)}; activations: {', '.join(SUPPORTED_ACTIVATIONS)}."
    )


# -- activations ---------------------------------------------------------------------------------
def _activation_of(layer, fn) -> Activation:
    if type(fn) is L.ReLU:  # a layer instance used as the activation
        return _relu_layer(fn)
    if type(fn) is L.LeakyReLU:
        return Activation("relu", negative_slope=float(fn.alpha))
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # a lambda or a custom function
        name = getattr(fn, "__name__", repr(fn))
    if isinstance(name, dict):  # a custom or configured activation
        name = name.get("class_name", repr(fn))
    if name in ("softmax", "log_softmax"):
        raise ConversionError(
            f"Cannot convert {_describe(layer)}: its activation is {name!r}. The model must output "
            "logits (the uncertainty head applies the softmax); remove the softmax from the model."
        )
    if name not in SUPPORTED_ACTIVATIONS:
        raise _unsupported(layer, f" activation {name!r} is not supported")
    return Activation(name)


def _relu_layer(layer) -> Activation:
    if float(layer.threshold) != 0.0:
        raise _unsupported(layer, " ReLU with a non-zero threshold is not supported")
    mv = None if layer.max_value is None else float(layer.max_value)
    slope = float(layer.negative_slope)
    if mv == 6.0 and slope == 0.0:
        return Activation("relu6")
    return Activation("relu", max_value=mv, negative_slope=slope)


def apply_activation(x, act: Activation):
    """``act`` applied to ``x`` with ops that LiteRT runs as builtins (RELU, RELU6, TANH, LOGISTIC, ...)."""
    name = act.name
    if name == "linear":
        return x
    if name == "relu":
        y = tf.nn.leaky_relu(x, act.negative_slope) if act.negative_slope else tf.nn.relu(x)
        return y if act.max_value is None else tf.minimum(y, act.max_value)
    if name == "relu6":
        return tf.nn.relu6(x)
    if name == "tanh":
        return tf.tanh(x)
    if name == "sigmoid":
        return tf.sigmoid(x)
    if name == "elu":
        return tf.nn.elu(x)
    if name in ("swish", "silu"):
        return x * tf.sigmoid(x)
    raise ConversionError(f"Unknown activation {name!r}. Supported: {', '.join(SUPPORTED_ACTIVATIONS)}.")


# -- weights -------------------------------------------------------------------------------------
def _stack(index, weight_sets, var, layer) -> np.ndarray:
    """The arrays of variable ``var`` from every weight set, stacked: ``[S, *var.shape]``."""
    k = index.get(id(var))
    if k is None:
        raise ConversionError(f"Cannot find the weight {var.name!r} of {_describe(layer)} in the model.")
    return np.stack([np.asarray(ws[k], dtype=np.float32) for ws in weight_sets])


def _channels_last(layer) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _unsupported(layer, " only data_format='channels_last' is supported")


def _padding(layer) -> str:
    p = str(layer.padding).upper()
    if p not in ("SAME", "VALID"):
        raise _unsupported(layer, f" padding {layer.padding!r} is not supported")
    return p


def _step(index, weight_sets, layer, s: int) -> Optional[Step]:
    t = type(layer)
    get = lambda var: _stack(index, weight_sets, var, layer)  # noqa: E731
    zeros = lambda n: np.zeros((s, n), np.float32)  # noqa: E731
    if t in _IDENTITY:
        return None
    if t is L.Dense:
        if len(layer.input_shape) != 2:
            raise _unsupported(layer, f" Dense on an input of rank {len(layer.input_shape)} (expected [B, features];"
                                      " add a Flatten before it)")
        kernel = get(layer.kernel)
        bias = get(layer.bias) if layer.use_bias else zeros(kernel.shape[-1])
        return Step("dense", layer.name, {"kernel": kernel, "bias": bias},
                    activation=_activation_of(layer, layer.activation))
    if t is L.Conv2D:
        _channels_last(layer)
        kernel = get(layer.kernel)
        bias = get(layer.bias) if layer.use_bias else zeros(kernel.shape[-1])
        return Step("conv2d", layer.name, {"kernel": kernel, "bias": bias},
                    {"strides": tuple(layer.strides), "padding": _padding(layer),
                     "dilations": tuple(layer.dilation_rate), "groups": int(layer.groups)},
                    _activation_of(layer, layer.activation))
    if t in (L.MaxPooling2D, L.AveragePooling2D):
        _channels_last(layer)
        return Step("pool", layer.name, config={
            "op": "max" if t is L.MaxPooling2D else "avg", "pool_size": tuple(layer.pool_size),
            "strides": tuple(layer.strides), "padding": _padding(layer)})
    if t is L.GlobalAveragePooling2D:
        _channels_last(layer)
        return Step("global_avg_pool", layer.name, config={"keepdims": bool(layer.keepdims)})
    if t is L.Flatten:
        _channels_last(layer)
        return Step("flatten", layer.name)
    if t is L.Activation:
        return Step("activation", layer.name, activation=_activation_of(layer, layer.activation))
    if t is L.ReLU:
        return Step("activation", layer.name, activation=_relu_layer(layer))
    if t is L.LeakyReLU:
        return Step("activation", layer.name, activation=Activation("relu", negative_slope=float(layer.alpha)))
    if t is L.BatchNormalization:
        rank = len(layer.input_shape)
        axes = [a % rank for a in np.atleast_1d(layer.axis)]
        if axes != [rank - 1]:
            raise _unsupported(layer, f" BatchNormalization over axis {layer.axis} (only the last axis)")
        c = int(layer.input_shape[-1])
        var = get(layer.moving_variance)
        mean = get(layer.moving_mean)
        gamma = get(layer.gamma) if layer.scale else np.ones((s, c), np.float32)
        beta = get(layer.beta) if layer.center else zeros(c)
        scale = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + layer.epsilon))
        shift = beta - mean * scale
        return Step("affine", layer.name, {"scale": scale.astype(np.float32), "shift": shift.astype(np.float32)})
    if isinstance(layer, L.Dropout):  # a subclass, e.g. MCDropout: samples at prediction time
        raise _unsupported(layer, " it samples at prediction time (MC dropout), but an ensemble graph is "
                                  "deterministic; convert it in mode 'stochastic'")
    raise _unsupported(layer)


def _fold(steps: list) -> list:
    """Fold each ``affine`` step into a directly preceding linear Dense/Conv2D (exact algebra)."""
    out = []
    for st in steps:
        prev = out[-1] if out else None
        if (st.kind == "affine" and prev is not None and prev.kind in ("dense", "conv2d")
                and prev.activation.is_linear):
            scale, shift = st.params["scale"], st.params["shift"]
            k = prev.params["kernel"]
            prev.params["kernel"] = (k * scale.reshape(scale.shape[0], *([1] * (k.ndim - 2)), -1)).astype(np.float32)
            prev.params["bias"] = (prev.params["bias"] * scale + shift).astype(np.float32)
            continue
        if st.kind == "activation" and prev is not None and prev.kind in ("dense", "conv2d", "affine") \
                and prev.activation.is_linear:
            prev.activation = st.activation  # fuse into the layer (LiteRT fuses it into the op)
            continue
        if st.kind == "activation" and st.activation.is_linear:
            continue
        out.append(st)
    return out


def plan(model, weight_sets: Sequence[Sequence[np.ndarray]]) -> list:
    """The model as a list of :class:`Step`, each holding the ``S = len(weight_sets)`` members' arrays.

    Args:
        model: a built Keras Sequential model or single-path functional model.
        weight_sets: S weight lists, each in ``model.get_weights()`` order.

    Raises:
        ConversionError: a layer is not supported (the message names it, its class, and the
            supported ones), the graph is not a chain, or the model ends in softmax.
    """
    s = len(weight_sets)
    if s < 1:
        raise ConversionError("Cannot convert an ensemble with no members.")
    index = {id(v): k for k, v in enumerate(model.weights)}  # variable -> position in get_weights()
    steps = [st for layer in chain_layers(model) if (st := _step(index, weight_sets, layer, s)) is not None]
    return _fold(steps)
