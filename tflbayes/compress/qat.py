"""Quantization-aware fine-tuning (QAT) of a posterior for int8 conversion.

TF-MOT's ``quantize_model`` (Jacob et al. 2018, "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference") wraps every layer in fake-quantization: the forward
pass sees weights and activations rounded to the int8 grid, the backward pass the straight-through
gradient, so a few epochs move the weights to where rounding costs little. Here it is applied to
each ensemble member independently, or to the *deterministic twin* of a stochastic posterior (the
variational mean network ``W = μ``, or the MC-dropout network), for ``epochs`` at a small learning
rate.

**What comes back** is a Posterior of the same kind whose model is the plain architecture
(Dense/Conv2D, no ``QuantizeWrapper``) holding the QAT-fine-tuned *float* weights (variational:
the means; σ unchanged). Every converter path (``batched``/``members``/``stochastic`` graphs, the
uncertainty head, verification) keeps working, and ``tb.convert(..., precision="int8",
representative_data=...)`` quantizes it: weights per channel, activations from calibration.
The QAT model's learned activation ranges are not carried over (the batched graph fuses members
into grouped ops whose ranges differ from a single member's anyway); what QAT contributes is
weights that sit well on the int8 grid. Zero (pruned) kernel entries stay zero.

Example:
    >>> q = tb.compress.quantization_aware(ens, data=(x, y), epochs=1)                      # doctest: +SKIP
    >>> tb.convert(q, "bundle_int8", precision="int8", representative_data=x[:300])          # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from tflbayes._keras import keras
from tflbayes.compress._common import KeepMask, check_data, check_options, copy_model, finetune, record, seed_all
from tflbayes.errors import InvalidInputError

__all__ = ["quantization_aware", "deterministic_twin", "DEFAULTS"]

DEFAULTS = {"epochs": 1, "learning_rate": 1e-4, "batch_size": 64, "seed": 0, "verbose": 0}


def deterministic_twin(model):
    """``model`` with variational layers as their Keras layers (Dense, Conv1D, Conv2D, DepthwiseConv2D;
    kernel = μ) and MC dropout as Dropout.

    Returns:
        ``(twin, to_twin, from_twin)``: the twin model and two functions mapping weight lists
        between ``model.get_weights()`` and ``twin.get_weights()`` order (``from_twin`` needs the
        original weights for what the twin does not hold: the variational ρ).
    """
    from tflbayes.layers import MEAN_FIELD_LAYERS, MCDropout
    from tflbayes.methods.transform import deterministic_layer

    def clone(layer):
        if type(layer) in MEAN_FIELD_LAYERS or type(layer) is MCDropout:
            return deterministic_layer({"class_name": type(layer).__name__, "config": layer.get_config()})
        return type(layer).from_config(layer.get_config())

    twin = keras.models.clone_model(model, clone_function=clone)
    src = {id(v): k for k, v in enumerate(model.weights)}
    dst = {id(v): k for k, v in enumerate(twin.weights)}
    pairs = []  # (position in model weights, position in twin weights)
    for layer in model.layers:
        if not layer.weights:
            continue
        tl = twin.get_layer(layer.name)
        if type(layer) in MEAN_FIELD_LAYERS:
            kernel = tl.depthwise_kernel if hasattr(tl, "depthwise_kernel") else tl.kernel
            pairs.append((src[id(layer.kernel_loc)], dst[id(kernel)]))
            if layer.use_bias:
                pairs.append((src[id(layer.bias)], dst[id(tl.bias)]))
        else:
            pairs += [(src[id(a)], dst[id(b)]) for a, b in zip(layer.weights, tl.weights)]

    def to_twin(ws):
        out = [None] * len(twin.weights)
        for a, b in pairs:
            out[b] = ws[a]
        return out

    def from_twin(tw, original):
        out = [np.array(w, copy=True) for w in original]
        for a, b in pairs:
            out[a] = np.asarray(tw[b], dtype=np.float32)
        return out

    return twin, to_twin, from_twin


def _qat_weights(model, weights, x, y, opts):
    """QAT-fine-tune ``model`` (plain Dense/Conv2D) from ``weights``; its float weights after."""
    import tensorflow_model_optimization as tfmot

    plain = copy_model(model, weights)
    zeros = {layer.name: np.asarray(layer.kernel.numpy() != 0) for layer in plain.layers
             if type(layer) in (keras.layers.Dense, keras.layers.Conv2D) and not np.all(layer.kernel.numpy() != 0)}
    try:
        with tfmot.quantization.keras.quantize_scope():
            q = tfmot.quantization.keras.quantize_model(plain)
    except Exception as e:
        raise InvalidInputError(f"TF-MOT cannot make this model quantization-aware: {e}") from None
    inner, variables = {}, {}
    for layer in q.layers:
        base = getattr(layer, "layer", layer)  # QuantizeWrapper holds the float layer
        inner[base.name] = base
        # the wrapper tracks the float kernel / bias variables (the float layer's attributes
        # are replaced by their fake-quantized tensors while it is called)
        variables[base.name] = {v.name.rsplit("/", 1)[-1].split(":")[0]: v for v in layer.weights}

    def pairs(m):
        return [(variables[name]["kernel"], keep) for name, keep in zeros.items()]

    finetune(q, x, y, epochs=opts["epochs"], batch_size=opts["batch_size"], learning_rate=opts["learning_rate"],
             callbacks=[KeepMask(pairs)] if zeros else (), verbose=opts["verbose"])
    out = copy_model(model, weights)
    for layer in out.layers:
        if not layer.weights:
            continue
        src = inner.get(layer.name)
        if type(layer) in (keras.layers.Dense, keras.layers.Conv2D) and type(src) is type(layer):
            v = variables[layer.name]
            values = [v["kernel"].numpy()] + ([v["bias"].numpy()] if layer.use_bias else [])
        elif src is not None and len(src.get_weights()) == len(layer.weights):
            values = src.get_weights()
        else:
            raise InvalidInputError(
                f"TF-MOT rewrote layer {layer.name!r} ({type(layer).__name__}) during quantization (e.g. folded a "
                "BatchNormalization); quantization_aware supports models whose weight layers it only wraps.")
        layer.set_weights(values)
    return out.get_weights()


def quantization_aware(posterior, data, **options):
    """Quantization-aware fine-tuning of every member (or of a stochastic posterior's mean network).

    Args:
        posterior: an :class:`~tflbayes.posterior.EnsemblePosterior` or a
            :class:`~tflbayes.posterior.StochasticPosterior` (variational / MC dropout).
        data: ``(x, y)`` training data for the fine-tuning.
        **options: ``epochs`` (1), ``learning_rate`` (1e-4), ``batch_size`` (64), ``seed`` (0),
            ``verbose`` (0).

    Returns:
        A Posterior of the same kind with the plain architecture and QAT-fine-tuned float weights,
        ready for ``tb.convert(..., precision="int8", representative_data=...)``.
    """
    from tflbayes.posterior import EnsemblePosterior, StochasticPosterior

    x, y = check_data(posterior, data, "quantization_aware")
    opts = check_options("quantization_aware", options, DEFAULTS)
    entry = {k: opts[k] for k in ("epochs", "learning_rate")}
    if isinstance(posterior, EnsemblePosterior):
        members = []
        for i, ws in enumerate(posterior.members):
            seed_all(None if opts["seed"] is None else opts["seed"] + 1000 * i)
            members.append(_qat_weights(posterior.model, ws, x, y, opts))
        mask = posterior.mask
        return EnsemblePosterior(copy_model(posterior.model, members[0]), members, posterior.method,
                                 record(posterior, entry, "quantization_aware"), posterior.class_names, mask=mask)
    if isinstance(posterior, StochasticPosterior):
        seed_all(opts["seed"])
        original = posterior.model.get_weights()
        twin, to_twin, from_twin = deterministic_twin(posterior.model)
        tw = _qat_weights(twin, to_twin(original), x, y, opts)
        return StochasticPosterior(copy_model(posterior.model, from_twin(tw, original)), posterior.method,
                                   record(posterior, entry, "quantization_aware"), posterior.class_names)
    raise InvalidInputError(
        f"quantization_aware fits ensemble and stochastic posteriors; received a {type(posterior).__name__}.")
