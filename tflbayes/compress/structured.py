"""Structured pruning: group-lasso training, then removal of whole units / channels (survey §3.2).

The group ℓ1/ℓ2 penalty ``R(W) = λ Σ_k ||W_k||₂`` over the groups ``W_k`` = all incoming weights of
one unit (a Dense column, a Conv2D output channel's filter) drives whole groups to zero together
(Yuan & Lin 2006; Wen et al. 2016, "Learning Structured Sparsity in Deep Neural Networks"). After
``epochs`` of training with it, the units whose group norm is in the bottom ``sparsity`` fraction of
their layer are removed (Li et al. 2017, "Pruning Filters for Efficient ConvNets"): the kernel
loses those output columns, the bias and any BatchNormalization those entries, and the next weight
layer the matching input rows (through pooling, Flatten and GlobalAveragePooling2D), then
``finetune_epochs`` of training without the penalty recover the accuracy. The result is a
physically smaller dense model (fewer units / channels): it needs no sparse kernels on the device.

For an ensemble every member is pruned on its own ranking; the members keep the same *number* of
units per layer (their own best ones, permuted to the front — unit order does not change a
network's function), so they still share one, smaller architecture. The logit layer is never
pruned.

Example:
    >>> small = tb.compress.prune(ens, 0.5, method="structured", data=(x, y))   # doctest: +SKIP
    >>> small.model.count_params() < ens.model.count_params()                     # doctest: +SKIP
    True
"""
from __future__ import annotations

import numpy as np

from tflbayes._keras import keras, register, tf
from tflbayes.compress._common import check_options, copy_model, finetune, record, seed_all
from tflbayes.compress._targets import num_pruned
from tflbayes.errors import InvalidInputError

__all__ = ["GroupLasso", "prune_structured", "unit_norms", "DEFAULTS"]

DEFAULTS = {"strength": 1e-3, "epochs": 5, "finetune_epochs": 2, "learning_rate": 1e-3, "batch_size": 64,
            "seed": 0, "verbose": 0}

L = keras.layers
_PASS = (L.MaxPooling2D, L.AveragePooling2D, L.Dropout, L.SpatialDropout2D, L.GaussianDropout, L.GaussianNoise,
         L.AlphaDropout, L.Activation, L.ReLU, L.LeakyReLU, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)


@register
class GroupLasso(keras.regularizers.Regularizer):
    """Group ℓ1/ℓ2 penalty over output units: ``strength * Σ_units ||incoming weights||₂``.

    A unit's group is every kernel entry feeding it: all axes but the last (a Dense column, a
    Conv2D filter ``[kh, kw, cin]``). ``eps`` keeps the gradient finite at a zero group.

    Args:
        strength: λ > 0.
        eps: added under the square root.
    """

    def __init__(self, strength: float = 1e-3, eps: float = 1e-8):
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not np.isfinite(strength) \
                or strength <= 0:
            raise InvalidInputError(f"Invalid value received for argument `strength`. Expected a float > 0. "
                             f"Received: strength={strength!r}")
        self.strength = float(strength)
        self.eps = float(eps)

    def __call__(self, w):
        axes = list(range(len(w.shape) - 1))
        return self.strength * tf.reduce_sum(tf.sqrt(tf.reduce_sum(tf.square(w), axis=axes) + self.eps))

    def get_config(self):
        return {"strength": self.strength, "eps": self.eps}


def unit_norms(kernel: np.ndarray) -> np.ndarray:
    """``||W[..., j]||₂`` for every output unit ``j``."""
    k = np.asarray(kernel, np.float64)
    return np.sqrt((k.reshape(-1, k.shape[-1]) ** 2).sum(axis=0))


def _chain(model):
    from tflbayes.converters.graphs.walk import chain_layers

    return chain_layers(model)


def _hidden_weight_layers(layers) -> list:
    weight = [layer for layer in layers if type(layer) in (L.Dense, L.Conv2D)]
    for layer in layers:
        if type(layer) is L.Conv2D and int(layer.groups) != 1:
            raise InvalidInputError(f"Structured pruning does not support grouped convolutions ({layer.name!r}).")
        if layer.weights and type(layer) not in (L.Dense, L.Conv2D, L.BatchNormalization):
            raise InvalidInputError(
                f"Structured pruning cannot follow units through layer {layer.name!r} ({type(layer).__name__}); "
                "supported: Dense, Conv2D, BatchNormalization, pooling, Flatten, dropout and activations.")
    return [layer.name for layer in weight[:-1]]  # never the logit layer


def _regularized(model, hidden, strength):
    def clone(layer):
        cfg = layer.get_config()
        if layer.name in hidden:
            cfg["kernel_regularizer"] = keras.regularizers.serialize(GroupLasso(strength))
        return type(layer).from_config(cfg)

    m = keras.models.clone_model(model, clone_function=clone)
    m.set_weights(model.get_weights())
    return m


