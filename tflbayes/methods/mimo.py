"""MIMO: multi-input multi-output networks (Havasi et al. 2021, "Training independent subnetworks
for robust prediction").

The user's network is rebuilt with S input slots and S heads: its input is widened S times along the
last (channel / feature) axis, so the first weight layer (Dense, Conv1D or Conv2D) sees S inputs
concatenated, and its last Dense layer outputs ``S * C`` logits, reshaped to ``[B, S, C]``. In
training, slot ``s`` gets an independently shuffled batch and head ``s`` is trained on the labels of
slot ``s``: the network learns S subnetworks that share its weights but not their inputs. Options
of the paper:

- ``batch_repetitions`` ``r``: every batch holds each of its examples ``r`` times (each repeat in
  different slot combinations);
- ``input_repetition`` ``rho``: a fraction ``rho`` of the rows puts the same input in every slot
  (the subnetworks then share more features).

At prediction time the same input goes to every slot (:class:`~tflbayes.layers.RepeatChannels`,
inside the model, so also inside the LiteRT graph): one forward pass gives the S heads'
predictions, an ensemble of S at the cost of one (slightly wider first and last layer) network.
The subnetworks need spare capacity: on narrow networks the heads stay close to one network.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from tflbayes._checks import check_positive_int
from tflbayes._keras import keras
from tflbayes.errors import DivergenceError, InvalidInputError
from tflbayes.methods import training
from tflbayes.methods.registry import register_method
from tflbayes.posterior.single_pass import SinglePassPosterior

__all__ = ["to_mimo", "mimo_predictor", "MimoBatches", "WIDENABLE_LAYERS"]

#: The layer types MIMO's first weight layer may have (its input is widened S times).
WIDENABLE_LAYERS = ("Dense", "Conv1D", "Conv2D")
_NO_WEIGHTS_OK = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)


def _entry(cfg, name):
    return next(e for e in cfg["layers"] if e["config"]["name"] == name)


def to_mimo(model, num_samples: int):
    """``(core, predictor)``: the widened multi-head network and the model that feeds it one input.

    ``core`` takes ``[B, ..., S*c]`` (S inputs on the last axis) and outputs logits ``[B, S, C]``;
    ``predictor`` takes ``[B, ..., c]``, repeats it into every slot and runs ``core`` (shared weights).

    Raises:
        InvalidInputError: the model is subclassed, has no input layer, its last layer is not a
            linear Dense, its first weight layer is not Dense/Conv1D/Conv2D, or it cannot be rebuilt wider.
    """
    s = check_positive_int("num_samples", num_samples)
    sequential = isinstance(model, keras.Sequential)
    if not sequential and not getattr(model, "_is_graph_network", False):
        raise InvalidInputError(f"MIMO needs a Sequential or functional model; received a subclassed {type(model).__name__}.")
    if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
        raise InvalidInputError("MIMO needs a model with one input (built with keras.Input) and one output.")
    cfg = copy.deepcopy(model.get_config())
    for e in cfg["layers"]:
        e.pop("build_config", None)
    if sequential:
        inputs = [e for e in cfg["layers"] if e["class_name"] == "InputLayer"]
        out = cfg["layers"][-1]
    else:
        inputs = [_entry(cfg, n[0]) for n in cfg["input_layers"]]
        out = _entry(cfg, cfg["output_layers"][0][0])
    if len(inputs) != 1:
        raise InvalidInputError("MIMO needs the model's input layer (build it with keras.Input(shape)).")
    shape = list(inputs[0]["config"]["batch_input_shape"])
    if shape[-1] is None:
        raise InvalidInputError(f"MIMO widens the input's last axis, which must be known; the input shape is {shape[1:]}.")
    c = int(model.output_shape[-1])
    if str(out["class_name"]).split(">")[-1] != "Dense" or out["config"].get("activation") not in ("linear", None):
        raise InvalidInputError(
            f"MIMO replicates the last layer into S heads: it must be a Dense layer that outputs logits "
            f"(activation=None); found {out['config'].get('name')!r} ({out['class_name']}, "
            f"activation={out['config'].get('activation')!r}).")
    shape[-1] = int(shape[-1]) * s
    inputs[0]["config"]["batch_input_shape"] = shape
    out["config"]["units"] = s * c
    names = {e["config"]["name"] for e in cfg["layers"]}
    head_name = next(n for n in (f"mimo_heads{'' if k == 0 else f'_{k}'}" for k in range(len(names) + 1)) if n not in names)
    head = keras.layers.serialize(keras.layers.Reshape((s, c), name=head_name))
    if sequential:
        cfg["layers"].append(head)
    else:
        head["name"] = head_name
        head["inbound_nodes"] = [[[out["config"]["name"], 0, 0, {}]]]
        cfg["layers"].append(head)
        cfg["output_layers"] = [[head_name, 0, 0]]
    try:
        core = (keras.Sequential if sequential else keras.Model).from_config(cfg)
    except Exception as e:  # a layer before the first weight layer fixes the input width
        raise InvalidInputError(
            f"MIMO cannot widen this model's input to {shape[1:]} (S={s} inputs on the last axis): {str(e)[:300]}") from None
    first = next((l for l in core.layers if l.weights and not isinstance(l, _NO_WEIGHTS_OK)), None)
    if first is None or type(first).__name__ not in WIDENABLE_LAYERS:
        raise InvalidInputError(
            f"MIMO widens the first weight layer to take S inputs; it must be one of {', '.join(WIDENABLE_LAYERS)}, "
            f"found {getattr(first, 'name', None)!r} ({type(first).__name__}).")
    return core, mimo_predictor(core, s, tuple(model.input_shape[1:]), f"{model.name}_mimo")


def mimo_predictor(core, num_samples: int, input_shape, name: str = "mimo"):
    """``x -> core(repeat x into every slot)``: the prediction model (shares ``core``'s weights)."""
    from tflbayes.layers.single_pass import RepeatChannels

    inp = keras.Input(tuple(input_shape), name="x")
    return keras.Model(inp, core(RepeatChannels(int(num_samples), name="mimo_inputs")(inp)), name=name)


class MimoBatches(keras.utils.Sequence):
    """Training batches of a MIMO network: S independently shuffled slots (module docstring).

    Yields ``(x [r*B, ..., S*c], y [r*B, S])``; reshuffles every epoch.
    """

    def __init__(self, x, y, num_samples: int, batch_size: int, batch_repetitions: int = 1,
                 input_repetition: float = 0.0, seed=None):
        super().__init__()
        self.x, self.y, self.s, self.b = x, y, int(num_samples), int(batch_size)
        self.r, self.rho = int(batch_repetitions), float(input_repetition)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self):
        return math.ceil(len(self.x) / self.b)

    def __getitem__(self, i):
        idx = np.tile(self.order[i * self.b:(i + 1) * self.b], self.r)
        heads = [idx[self.rng.permutation(len(idx))] for _ in range(self.s)]
        if self.rho > 0:
            same = self.rng.random(len(idx)) < self.rho
            for h in heads[1:]:
                h[same] = heads[0][same]
        return (np.concatenate([self.x[h] for h in heads], axis=-1),
                np.stack([self.y[h] for h in heads], axis=1))

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))


