"""The transfer set: the inputs on which the student learns to imitate the teacher.

- :func:`perturb`: input perturbation as in Bayesian Dark Knowledge (Korattikara et al. 2015):
  Gaussian noise and, for images, random shifts of up to ``shift`` pixels.
- :func:`auxiliary_inputs`: unfamiliar inputs made from the transfer set (heavy noise, mixup,
  rotations/flips). On them the teacher's samples disagree, and EnD² needs such inputs to learn
  high knowledge uncertainty away from the data (Malinin et al. 2020 use an auxiliary data set).
- :func:`transfer_pool`: transfer set + perturbed copies + auxiliary inputs, in one array.
- :func:`teacher_samples`: ``[N, S, C]`` probabilities of the teacher's posterior samples.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from tflbayes._checks import as_float_array
from tflbayes.errors import InvalidInputError, InvalidTypeError

__all__ = ["AUX_KINDS", "auxiliary_inputs", "perturb", "transfer_pool", "teacher_samples"]

#: Kinds of auxiliary inputs :func:`auxiliary_inputs` makes.
AUX_KINDS = ("noise", "mixup", "rotate")


def _is_square_image(x: np.ndarray) -> bool:
    return x.ndim >= 3 and x.shape[1] == x.shape[2]


def _range(x: np.ndarray):
    return float(x.min()), float(x.max())


def _shift_images(x: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate every image by an integer offset in ``[-shift, shift]`` (H and W), zero fill."""
    out = np.zeros_like(x)
    dy = rng.integers(-shift, shift + 1, size=len(x))
    dx = rng.integers(-shift, shift + 1, size=len(x))
    h, w = x.shape[1], x.shape[2]
    for i in range(len(x)):
        ys, yd = (slice(0, h - dy[i]), slice(dy[i], h)) if dy[i] >= 0 else (slice(-dy[i], h), slice(0, h + dy[i]))
        xs, xd = (slice(0, w - dx[i]), slice(dx[i], w)) if dx[i] >= 0 else (slice(-dx[i], w), slice(0, w + dx[i]))
        out[i, yd, xd] = x[i, ys, xs]
    return out


def perturb(x, rng: np.random.Generator, noise_std: float = 0.05, shift: int = 0) -> np.ndarray:
    """A perturbed copy of ``x``: random shifts of images (``|offset| <= shift`` px), then Gaussian
    noise with standard deviation ``noise_std`` times the data range, clipped to that range."""
    x = as_float_array(x, "x").astype(np.float32)
    if not isinstance(rng, np.random.Generator):
        raise InvalidTypeError(f"`rng` must be a numpy.random.Generator. Received: {type(rng).__name__}")
    lo, hi = _range(x)
    out = _shift_images(x, int(shift), rng) if shift and x.ndim >= 3 else x.copy()
    if noise_std:
        out = out + rng.normal(0.0, noise_std * (hi - lo), size=out.shape).astype(np.float32)
    return np.clip(out, lo, hi).astype(np.float32)


def auxiliary_inputs(x, num: Optional[int] = None, kinds: Sequence[str] = AUX_KINDS, seed: int = 0,
                     noise_std: float = 0.5) -> np.ndarray:
    """Off-distribution inputs made from ``x`` (the transfer set), for distillation away from the data.

    Kinds (``num`` inputs split evenly among them):

    - ``"noise"``: an input plus Gaussian noise of standard deviation ``noise_std`` x the data
      range (heavy: the structure is mostly destroyed), clipped to the data range.
    - ``"mixup"``: ``lam * x_i + (1 - lam) * x_j`` of two random inputs, ``lam ~ U(0.3, 0.7)``
      (no labels needed: the teacher labels it).
    - ``"rotate"``: square images rotated by 90, 180 or 270 degrees and randomly flipped;
      skipped (its share goes to the others) for inputs that are not square images.

    Args:
        x: ``[N, ...]`` transfer inputs.
        num: how many to make (default ``N``).
        kinds: subset of :data:`AUX_KINDS`.
        seed: seed of the random choices.
        noise_std: the ``"noise"`` kind's standard deviation relative to the data range.

    Returns:
        ``[num, ...]`` float32 inputs, shuffled.

    Example:
        >>> import numpy as np
        >>> auxiliary_inputs(np.random.rand(20, 8, 8, 1), num=30).shape
        (30, 8, 8, 1)
    """
    x = as_float_array(x, "x").astype(np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise InvalidInputError(f"`x` must be a non-empty batch of inputs [N, ...]. Received: shape={list(x.shape)}")
    kinds = list(kinds)
    bad = [k for k in kinds if k not in AUX_KINDS]
    if bad or not kinds:
        raise InvalidInputError(
            f"Invalid value received for argument `kinds`. Expected a non-empty subset of {', '.join(AUX_KINDS)}. "
            f"Received: kinds={kinds!r}")
    if "rotate" in kinds and not _is_square_image(x):
        kinds.remove("rotate")
        if not kinds:
            raise InvalidInputError("Auxiliary kind 'rotate' needs square images [N, H, H, ...].")
    num = len(x) if num is None else int(num)
    if num < 1:
        raise InvalidInputError(
            f"Invalid value received for argument `num`. Expected an integer >= 1. Received: num={num}")
    rng = np.random.default_rng(seed)
    lo, hi = _range(x)
    counts = [num // len(kinds) + (1 if i < num % len(kinds) else 0) for i in range(len(kinds))]
    parts = []
    for kind, n in zip(kinds, counts):
        if n == 0:
            continue
        base = x[rng.integers(0, len(x), size=n)]
        if kind == "noise":
            out = base + rng.normal(0.0, noise_std * (hi - lo), size=base.shape)
        elif kind == "mixup":
            other = x[rng.integers(0, len(x), size=n)]
            lam = rng.uniform(0.3, 0.7, size=(n,) + (1,) * (x.ndim - 1))
            out = lam * base + (1.0 - lam) * other
        else:  # rotate
            out = np.stack([np.rot90(b, k=int(k), axes=(0, 1)) for b, k in zip(base, rng.integers(1, 4, size=n))])
            flip = rng.random(n) < 0.5
            out[flip] = out[flip][:, :, ::-1]
        parts.append(np.clip(out, lo, hi).astype(np.float32))
    aux = np.concatenate(parts)
    return aux[rng.permutation(len(aux))]


def transfer_pool(x, x_aux=None, augment: int = 0, noise_std: float = 0.05, shift: int = 0,
                  seed: int = 0) -> np.ndarray:
    """``x``, then ``augment`` perturbed copies of it (:func:`perturb`), then ``x_aux``, as one array."""
    rng = np.random.default_rng(seed)
    parts = [x] + [perturb(x, rng, noise_std, shift) for _ in range(int(augment))]
    if x_aux is not None and len(x_aux):
        parts.append(np.asarray(x_aux, dtype=np.float32))
    return np.concatenate(parts).astype(np.float32)


def teacher_samples(teacher, x, num_samples: Optional[int] = None, batch: int = 2048) -> np.ndarray:
    """``[N, S, C]`` float32 probabilities of the teacher's posterior samples on ``x``."""
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        s = teacher.sample_probs(xb, num_samples) if num_samples else teacher.sample_probs(xb)
        out.append(np.moveaxis(np.asarray(s, dtype=np.float32), 0, 1))
    return np.concatenate(out)