def _smaller(model, widths: dict):
    """The architecture with ``widths[name]`` units / filters in the named layers."""
    cfg = model.get_config()
    for entry in cfg["layers"]:
        name = entry["config"].get("name")
        if name in widths:
            key = "units" if entry["class_name"] == "Dense" else "filters"
            entry["config"][key] = int(widths[name])
    return type(model).from_config(cfg) if isinstance(model, keras.Sequential) else keras.Model.from_config(cfg)


def _slice_weights(model, weights, keep: dict, small):
    """Carry ``weights`` of ``model`` into ``small`` keeping the ``keep[name]`` output units."""
    index = {id(v): k for k, v in enumerate(model.weights)}
    get = {id(v): np.asarray(weights[index[id(v)]]) for v in model.weights}
    new = {}
    keep_in = None  # indices of the kept channels of the current activation (None: all)
    for layer in _chain(model):
        t = type(layer)
        if t in (L.Dense, L.Conv2D):
            k = get[id(layer.kernel)]
            if keep_in is not None:
                k = np.take(k, keep_in, axis=-2)
            b = get[id(layer.bias)] if layer.use_bias else None
            out = keep.get(layer.name)
            if out is not None:
                k = k[..., out]
                b = None if b is None else b[out]
            new[layer.name] = [k] + ([] if b is None else [b])
            keep_in = out
        elif t is L.BatchNormalization:
            ws = [get[id(v)] for v in layer.weights]
            new[layer.name] = ws if keep_in is None else [w[keep_in] for w in ws]
        elif t is L.Flatten:
            if keep_in is not None:
                shape = layer.input_shape[1:]
                c, positions = int(shape[-1]), int(np.prod(shape[:-1])) if len(shape) > 1 else 1
                keep_in = (np.arange(positions)[:, None] * c + np.asarray(keep_in)[None, :]).reshape(-1)
        elif t in _PASS:
            continue
        elif keep_in is not None:
            raise InvalidInputError(f"Structured pruning cannot follow units through layer {layer.name!r} "
                                    f"({t.__name__}).")
    small_index = {id(v): k for k, v in enumerate(small.weights)}
    out = [None] * len(small.weights)
    for name, ws in new.items():
        for var, w in zip(small.get_layer(name).weights, ws):
            out[small_index[id(var)]] = np.ascontiguousarray(w, dtype=np.float32)
    missing = [v.name for v, w in zip(small.weights, out) if w is None]
    if missing:  # pragma: no cover - every weight layer is handled above
        raise InvalidInputError(f"Structured pruning could not carry weights {missing}.")
    return out


def prune_structured(posterior, sparsity: float, x, y, **options):
    """Group-lasso training + removal of the weakest ``sparsity`` fraction of units per hidden layer.

    Options (defaults in ``DEFAULTS``): strength (λ), epochs (with the penalty), finetune_epochs
    (without, after the removal), learning_rate, batch_size, seed, verbose.
    """
    from tflbayes.posterior import EnsemblePosterior

    opts = check_options("structured", options, DEFAULTS)
    strength = opts["strength"]
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not strength > 0:
        raise InvalidInputError(f"Invalid value received for argument `strength`. Expected a float > 0. "
                                f"Received: strength={strength!r}")
    model = posterior.model
    layers = _chain(model)
    hidden = _hidden_weight_layers(layers)
    units = {layer.name: int(layer.kernel.shape[-1]) for layer in layers if layer.name in hidden}
    widths = {n: max(1, u - num_pruned(u, sparsity)) for n, u in units.items()}
    small = _smaller(model, widths)
    members = []
    for i, ws in enumerate(posterior.members):
        seed_all(None if opts["seed"] is None else opts["seed"] + 1000 * i)
        reg = _regularized(copy_model(model, ws), hidden, strength)
        finetune(reg, x, y, epochs=opts["epochs"], batch_size=opts["batch_size"],
                 learning_rate=opts["learning_rate"], verbose=opts["verbose"])
        trained = reg.get_weights()
        index = {id(v): k for k, v in enumerate(reg.weights)}
        keep = {}
        for layer in reg.layers:
            if layer.name in hidden:
                norms = unit_norms(trained[index[id(layer.kernel)]])
                keep[layer.name] = np.sort(np.argsort(-norms, kind="stable")[: widths[layer.name]])
        sm = copy_model(small, _slice_weights(model, trained, keep, small))
        finetune(sm, x, y, epochs=opts["finetune_epochs"], batch_size=opts["batch_size"],
                 learning_rate=opts["learning_rate"], verbose=opts["verbose"])
        members.append(sm.get_weights())
    entry = {"method": "structured", "sparsity": float(sparsity), "strength": float(strength),
             "units": {n: [units[n], widths[n]] for n in hidden},
             "params": [int(model.count_params()), int(small.count_params())],
             **{k: opts[k] for k in ("epochs", "finetune_epochs", "learning_rate")}}
    return EnsemblePosterior(copy_model(small, members[0]), members, posterior.method, record(posterior, entry),
                             posterior.class_names)
