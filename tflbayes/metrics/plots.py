"""Plots of calibration and uncertainty (matplotlib, Agg canvas: no display needed).

Figures are drawn on ``matplotlib.figure.Figure`` with an Agg canvas, never through
``pyplot``: nothing global (backend, open figures) changes. Every file is written to a
temporary file next to its destination and then renamed (atomic).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np

from tflbayes._checks import check_path, check_positive_float, check_positive_int
from tflbayes.errors import InvalidInputError, InvalidTypeError
from tflbayes.metrics.quality import (
    _check_prediction,
    _check_scores,
    _probs_and_labels,
    ece,
    ood_auroc,
)

__all__ = ["reliability_diagram", "uncertainty_histogram", "comparison_plots", "new_figure", "save_figure"]

PathLike = Union[str, os.PathLike]


def new_figure(height: float = 4.0, rows: int = 1, ratios=None):
    """A 5-inch-wide matplotlib ``Figure`` on the Agg canvas (no display needed) and its axes.

    ``rows`` axes stacked with a shared x axis, ``ratios`` their relative heights."""
    height, rows = check_positive_float("height", height), check_positive_int("rows", rows)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, gridspec_kw=None if ratios is None else {"height_ratios": ratios})
    return fig, axes


def save_figure(fig, path: PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file, then rename), in the format of its suffix
    (``.png``, ``.svg``, ``.pdf``, ...); an unsupported suffix raises :class:`InvalidInputError`."""
    path = check_path("path", path)
    if not callable(getattr(fig, "savefig", None)) or getattr(fig, "canvas", None) is None:
        raise InvalidTypeError(f"Invalid value received for argument `fig`. Expected a matplotlib Figure. "
                               f"Received: {type(fig).__name__}")
    fmt = path.suffix.lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise InvalidInputError(
            "Invalid value received for argument `path`. Expected a file name ending in one of "
            f"{', '.join('.' + k for k in sorted(supported))}. Received: path={str(path)!r}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=fmt, dpi=100)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def reliability_diagram(probs, y, path: PathLike, num_bins: int = 15, title: Optional[str] = None) -> Path:
    """Draw a top-label reliability diagram with a histogram of confidences.

    Top: accuracy against mean confidence per equal-width confidence bin
    (``sklearn.calibration.calibration_curve`` on ``max_c p_c`` vs correctness), with the
    diagonal of perfect calibration and the ECE (:func:`tflbayes.metrics.ece`) annotated.
    Bottom: how many inputs fall at each confidence.

    Args:
        probs: ``[N, C]`` predictive probabilities.
        y: ``[N]`` labels.
        path: image file to write (``.png``, ``.pdf``, ``.svg``, ...).
        num_bins: number of confidence bins.
        title: figure title.

    Returns:
        The written path.

    Example:
        >>> import numpy as np
        >>> reliability_diagram(np.array([[0.9, 0.1], [0.3, 0.7]]), [0, 0],
        ...                     "/tmp/reliability.png")  # doctest: +SKIP
        PosixPath('/tmp/reliability.png')
    """
    from sklearn.calibration import calibration_curve

    p, labels = _probs_and_labels(probs, y)
    e = ece(p, labels, num_bins=num_bins)  # also validates num_bins
    pred = np.argmax(p, axis=-1)
    conf = p[np.arange(len(labels)), pred]
    correct = (pred == labels).astype(np.int64)
    acc_bins, conf_bins = calibration_curve(correct, conf, n_bins=num_bins, strategy="uniform")

    fig, (ax, hx) = new_figure(height=5.5, rows=2, ratios=[3, 1])
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", label="perfect calibration")
    ax.plot(conf_bins, acc_bins, marker="o", color="C0", label="model")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.text(0.97, 0.05, f"ECE = {e:.4f}\naccuracy = {correct.mean():.4f}", transform=ax.transAxes,
            ha="right", va="bottom", bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
    ax.set_title(title if title is not None else "Reliability diagram (top-label)")
    hx.hist(conf, bins=np.linspace(0.0, 1.0, num_bins + 1), color="C0", alpha=0.7)
    hx.set_xlabel("confidence (max probability)")
    hx.set_ylabel("count")
    return save_figure(fig, path)


def uncertainty_histogram(
    u_in,
    u_out,
    path: PathLike,
    label: str = "epistemic (nats)",
    title: Optional[str] = None,
) -> Path:
    """Overlay histograms of an uncertainty on in-distribution and OOD inputs.

    Shared bins; the OOD AUROC of the score is annotated when ``u_out`` is given.

    Args:
        u_in: ``[N]`` uncertainty on in-distribution inputs.
        u_out: ``[M]`` uncertainty on OOD inputs, or ``None`` to draw only ``u_in``.
        path: image file to write.
        label: x-axis label (what the uncertainty is and its unit).
        title: figure title.

    Returns:
        The written path.

    Example:
        >>> uncertainty_histogram(pred_in.epistemic, pred_ood.epistemic,
        ...                       "runs/epistemic.png")  # doctest: +SKIP
    """
    a = _check_scores(u_in, "u_in")
    b = None if u_out is None else _check_scores(u_out, "u_out")
    both = a if b is None else np.concatenate([a, b])
    lo, hi = float(both.min()), float(both.max())
    if hi <= lo:
        hi = lo + 1e-6
    bins = np.linspace(lo, hi, 31)

    fig, ax = new_figure(height=3.5)
    ax.hist(a, bins=bins, alpha=0.6, density=True, color="C0", label=f"in-distribution (n={len(a)})")
    if b is not None:
        ax.hist(b, bins=bins, alpha=0.6, density=True, color="C3", label=f"OOD (n={len(b)})")
        ax.text(0.97, 0.95, f"OOD AUROC = {ood_auroc(a, b):.4f}", transform=ax.transAxes,
                ha="right", va="top", bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
    ax.set_xlabel(label)
    ax.set_ylabel("density")
    ax.legend(loc="center right")
    ax.set_title(title if title is not None else f"Uncertainty: {label}")
    return save_figure(fig, path)


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return s or "model"


def comparison_plots(results: dict, out_dir: PathLike) -> list:
    """Reliability diagram and uncertainty histogram for each compared model.

    Args:
        results: ``{name: (pred_in, pred_ood or None, y)}`` with ``pred_in`` / ``pred_ood``
            :class:`~tflbayes.uncertainty.Prediction` objects and ``y`` the labels of the
            in-distribution inputs.
        out_dir: folder to write into (created if missing).

    Returns:
        The written paths: ``reliability_<name>.png`` and ``epistemic_<name>.png`` per entry
        (``total_<name>.png`` instead where the prediction has no epistemic part).

    Example:
        >>> comparison_plots({"ensemble": (pred_in, pred_ood, ds.y_test),
        ...                   "int8": (q_in, q_ood, ds.y_test)}, "runs/plots")  # doctest: +SKIP
    """
    if not isinstance(results, dict) or not results:
        raise InvalidInputError(
            "Invalid value received for argument `results`. Expected a non-empty dict "
            f"{{name: (pred_in, pred_ood or None, y)}}. Received: {type(results).__name__}"
        )
    out_dir = Path(out_dir)
    written = []
    used = set()
    for name, entry in results.items():
        if not isinstance(entry, (tuple, list)) or len(entry) != 3:
            raise InvalidInputError(
                f"Invalid value received for argument `results[{name!r}]`. Expected a tuple "
                "(pred_in, pred_ood or None, y)."
            )
        pred_in, pred_ood, y = entry
        pred_in = _check_prediction(pred_in, f"results[{name!r}][0]")
        if pred_ood is not None:
            pred_ood = _check_prediction(pred_ood, f"results[{name!r}][1]")
        slug = _slug(name)
        base, k = slug, 2
        while slug in used:
            slug, k = f"{base}_{k}", k + 1
        used.add(slug)

        written.append(reliability_diagram(pred_in.probs, y, out_dir / f"reliability_{slug}.png",
                                           title=f"{name}: reliability"))
        has_epi = pred_in.epistemic is not None and (pred_ood is None or pred_ood.epistemic is not None)
        which = "epistemic" if has_epi else "total"
        u_in = pred_in.epistemic if has_epi else pred_in.total
        u_out = None if pred_ood is None else (pred_ood.epistemic if has_epi else pred_ood.total)
        written.append(uncertainty_histogram(u_in, u_out, out_dir / f"{which}_{slug}.png",
                                             label=f"{which} (nats)", title=f"{name}: {which} uncertainty"))
    return written