@register_method(
    "mimo",
    defaults={"num_samples": 3, "batch_repetitions": 1, "input_repetition": 0.0},
    summary="one network with S input slots and S heads, trained on independent inputs (Havasi et al. 2021)",
)
def train_mimo(build_model, x, y, cfg, num_samples=3, batch_repetitions=1, input_repetition=0.0):
    """Train a MIMO network (module docstring).

    Options:
        num_samples: S, input slots and heads (default 3).
        batch_repetitions: r, each example appears r times per batch (default 1).
        input_repetition: rho in [0, 1), the fraction of rows with the same input in every slot (default 0).
    """
    s = check_positive_int("num_samples", num_samples)
    r = check_positive_int("batch_repetitions", batch_repetitions)
    if isinstance(input_repetition, bool) or not isinstance(input_repetition, (int, float)) or not 0 <= input_repetition < 1:
        raise InvalidInputError(
            "Invalid value received for option `input_repetition`. Expected a float in [0, 1). "
            f"Received: input_repetition={input_repetition!r}")
    if isinstance(cfg.epochs, bool) or not isinstance(cfg.epochs, int):
        raise InvalidInputError(f"method 'mimo' trains for a fixed number of epochs; received epochs={cfg.epochs!r}.")
    training.set_seed(cfg.seed)
    with training.scope(cfg.strategy):
        core, predictor = to_mimo(training.build(build_model, x.shape[1:], y), s)
        training.compile_classifier(core, cfg.learning_rate)
    val = None
    if cfg.validation_data is not None:
        xv, yv = cfg.validation_data
        val = (np.concatenate([xv] * s, axis=-1), np.repeat(yv[:, None], s, axis=1))
    nan = training.StopOnNaN()
    core.fit(MimoBatches(x, y, s, cfg.batch_size, r, input_repetition, cfg.seed), epochs=cfg.epochs,
             validation_data=val, callbacks=[*cfg.callbacks, nan], verbose=cfg.verbose)
    if hasattr(nan, "bad_batch"):
        raise DivergenceError(training.diverged_message("MIMO network", nan))
    # the posterior holds an uncompiled copy: a folder stores architectures, not training configs
    fresh = keras.models.clone_model(core)
    fresh.set_weights(core.get_weights())
    predictor = mimo_predictor(fresh, s, x.shape[1:], predictor.name)
    options = {"num_samples": s, "batch_repetitions": r, "input_repetition": float(input_repetition)}
    return SinglePassPosterior(predictor, "mimo", options, cfg.class_names)
