"""BatchEnsemble (Wen, Tran & Ba 2020): S members that share every weight but rank-1 factors.

The user's network is rebuilt with its Dense and Conv2D layers replaced by
:class:`~tflbayes.layers.DenseBatchEnsemble` / :class:`~tflbayes.layers.Conv2DBatchEnsemble`
(``W_s = W ⊙ r_s s_sᵀ``; layer docstrings), and wrapped between
:class:`~tflbayes.layers.TileMembers` (the batch repeated S times, member-major) and
:class:`~tflbayes.layers.UntileMembers` (``[S*B, C] -> [B, S, C]``). Training tiles the batch the
same way, so every member sees every example (the paper's training); the loss is the members'
mean cross-entropy. Other layers (pooling, normalisation, other weight layers) stay shared.
One forward pass runs all members, vectorised in one graph.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np

from tflbayes._checks import check_positive_int
from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError
from tflbayes.methods import training
from tflbayes.methods.registry import register_method
from tflbayes.posterior.single_pass import SinglePassPosterior

__all__ = ["to_batch_ensemble"]


def _replacement(entry, s: int):
    from tflbayes.layers.batch_ensemble import Conv2DBatchEnsemble, DenseBatchEnsemble

    cls, c = str(entry["class_name"]).split(">")[-1], entry["config"]
    common = {"name": c["name"], "num_members": s, "activation": c.get("activation"), "use_bias": c.get("use_bias", True),
              "kernel_initializer": c.get("kernel_initializer", "glorot_uniform"),
              "kernel_regularizer": c.get("kernel_regularizer")}
    if cls == "Dense":
        return DenseBatchEnsemble(int(c["units"]), **common)
    if cls == "Conv2D":
        if tuple(c.get("dilation_rate", (1, 1))) != (1, 1) or c.get("groups", 1) != 1 or \
                c.get("data_format", "channels_last") != "channels_last":
            raise InvalidInputError(
                f"BatchEnsemble replaces Conv2D layer {c['name']!r}, which must be channels_last with no dilation "
                "and groups=1.")
        return Conv2DBatchEnsemble(int(c["filters"]), tuple(c["kernel_size"]), strides=tuple(c.get("strides", (1, 1))),
                                   padding=c.get("padding", "valid"), **common)
    return None


def to_batch_ensemble(model, num_samples: int):
    """The BatchEnsemble twin of ``model``: ``x [B, ...] -> logits [B, S, C]`` (module docstring).

    Raises:
        InvalidInputError: subclassed model, or its last layer is not a linear Dense.
    """
    from tflbayes.layers.single_pass import TileMembers, UntileMembers

    s = check_positive_int("num_samples", num_samples)
    sequential = isinstance(model, keras.Sequential)
    if not sequential and not getattr(model, "_is_graph_network", False):
        raise InvalidInputError(f"BatchEnsemble needs a Sequential or functional model; received a subclassed "
                                f"{type(model).__name__}.")
    last = model.layers[-1]
    if type(last) is not keras.layers.Dense or keras.activations.serialize(last.activation) != "linear":
        raise InvalidInputError(
            f"BatchEnsemble needs a model whose last layer is a Dense that outputs logits; found {last.name!r} "
            f"({type(last).__name__}).")
    cfg = copy.deepcopy(model.get_config())
    replaced = 0
    for i, e in enumerate(cfg["layers"]):
        e.pop("build_config", None)
        new = _replacement(e, s)
        if new is not None:
            entry = keras.layers.serialize(new)
            for key in ("name", "inbound_nodes"):
                if key in e:
                    entry[key] = e[key]
            cfg["layers"][i] = entry
            replaced += 1
    core = (keras.Sequential if sequential else keras.Model).from_config(cfg)
    inp = keras.Input(tuple(model.input_shape[1:]), name="x")
    out = UntileMembers(s, name="be_members")(core(TileMembers(s, name="be_tile")(inp)))
    return keras.Model(inp, out, name=f"{model.name}_batch_ensemble")


@register_method(
    "batch_ensemble",
    defaults={"num_samples": 4},
    summary="shared weights times per-member rank-1 factors, S members vectorised in one pass (Wen et al. 2020)",
)
def train_batch_ensemble(build_model, x, y, cfg, num_samples=4):
    """Train a BatchEnsemble (module docstring).

    Options:
        num_samples: S, the members (default 4).
    """
    s = check_positive_int("num_samples", num_samples)
    training.set_seed(cfg.seed)
    with training.scope(cfg.strategy):
        model = to_batch_ensemble(training.build(build_model, x.shape[1:], y), s)
        training.compile_classifier(model, cfg.learning_rate)
    run_cfg = cfg
    if cfg.validation_data is not None:
        xv, yv = cfg.validation_data
        run_cfg = dataclasses.replace(cfg, validation_data=(xv, np.repeat(yv[:, None], s, axis=1)))
    training.train(model, x, np.repeat(y[:, None], s, axis=1), run_cfg, what="BatchEnsemble")
    return SinglePassPosterior(model, "batch_ensemble", {"num_samples": s}, cfg.class_names)
