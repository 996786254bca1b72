"""Recurrent layers (GRU, LSTM, SimpleRNN, Bidirectional) in LiteRT graphs: unrolled when they can be.

Traced as they are, a Keras GRU / LSTM becomes a ``WHILE`` loop. Two things then go wrong in
the TFLite converter of TF 2.21: full-integer quantization of the loop **crashes the process**
(SIGSEGV inside the converter, taking the user's session and trained posterior with it), and
dynamic-range / float16 quantization leave every weight inside the loop in float32.

With a static sequence length (every bundle has a static input shape) the recurrence can be
unrolled instead: :func:`unroll_recurrent` clones the model with ``unroll=True`` on every
recurrent layer (the same weights, the same maths: a loop written out step by step), which
converts to plain FULLY_CONNECTED / LOGISTIC / TANH / MUL ops that quantize at every precision.
Sequences longer than :data:`MAX_UNROLL` steps stay loops (the graph would grow with every step);
:func:`check_int8_recurrent` refuses those at int8 *before* the converter runs, with a
``ConversionError`` that names the user's layer.
"""
from __future__ import annotations

from tflbayes._keras import keras
from tflbayes.converters.graphs.walk import describe, find_layers
from tflbayes.errors import ConversionError

__all__ = ["MAX_UNROLL", "recurrent_layers", "unrollable", "unroll_recurrent", "check_int8_recurrent"]

#: Longest sequence unrolled (steps); a longer one stays a WHILE loop.
MAX_UNROLL = 256

L = keras.layers
_RNN = (L.RNN, L.Bidirectional)
_UNROLLABLE = (L.GRU, L.LSTM, L.SimpleRNN)


def _is_rnn(layer) -> bool:
    return isinstance(layer, _RNN)


def recurrent_layers(model_or_layers) -> list:
    """The recurrent layers of a model (nested models searched) or of a list of layers."""
    layers = model_or_layers if isinstance(model_or_layers, (list, tuple)) else [model_or_layers]
    out = []
    for layer in layers:
        if _is_rnn(layer):
            out.append(layer)
        elif isinstance(layer, keras.Model):
            out.extend(find_layers(layer, _is_rnn))
    return out


def _steps(layer):
    try:
        shape = layer.input_shape
    except (AttributeError, RuntimeError):
        return None
    if isinstance(shape, list):
        shape = shape[0]
    return shape[1] if shape is not None and len(shape) >= 2 else None


def unrollable(layer) -> bool:
    """Whether ``layer`` is a GRU / LSTM / SimpleRNN (or a Bidirectional of one) with a static
    sequence length of at most :data:`MAX_UNROLL` steps, and not stateful."""
    inner = layer.forward_layer if isinstance(layer, L.Bidirectional) else layer
    if type(inner) not in _UNROLLABLE or getattr(inner, "stateful", False):
        return False
    steps = _steps(layer)
    return steps is not None and steps <= MAX_UNROLL


def _unrolled_config(cfg: dict) -> dict:
    cfg = dict(cfg)
    if "layer" in cfg and isinstance(cfg["layer"], dict):  # Bidirectional: the wrapped layers
        for key in ("layer", "backward_layer"):
            if isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], "config": {**cfg[key]["config"], "unroll": True}}
    else:
        cfg["unroll"] = True
    return cfg


def unroll_recurrent(model):
    """``model`` with every unrollable recurrent layer unrolled (a clone holding the same weights),
    or ``model`` itself when there is nothing to unroll."""
    if not any(unrollable(layer) and not getattr(layer, "unroll", False) for layer in recurrent_layers(model)):
        return model

    def clone(layer):
        if unrollable(layer):
            return type(layer).from_config(_unrolled_config(layer.get_config()))
        return layer.__class__.from_config(layer.get_config())

    m = keras.models.clone_model(model, clone_function=clone)
    m.set_weights(model.get_weights())
    return m


def check_int8_recurrent(layers, precision: str, unrolls: bool = True) -> None:
    """Refuse a full-integer graph holding a recurrent layer that stays a loop (the converter
    crashes on it), naming the layer; unrollable layers pass when the graph builder unrolls
    (``unrolls=True``: it calls :func:`unroll_recurrent`)."""
    if precision not in ("int8", "edgetpu"):
        return
    for layer in recurrent_layers(list(layers)):
        if not (unrolls and unrollable(layer)):
            steps = _steps(layer)
            why = (f"its sequence has {steps} steps (> {MAX_UNROLL}, not unrolled)" if steps
                   else "it cannot be unrolled (a stateful, custom-cell or wrapped recurrent layer)")
            raise ConversionError(
                f"Cannot quantize {describe(layer)} to full integer (precision={precision!r}): {why}, and the "
                "TFLite converter crashes the process on an int8 recurrent loop. Use precision='float32' "
                "(LiteRT quantizes no weight inside a recurrent loop at 'dynamic' or 'float16' either), or a "
                f"sequence of at most {MAX_UNROLL} steps.")
