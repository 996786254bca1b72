"""Student architectures: the teacher's own (made deterministic), wider or narrower, with extra heads.

Everything here rewrites a Sequential or functional Keras config and rebuilds it with fresh
weights, the way :mod:`tflbayes.methods.transform` makes stochastic twins:

- :func:`default_student`: the teacher's architecture with MCDropout back to ``Dropout`` and
  variational layers back to ``Dense`` / ``Conv2D`` (same names, units, kernels, activations).
- :func:`widen`: every hidden Dense/Conv2D layer's units/filters times a width multiplier.
- :func:`with_extra_outputs`: the output Dense layer with ``extra`` more units (GPED heads).
- :func:`check_student`: the student must take the teacher's inputs and output its ``C`` classes.
"""
from __future__ import annotations

from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError, InvalidTypeError
from tflbayes.methods.transform import ConfigGraph, class_name

__all__ = ["default_student", "widen", "with_extra_outputs", "check_student", "build_student_model",
           "count_params"]

_STOCHASTIC = {"MCDropout", "VariationalDense", "VariationalConv2D"}


class _Config(ConfigGraph):
    """The teacher's / student's config, rebuilt with fresh weights (widths may change)."""

    def __init__(self, model, what: str = "model"):
        super().__init__(model, what=f"the {what}", fresh_shapes=True)


def _deterministic_twin(entry):
    c = entry["config"]
    common = dict(name=c["name"], activation=c.get("activation"), use_bias=c.get("use_bias", True))
    kind = class_name(entry)
    if kind == "MCDropout":
        return keras.layers.Dropout(c["rate"], noise_shape=c.get("noise_shape"), seed=c.get("seed"), name=c["name"])
    if kind == "VariationalDense":
        return keras.layers.Dense(c["units"], **common)
    return keras.layers.Conv2D(c["filters"], tuple(c["kernel_size"]), strides=tuple(c["strides"]),
                               padding=c["padding"], **common)


def default_student(teacher):
    """The teacher's architecture with fresh weights and no stochastic layers.

    ``MCDropout`` becomes ``Dropout`` (same rate: active in training only), ``VariationalDense`` /
    ``VariationalConv2D`` become ``Dense`` / ``Conv2D`` with the same units, kernel size, strides,
    padding, activation and bias setting. Every other layer and every name is kept.
    """
    if not isinstance(getattr(teacher, "model", None), keras.Model):
        raise InvalidTypeError(f"`teacher` must be a tflbayes Posterior (with a Keras `model`). "
                               f"Received: {type(teacher).__name__}")
    cfg = _Config(teacher.model, "teacher's model")
    for i, e in enumerate(cfg.entries):
        if class_name(e) in _STOCHASTIC:
            cfg.replace(i, _deterministic_twin(e))
    return cfg.build()


def widen(model, multiplier: float):
    """``model``'s architecture (fresh weights) with every hidden Dense/Conv2D width times ``multiplier``.

    The output layer keeps its units. Widths are rounded and at least 1.
    """
    if not isinstance(multiplier, (int, float)) or isinstance(multiplier, bool) or not multiplier > 0:
        raise InvalidInputError(
            "Invalid value received for argument `multiplier`. Expected a number > 0. "
            f"Received: multiplier={multiplier!r}")
    cfg = _Config(model, "student")
    out = cfg.output_index()
    for i, e in enumerate(cfg.entries):
        if i == out:
            continue
        key = {"Dense": "units", "Conv2D": "filters"}.get(class_name(e))
        if key is not None:
            e["config"][key] = max(1, int(round(e["config"][key] * multiplier)))
    return cfg.build()


def with_extra_outputs(model, extra: int):
    """``model``'s architecture (fresh weights) whose output Dense layer has ``extra`` more units."""
    if extra == 0:
        return model
    cfg = _Config(model, "student")
    e = cfg.entries[cfg.output_index()]
    if class_name(e) != "Dense":
        raise InvalidInputError(
            f"GPED adds its expectation heads to the student's output layer, which must be a Dense layer; "
            f"{e['config'].get('name')!r} is a {class_name(e)}. End the student with Dense(num_classes).")
    e["config"]["units"] = int(e["config"]["units"]) + int(extra)
    return cfg.build()


def check_student(model, teacher, what: str = "student") -> None:
    """Raise InvalidInputError unless ``model`` takes the teacher's inputs and outputs its C classes."""
    if not isinstance(model, keras.Model):
        raise InvalidInputError(
            f"`build_student` must return a Keras model (or be one). It gave {type(model).__name__}.")
    shape = model.output_shape
    if isinstance(shape, list) or len(shape) != 2:
        raise InvalidInputError(
            f"The {what} must have one output of shape [batch, classes]; it has output shape {shape}.")
    if int(shape[-1]) != teacher.num_classes:
        raise InvalidInputError(
            f"The {what} outputs {shape[-1]} values but the teacher has {teacher.num_classes} classes "
            f"({', '.join(teacher.class_names[:12])}{' ...' if teacher.num_classes > 12 else ''}); "
            "the student must end with Dense(num_classes) logits.")
    want = tuple(teacher.input_shape)
    got = tuple(model.input_shape[1:])
    if len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want)):
        raise InvalidInputError(f"The {what} takes inputs of shape {list(got)}, the teacher takes {list(want)}.")


def build_student_model(build_student, teacher):
    """The student Keras model: ``build_student()`` (or the model itself), else the teacher's architecture."""
    if build_student is None:
        model = default_student(teacher)
    elif isinstance(build_student, keras.Model):
        model = build_student
    elif callable(build_student):
        model = build_student()
    else:
        raise InvalidInputError(
            "Invalid value received for argument `build_student`. Expected None, a zero-argument function "
            f"returning a Keras model, or a Keras model. Received: {type(build_student).__name__}")
    check_student(model, teacher)
    return model


def count_params(model) -> int:
    """Number of weights of ``model`` (all variables)."""
    return int(sum(int(w.size) for w in model.get_weights()))
