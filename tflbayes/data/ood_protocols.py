"""Out-of-distribution inputs for a :class:`~tflbayes.data.Dataset` (the OOD protocols)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from tflbayes._checks import check_choice, check_positive_int
from tflbayes.data.datasets import Dataset, load
from tflbayes.errors import InvalidInputError

__all__ = ["ood", "OOD_KINDS"]

#: The OOD protocols :func:`ood` knows.
OOD_KINDS = ("noise", "rotate", "heldout", "other")


def _subsample(x: np.ndarray, num: Optional[int], rng: np.random.Generator, kind: str) -> np.ndarray:
    if num is None:
        return x
    if num > len(x):
        raise InvalidInputError(
            f"Invalid value received for argument `num`. OOD kind {kind!r} has only {len(x)} "
            f"inputs. Received: num={num}"
        )
    idx = np.sort(rng.choice(len(x), size=num, replace=False))
    return x[idx]


def _other(ds: Dataset, seed: int) -> np.ndarray:
    from scipy.ndimage import zoom

    shape = ds.x_test.shape
    if not (ds.x_test.ndim == 3 or (ds.x_test.ndim == 4 and shape[-1] == 1)):
        raise InvalidInputError(
            "OOD kind 'other' needs 1-channel images ([N, H, W, 1] or [N, H, W]). "
            f"Received: x_test.shape={shape}"
        )
    other_name = "digits" if ds.name == "mnist" else "mnist"
    other = load(other_name, seed=seed).x_test[..., 0]  # [M, h, w]
    h, w = other.shape[1:]
    H, W = shape[1], shape[2]
    if (h, w) != (H, W):
        other = zoom(other, (1.0, H / h, W / w), order=1, grid_mode=True, mode="nearest")
        other = np.clip(other, 0.0, 1.0)
        if other.shape[1:] != (H, W):  # pragma: no cover - rounding guard
            raise InvalidInputError(f"Cannot resize {other_name!r} images to {H}x{W}.")
    other = other.astype(np.float32)
    return other[..., None] if ds.x_test.ndim == 4 else other


def ood(ds: Dataset, kind: str = "noise", seed: int = 0, num: Optional[int] = None) -> np.ndarray:
    """Inputs the model should flag as unfamiliar, shaped like ``ds.x_test`` (float32).

    Kinds:

    - ``"noise"``: uniform noise in [0, 1] (the value range of the bundled data sets) with the
      shape of one test input: in range, but with no structure at all. ``len(ds.x_test)``
      inputs unless ``num`` is given.
    - ``"rotate"``: every test input rotated by 90 degrees in the (H, W) plane
      (``np.rot90``); needs square images ``[N, H, H, ...]``.
    - ``"heldout"``: test inputs of the classes held out at load time (``ds.x_heldout``);
      needs ``load(..., holdout_classes=[...])``.
    - ``"other"``: the test split of the other bundled data set (``digits`` <-> ``mnist``; a
      user data set gets ``mnist``), resized to this data set's H x W with
      ``scipy.ndimage.zoom``; needs 1-channel images.

    Args:
        ds: the in-distribution data set.
        kind: one of :data:`OOD_KINDS`.
        seed: seed of the noise and of the subsample.
        num: number of inputs to return (a random subsample, in the original order), or
            ``None`` for all.

    Returns:
        ``[num or M, *ds.input_shape]`` float32 array.

    Raises:
        InvalidInputError: unknown kind, a kind that does not fit ``ds``, or a bad ``num``.

    Example:
        >>> from tflbayes.data import load
        >>> ds = load("digits")
        >>> ood(ds, "rotate", num=5).shape
        (5, 8, 8, 1)
    """
    if not isinstance(ds, Dataset):
        raise InvalidInputError(
            "Invalid value received for argument `ds`. Expected a tflbayes.data.Dataset. "
            f"Received: {type(ds).__name__}"
        )
    check_choice("kind", kind, OOD_KINDS)
    num = check_positive_int("num", num, allow_none=True)
    rng = np.random.default_rng(seed)
    x_test = ds.x_test

    if kind == "noise":
        n = len(x_test) if num is None else num
        return rng.uniform(0.0, 1.0, size=(n, *x_test.shape[1:])).astype(np.float32)

    if kind == "rotate":
        if x_test.ndim < 3 or x_test.shape[1] != x_test.shape[2]:
            raise InvalidInputError(
                "OOD kind 'rotate' needs square images [N, H, H] or [N, H, H, C]. "
                f"Received: x_test.shape={x_test.shape}"
            )
        out = np.ascontiguousarray(np.rot90(x_test, k=1, axes=(1, 2)), dtype=np.float32)
        return _subsample(out, num, rng, kind)

    if kind == "heldout":
        if ds.x_heldout is None or len(ds.x_heldout) == 0:
            raise InvalidInputError(
                f"OOD kind 'heldout' needs held-out classes, but {ds.name!r} was loaded without "
                "them. Load it with holdout_classes=[...], e.g. "
                f"tflbayes.data.load({ds.name!r}, holdout_classes=[9])."
            )
        return _subsample(np.asarray(ds.x_heldout, dtype=np.float32), num, rng, kind)

    # kind == "other"
    return _subsample(_other(ds, seed), num, rng, kind)

