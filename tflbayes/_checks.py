"""Input checks shared by posteriors, bundles and training (numpy only)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tflbayes.errors import InvalidInputError, InvalidTypeError

__all__ = ["check_inputs", "check_labels", "check_labelled", "check_choice", "check_positive_int", "check_positive_float",
           "check_classification", "check_options", "check_path", "as_float_array"]


def check_inputs(x, input_shape, name: str = "x") -> np.ndarray:
    """Return ``x`` as float32 ``[N, *input_shape]``; raise :class:`InvalidInputError` otherwise.

    ``input_shape`` excludes the batch axis; ``None`` entries match any size. A single example
    of shape ``input_shape`` is NOT silently promoted: batch axes must be explicit.
    """
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists
        raise InvalidInputError(f"`{name}` cannot be read as an array: {e}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidInputError(f"`{name}` must be numeric. Received dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.complexfloating):  # casting would drop the imaginary part silently
        raise InvalidInputError(f"`{name}` must be real-valued. Received complex dtype {arr.dtype}.")
    expected = tuple(input_shape)
    if arr.ndim != len(expected) + 1 or any(
        e is not None and e != a for e, a in zip(expected, arr.shape[1:])
    ):
        shape = ", ".join("?" if e is None else str(e) for e in expected)
        raise InvalidInputError(
            f"`{name}` must have shape [N, {shape}]. Received: shape={list(arr.shape)}"
        )
    if arr.shape[0] == 0:
        raise InvalidInputError(f"`{name}` is empty (0 inputs).")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)).ravel()
        raise InvalidInputError(
            f"`{name}` contains NaN or inf values (inputs {bad[:5].tolist()}"
            f"{' ...' if len(bad) > 5 else ''})."
        )
    return arr


def check_labels(y, num: int, num_classes: int | None = None, name: str = "y") -> np.ndarray:
    """Integer class labels ``[num]`` in ``[0, num_classes)``."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != num:
        raise InvalidInputError(
            f"`{name}` must hold {num} integer labels (one per input). Received: shape={list(arr.shape)}"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InvalidInputError(f"`{name}` must hold integer class labels. Received dtype {arr.dtype}.")
    if arr.min() < 0 or (num_classes is not None and arr.max() >= num_classes):
        raise InvalidInputError(
            f"`{name}` labels must lie in [0, {num_classes}). Received min={arr.min()}, max={arr.max()}."
        )
    return arr.astype(np.int64)


def check_labelled(pair, input_shape, num_classes: int | None = None, name: str = "data"):
    """A labelled pair ``(x, y)``: inputs ``[N, *input_shape]`` and N integer labels."""
    try:
        x, y = pair
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a tuple (x, y) of inputs and labels.") from None
    x = check_inputs(x, input_shape, f"{name}[0]")
    return x, check_labels(y, len(x), num_classes, f"{name}[1]")


def check_choice(name: str, value, choices) -> None:
    """Refuse ``value`` unless it is one of ``choices`` (Keras-style message listing them)."""
    if value not in choices:
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected one of "
            f"{', '.join(repr(c) for c in choices)}. Received: {name}={value!r}"
        )


def check_positive_int(name: str, value, minimum: int = 1, allow_none: bool = False):
    """``value`` as an ``int`` >= ``minimum`` (bools refused); ``None`` passes through if ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected an integer >= {minimum}"
            f"{' or None' if allow_none else ''}. Received: {name}={value!r}"
        )
    return int(value)


def check_options(options: dict, valid, what: str, hint: str = "") -> None:
    """Refuse keyword options not in ``valid``, listing the valid ones (``what``: e.g. "method 'sgld'")."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InvalidInputError(
            f"Unknown option(s) {', '.join(unknown)} for {what}{hint}. "
            f"Valid options: {', '.join(sorted(valid)) or 'none'}."
        )


def check_positive_float(name: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = np.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected a finite number {bound}. "
            f"Received: {name}={value!r}"
        )
    return value


def check_posterior(value, name: str = "posterior"):
    """``value`` if it is a :class:`tflbayes.Posterior`, else :class:`InvalidTypeError` naming the argument."""
    from tflbayes.posterior.base import Posterior

    if not isinstance(value, Posterior):
        raise InvalidTypeError(f"`{name}` must be a tflbayes Posterior (from tb.fit, tb.load, tb.distill, ...). "
                               f"Received: {type(value).__name__}")
    return value


def check_classification(posterior, where: str) -> None:
    """Refuse a ``likelihood="regression"`` posterior where only classifiers are supported.

    Regression is supported by the samplers alone (their outputs are read with
    ``tflbayes.methods.sampling.regression_predictive``); ``where`` names the entry point.
    """
    options = getattr(posterior, "options", None) or {}
    if isinstance(options, dict) and options.get("likelihood") == "regression":
        raise InvalidInputError(
            f"{where} supports classification posteriors only; this {getattr(posterior, 'method', '?')} posterior "
            "was trained with likelihood='regression'. Regression supports "
            "`tflbayes.methods.sampling.regression_predictive(posterior, x)` (predictive mean and std)."
        )


def check_path(name: str, value) -> Path:
    """``value`` as a :class:`~pathlib.Path`; anything but a ``str`` / ``os.PathLike`` raises
    :class:`InvalidTypeError` (not the ``TypeError`` of ``Path(...)``)."""
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidTypeError(
            f"Invalid value received for argument `{name}`. Expected a path (str or os.PathLike). "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    return Path(value)


def as_float_array(value, name: str) -> np.ndarray:
    """``value`` as a float64 array; what numpy cannot read as numbers raises :class:`InvalidInputError`
    naming the argument (not numpy's ``TypeError`` / ``ValueError``)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(
            f"`{name}` must be an array of numbers. Received: {type(value).__name__} "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
